"""The `rtl` and `rtl-uart` validate backends: the generated Verilog in Verilator.

The design is generated and built once per run into a temporary folder; the testbench
streams the images through the engine's ready/valid interface (or, for `rtl-uart`,
through the UART top with a UART model) and returns every logit and the measured
cycles per image.
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

from ..backends.rtl import design_sources, generate_rtl, load_manifest
from ..errors import MnistEdgeError
from ..qgraph import QGraph
from ..validate import BackendResult
from .tools import compiler_cache, require_tool

UART_SIM_CLKS_PER_BIT = 8  # a fast UART in simulation; the framing is what is tested


def lint(rtl_dir: Path) -> str:
    """`verilator --lint-only -Wall` on the engine and the UART top; returns its output."""
    verilator = require_tool("verilator")
    out = []
    for top, sources in (("mnist_edge_engine", design_sources(rtl_dir)),
                         ("mnist_edge_uart_top", design_sources(rtl_dir, uart=True))):
        proc = subprocess.run([verilator, "--lint-only", "-Wall", "--top-module", top,
                               *sources], cwd=rtl_dir, capture_output=True, text=True)
        if proc.returncode != 0:
            raise MnistEdgeError(f"verilator lint of {top} failed:\n{proc.stderr.strip()}")
        out.append(proc.stderr)
    return "".join(out)


def make_flags(*flags: str) -> str:
    """Verilator's -MAKEFLAGS value: `flags` plus ccache for its C++ (about 6 s of its
    runtime library a build, the same for every design) when ccache is installed."""
    cache = compiler_cache()
    return " ".join([*flags, *(f"OBJCACHE={c}" for c in cache)])


def build(rtl_dir: Path, uart: bool = False, sources: tuple[str, ...] | None = None,
          defines: tuple[str, ...] = (), stats: bool = False, opt: str = "-O2") -> Path:
    """Compile the testbench with Verilator into rtl_dir/obj_<top>; returns the binary.

    `sources` replaces the engine's Verilog (a gate-level netlist and its cell models).
    `stats`: the testbench also counts cycles and busy lanes per layer (RTL engine only).
    `opt`: the C++ optimization level; -O0 for a netlist, which compiles in about half the
    time of -O2 and, on the few images a gate-level run takes, simulates in seconds.
    """
    verilator = require_tool("verilator")
    top = "mnist_edge_uart_top" if uart else "mnist_edge_engine"
    sources = sources or design_sources(rtl_dir, uart)
    obj = f"obj_{top}"
    # Verilator's Makefile compiles the model with -Os by default; -O2 simulates ~3x faster.
    slow = "-O1" if opt == "-O2" else opt
    cmd = [verilator, "--cc", "--exe", "--build", "-O3", "-Wno-fatal", "--x-assign", "fast",
           "--x-initial", "fast", "--top-module", top, "-Mdir", obj, "-o", "tb",
           "-CFLAGS", opt, "-MAKEFLAGS", make_flags(f"OPT_FAST={opt} OPT_SLOW={slow}"),
           "tb_mnist_edge.cpp", *(f"-D{d}" for d in defines), *sources, "-j", "2"]
    if uart:
        cmd[1:1] = [f"-GCLKS_PER_BIT={UART_SIM_CLKS_PER_BIT}", "-CFLAGS",
                    f"-DUART_TOP -DCLKS_PER_BIT={UART_SIM_CLKS_PER_BIT}"]
    elif stats:
        cmd[1:1] = ["-CFLAGS", "-DLAYER_STATS"]
    proc = subprocess.run(cmd, cwd=rtl_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise MnistEdgeError(f"Verilator build of {top} failed:\n{tail}")
    return rtl_dir / obj / "tb"


def simulate(binary: Path, rtl_dir: Path, pixels: np.ndarray, classes: int,
             layer_stats: list[dict[str, int]] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits [N, classes], class [N], cycles [N]) from the compiled testbench.

    Runs in rtl_dir, where $readmemh finds mem/: point it at a copy with edited ROM
    images to simulate those without rebuilding. A binary built with `stats` fills
    `layer_stats` (when given) with each layer's cycles and busy lane-cycles, summed over
    the images.
    """
    pixels = np.ascontiguousarray(pixels)
    pixels = (pixels.view(np.uint8) if pixels.dtype == np.int8 else  # int8 inputs: as bytes
              pixels.astype(np.uint8)).reshape(len(pixels), -1)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-sim-") as tmp:
        px, out = Path(tmp) / "pixels.bin", Path(tmp) / "out.bin"
        stats = Path(tmp) / "stats.bin"
        px.write_bytes(pixels.tobytes())
        args = [str(binary), str(px), str(len(pixels)), str(out)]
        if layer_stats is not None:
            args.append(str(stats))
        proc = subprocess.run(args, cwd=rtl_dir, capture_output=True, text=True)
        if proc.returncode != 0:
            raise MnistEdgeError(f"RTL simulation failed: {proc.stderr.strip()[-500:]}")
        raw = np.frombuffer(out.read_bytes(), dtype=np.uint8)
        if layer_stats is not None:
            if not stats.exists():
                raise MnistEdgeError("the testbench wrote no layer statistics (build it "
                                     "with stats=True)")
            counts = np.frombuffer(stats.read_bytes(), dtype="<u8").reshape(-1, 2)
            layer_stats[:] = [{"cycles": int(c), "busy_lane_cycles": int(b)}
                              for c, b in counts]
    rec = classes + 1 + 4
    if raw.size != rec * len(pixels):
        raise MnistEdgeError(f"RTL simulation returned {raw.size} bytes, expected "
                             f"{rec * len(pixels)}")
    raw = raw.reshape(len(pixels), rec)
    logits = raw[:, :classes].view(np.int8).copy()
    cls = raw[:, classes].astype(np.int64)
    cycles = raw[:, classes + 1 :].copy().view("<u4").ravel().astype(np.int64)
    return logits, cls, cycles


def _check_class(logits: np.ndarray, cls: np.ndarray, what: str) -> None:
    """The class byte must be the argmax of the logits the design sent (lowest index on ties)."""
    bad = np.flatnonzero(np.argmax(logits, axis=1) != cls)
    if len(bad):
        raise MnistEdgeError(f"{what}: class byte {int(cls[bad[0]])} is not the argmax of the "
                             f"logits of image {int(bad[0])}")


def _run(run_dir: Path, graph: QGraph, pixels: np.ndarray, options: dict[str, Any],
         uart: bool, netlist: bool = False) -> BackendResult:
    fpga = options.get("fpga") or "ecp5-25k"
    lanes = options.get("lanes")
    keep = options.get("rtl_dir")
    tmp = Path(tempfile.mkdtemp(prefix="mnist-edge-rtl-"))
    try:
        rtl_dir = tmp / "rtl"
        if keep:
            shutil.copytree(keep, rtl_dir)
        else:
            generate_rtl(graph, rtl_dir, fpga=fpga, lanes=lanes)
        manifest = load_manifest(rtl_dir)
        start = time.time()
        if netlist:
            from .fpga_synth import NETLIST_NAME, synth_netlist

            cells, defines = synth_netlist(rtl_dir, manifest["fpga"])
            binary = build(rtl_dir, sources=(NETLIST_NAME, str(cells)), defines=tuple(defines),
                           opt="-O0")
        else:
            binary = build(rtl_dir, uart, stats=not uart)
        build_s = time.time() - start
        start = time.time()
        stats: list[dict[str, int]] | None = None if uart or netlist else []
        logits, cls, cycles = simulate(binary, rtl_dir, pixels, manifest["classes"], stats)
        sim_s = time.time() - start
    finally:
        if not os.environ.get("MNIST_EDGE_KEEP_RTL_BUILD"):
            shutil.rmtree(tmp, ignore_errors=True)
    what = "rtl-uart" if uart else "rtl-netlist" if netlist else "rtl"
    _check_class(logits, cls, what)
    extra: dict[str, Any] = {
        "fpga": manifest["fpga"], "lanes": manifest["lanes"],
        "positions": manifest.get("positions", 1),
        "cycles_per_image": int(np.max(cycles)) if len(cycles) else 0,
        "cycles_per_image_mean": float(np.mean(cycles)) if len(cycles) else 0.0,
        "verilator_build_seconds": round(build_s, 1),
        "simulation_seconds": round(sim_s, 1),
    }
    if stats:
        extra["layers"] = layer_table(manifest, stats, len(pixels))
    latency = None
    if netlist:
        extra["note"] = ("the yosys netlist (before place and route) with yosys's cell models: "
                         "what the bitstream computes")
    if uart:
        extra["uart_sim_clks_per_bit"] = UART_SIM_CLKS_PER_BIT
        extra["note"] = "UART top with a UART model at 8 clocks per bit; cycles include the UART"
    else:
        latency = extra["cycles_per_image"] / manifest["clock_mhz"]
        extra["latency_note"] = (f"measured cycles at the design clock {manifest['clock_mhz']} "
                                 "MHz; `synth` reports the latency at the achieved Fmax")
    return BackendResult(logits, latency, extra)


def layer_table(manifest: dict[str, Any], stats: list[dict[str, int]],
                images: int) -> list[dict[str, Any]]:
    """Per layer: measured cycles per image and lane utilization (busy multiplier-cycles over
    multipliers x cycles: lanes x positions), beside the useful lane operations the layer needs."""
    lanes = manifest["lanes"] * manifest.get("positions", 1)  # every multiplier
    rows = []
    for layer, st in zip(manifest["layers"], stats, strict=True):
        rows.append({
            "index": layer["index"], "mode": layer["mode"],
            "summary": layer["summary"],
            "cycles_per_image": round(st["cycles"] / max(images, 1)),
            "lane_utilization": round(st["busy_lane_cycles"] / max(lanes * st["cycles"], 1), 4),
        })
    return rows


def run(run_dir: Path, graph: QGraph, pixels: np.ndarray,
        options: dict[str, Any]) -> BackendResult:
    """The engine through its stream interface: every image, every logit."""
    return _run(run_dir, graph, pixels, options, uart=False)


def run_uart(run_dir: Path, graph: QGraph, pixels: np.ndarray,
             options: dict[str, Any]) -> BackendResult:
    """The UART top with a UART model in the testbench (use a few images: --limit 3)."""
    return _run(run_dir, graph, pixels, options, uart=True)


def run_netlist(run_dir: Path, graph: QGraph, pixels: np.ndarray,
                options: dict[str, Any]) -> BackendResult:
    """The synthesized netlist at gate level (slow: use a few images, --limit 3)."""
    return _run(run_dir, graph, pixels, options, uart=False, netlist=True)
