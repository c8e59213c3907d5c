"""`validate --backend hls`: C-simulate the generated HLS C++ with the host compiler.

Vitis HLS's own C simulation compiles the same sources with a stock compiler,
so a g++ build of `mnist_edge_hls.cpp` + `csim_main.cpp` exercises exactly the
arithmetic that synthesis turns into hardware (every `#pragma HLS` is inert
here). The runner streams raw inputs in (the top function's order: HWC for images of
several channels, as the C API takes them) and raw int8 logits out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.c import c_inputs
from ..backends.hls import DEFAULT_PARALLEL, generate_hls, latency_model
from ..errors import MnistEdgeError
from ..paths import atomic_dir
from ..qgraph import QGraph
from ..validate import BackendResult

CXX_FLAGS = ["-std=c++14", "-O2", "-Wall", "-Wextra", "-Werror"]
VECTORS = 20


def find_cxx() -> str:
    """The host C++ compiler: $CXX, else g++, else clang++."""
    for name in (os.environ.get("CXX"), "g++", "clang++"):
        if name and shutil.which(name):
            return name
    raise MnistEdgeError("no C++ compiler found (g++ or clang++): install with scripts/setup.sh")


def compile_csim(src_dir: Path, exe: Path, main: str = "csim_main.cpp") -> Path:
    """Build the top function plus one driver (`csim_main.cpp` or the testbench)."""
    exe.parent.mkdir(parents=True, exist_ok=True)
    cmd = [find_cxx(), *CXX_FLAGS, "mnist_edge_hls.cpp", main, "-o", str(exe.resolve())]
    proc = subprocess.run(cmd, cwd=src_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MnistEdgeError(f"compiling the HLS C-simulation failed: {' '.join(cmd)}\n"
                             f"{proc.stderr.strip()[-2000:]}")
    return exe


def run_csim(exe: Path, pixels: np.ndarray, classes: int, jobs: int | None = None) -> np.ndarray:
    """Stream inputs (rows of the stream's bytes, uint8 or int8) through the runner, split
    over `jobs` processes; int8 logits [N, classes]."""
    pixels = np.ascontiguousarray(pixels).reshape(len(pixels), -1).view(np.uint8)
    jobs = max(1, min(jobs or os.cpu_count() or 1, 8, -(-len(pixels) // 256)))
    chunks = np.array_split(np.arange(len(pixels)), jobs)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-hls-") as tmp:
        procs = []
        for k, idx in enumerate(chunks):
            src, dst = Path(tmp) / f"pixels{k}.bin", Path(tmp) / f"logits{k}.bin"
            src.write_bytes(pixels[idx].tobytes())
            try:
                proc = subprocess.Popen([str(exe), str(src), str(dst)], stderr=subprocess.PIPE,
                                        text=True)
            except OSError as exc:
                for running, _ in procs:
                    running.kill()
                    running.wait()
                raise MnistEdgeError(f"HLS C-simulation failed: cannot run {exe} "
                                     f"({exc.strerror})") from None
            procs.append((proc, dst))
        errors = [(proc, proc.communicate()[1]) for proc, _ in procs]  # wait for every one
        for proc, err in errors:
            if proc.returncode != 0:
                raise MnistEdgeError(f"HLS C-simulation failed: {err.strip()}")
        parts = [np.frombuffer(dst.read_bytes(), dtype=np.int8) for _, dst in procs]
    logits = np.concatenate(parts) if parts else np.zeros(0, np.int8)
    if logits.size != len(pixels) * classes:
        raise MnistEdgeError(f"HLS C-simulation wrote {logits.size} logits for {len(pixels)} "
                             "images")
    return logits.reshape(len(pixels), classes).copy()


def run(run_dir: Path, graph: QGraph, pixels: np.ndarray, options: dict[str, Any]) -> BackendResult:
    """Generate into <run>/build/hls/, compile with the host compiler, run every image."""
    limit = options.get("limit")
    if limit is not None:
        pixels = pixels[: int(limit)]
    parallel = int(options.get("parallel") or DEFAULT_PARALLEL)
    build = Path(run_dir) / "build"
    # Private folders renamed into place: concurrent runs never build in a shared one.
    with atomic_dir(build / "hls", guard=False) as src, \
            atomic_dir(build / "hls-csim", guard=False) as csim:
        generate_hls(graph, src, vector_pixels=pixels[:VECTORS], parallel=parallel)
        exe = compile_csim(src, csim / "mnist_edge_csim")
        start = time.perf_counter()
        logits = run_csim(exe, c_inputs(graph, pixels), graph.output.size)
        seconds = time.perf_counter() - start
    latency = latency_model(graph, parallel=parallel)
    return BackendResult(logits, latency_us=None, extra={
        "hls_estimated_cycles": latency["total_cycles"],
        "hls_estimated_latency_us": latency["latency_us_at_clock"],
        "hls_clock_ns": latency["assumptions"]["clock_ns"],
        "csim_host_seconds": round(seconds, 3),
        "note": "C simulation with the host compiler; cycles are the loop-structure estimate "
                "in build/hls/README.md, not a synthesis report",
    })
