"""Validate the generated C on the host: generate, compile with gcc, run every image.

`run_float` / `run_x86` / `run_int` are the `c` / `c-x86` / `c-int` backends of
`mnist-edge validate`: `c` compiles the portable kernels (the code path every MCU
runs; mnist_edge_kernels_x86.c is not compiled at all), `c-x86` adds the host fast
path (mnist_edge_kernels_x86.c: SSE2/AVX2/VNNI, whatever -march=native offers),
`c-int` integer-only requantization with the host fast path. They
generate the C tree into a private folder renamed to `<run>/build/c-<mode>`
(`src/` and the `runner`), compile it with a small harness
(templates/c/host/runner.c) that reads raw pixels and writes raw logits. The latency
is the runner's own timer: every `mnist_edge_predict` call timed alone, batch 1 on one
thread, over REPEATS passes of the first TIMING_IMAGES inputs; the median call is the
figure (`validate.Latency`, the quantity onnxruntime's figure is too). Nothing outside
the calls (process start, file I/O, the first pass that writes the logits) is in it.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.c import C_WARNINGS, SOURCES, X86_SOURCES, c_inputs, generate_c
from ..errors import MnistEdgeError
from ..paths import TEMPLATES_DIR, atomic_dir
from ..qgraph import QGraph
from ..validate import BackendResult, Latency
from .tools import compiler_cache, require_tool, run_step

RUNNER = TEMPLATES_DIR / "c" / "host" / "runner.c"
# -march=native: the host's own SIMD, as onnxruntime picks its kernels at run time.
DEFAULT_CFLAGS = ("-std=c99", "-O2", "-march=native", *C_WARNINGS)
# The host fast path: every source sees MNIST_EDGE_X86, and mnist_edge_kernels_x86.c
# (X86_SOURCES) replaces the portable dot-product kernels.
X86_CFLAGS = (*DEFAULT_CFLAGS, "-DMNIST_EDGE_X86")
TIMING_IMAGES = 1000
REPEATS = 5


def find_compiler(name: str = "gcc") -> str:
    return require_tool(name, "install it (scripts/setup.sh installs gcc) or pass another "
                        "with the cc option", f"C compiler {name!r}")


def compile_runner(src_dir: Path, exe: Path, cc: str = "gcc",
                   cflags: tuple[str, ...] = DEFAULT_CFLAGS) -> list[str]:
    """Compile the generated sources plus the harness; returns the link command (the
    compiler first). With -DMNIST_EDGE_X86 in `cflags`, the x86 kernels are compiled too.
    One object a source, each through the compiler cache when there is one, from inside
    `src_dir` by relative names: the kernels are the same text for every model of a mode,
    so another model's build compiles only its own files."""
    compiler = find_compiler(cc)
    sources = [RUNNER, *(Path(s) for s in SOURCES),
               *(Path(s) for s in (X86_SOURCES if "-DMNIST_EDGE_X86" in cflags else ()))]
    compile_cmd = [*compiler_cache(), compiler, *cflags, "-I", "."]
    with tempfile.TemporaryDirectory(prefix="mnist-edge-obj-") as tmp:
        objects = [str(Path(tmp) / f"{i}-{s.stem}.o") for i, s in enumerate(sources)]
        for source, obj in zip(sources, objects, strict=True):
            run_step([*compile_cmd, "-c", str(source), "-o", obj], src_dir,
                     f"compiling {source.name} with {Path(compiler).name}")
        cmd = [compiler, *cflags, "-o", str(Path(exe).resolve()), *objects]
        run_step(cmd, src_dir, f"linking the runner with {Path(compiler).name}")
    return cmd


def run_runner(exe: Path, pixels: np.ndarray, classes: int, timing_images: int = 0,
               repeats: int = REPEATS) -> tuple[np.ndarray, Latency | None]:
    """Logits [N, classes] for N inputs in the C API's layout and encoding
    (`backends.c.c_inputs`), and the runner's timing of `timing_images` x `repeats`
    single calls (None when it timed none)."""
    pixels = np.ascontiguousarray(pixels).reshape(len(pixels), -1)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-c-") as tmp:
        pix, out = Path(tmp) / "pixels.bin", Path(tmp) / "logits.bin"
        pix.write_bytes(pixels.tobytes())
        proc = subprocess.run([str(exe), str(pix), str(out), str(timing_images), str(repeats)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise MnistEdgeError(f"{exe.name} failed (exit {proc.returncode}): "
                                 f"{proc.stderr.strip()[-500:]}")
        logits = np.frombuffer(out.read_bytes(), dtype=np.int8).reshape(len(pixels), classes)
    return logits.copy(), parse_latency(proc.stdout)


def parse_latency(stdout: str) -> Latency | None:
    """The runner's `latency_us MEDIAN p10 P10 p90 P90 calls CALLS` line, if any."""
    for line in stdout.splitlines():
        words = line.split()
        if words[:1] == ["latency_us"]:
            if len(words) != 8 or words[2::2] != ["p10", "p90", "calls"]:
                raise MnistEdgeError(f"the runner printed an unexpected timing line: {line!r}")
            return Latency(float(words[1]), float(words[3]), float(words[5]), int(words[7]))
    return None


def _run(run_dir: Path, graph: QGraph, pixels: np.ndarray, options: dict[str, Any],
         mode: str, flavour: str = "", cflags: tuple[str, ...] = DEFAULT_CFLAGS) -> BackendResult:
    build = Path(options.get("build_dir") or Path(run_dir) / "build" / f"c-{flavour}{mode}")
    cc = str(options.get("cc", "gcc"))
    cflags = tuple(options.get("cflags", cflags))
    # A private folder per build, renamed into place: concurrent runs never share one.
    with atomic_dir(build, guard=False) as work:
        src = generate_c(graph, work / "src", mode, vector_pixels=np.asarray(pixels[:20]))
        exe = work / "runner"
        cmd = compile_runner(src, exe, cc, cflags)
        timing = min(len(pixels), int(options.get("timing_images", TIMING_IMAGES)))
        logits, latency = run_runner(exe, c_inputs(graph, pixels), graph.output.size, timing,
                                     int(options.get("repeats", REPEATS)))
    extra = {"compiler": Path(cmd[0]).name, "cflags": " ".join(cflags), "requant": mode,
             "latency_images": timing, **(latency.figures() if latency else {})}
    return BackendResult(logits, latency.median_us if latency else None, extra)


def run_float(run_dir: Path, graph: QGraph, pixels: np.ndarray,
              options: dict[str, Any]) -> BackendResult:
    return _run(run_dir, graph, pixels, options, "float", "", DEFAULT_CFLAGS)


def run_x86(run_dir: Path, graph: QGraph, pixels: np.ndarray,
            options: dict[str, Any]) -> BackendResult:
    return _run(run_dir, graph, pixels, options, "float", "x86-", X86_CFLAGS)


def run_int(run_dir: Path, graph: QGraph, pixels: np.ndarray,
            options: dict[str, Any]) -> BackendResult:
    return _run(run_dir, graph, pixels, options, "int", "", X86_CFLAGS)
