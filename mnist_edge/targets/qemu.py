"""Validation backends qemu-m0/m3/m4/m7/m33/m55 and qemu-rv32imc/rv32imfc: the firmware
classifies every image in QEMU (and unicorn-m0: in unicorn's Cortex-M0, targets/unicorn_run.py).

The host writes the images to `images.bin` in a scratch folder, QEMU runs the
semihosting firmware there, and the firmware writes `logits.bin` back. A
firmware that hangs is stopped by a timeout (MnistEdgeError).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import analyze
from ..backends.c import c_inputs
from ..errors import MnistEdgeError
from ..paths import atomic_dir
from ..qgraph import QGraph
from ..validate import BackendResult
from .boards import get_target
from .firmware import Firmware, build_firmware, qemu_command
from .tools import require_tool

# QEMU ran the default model at ~25 images/s (m4, measured); a hung firmware is still
# stopped, after a limit that leaves a 6x margin on a slower machine. Larger models get
# the same margin per MAC: validate scales the limit by the model's MACs beyond
# TIMEOUT_MACS (about the default model's), as ResNet-8's 12.5 M MACs on qemu-m55 (MVE
# instructions are helper calls in QEMU) overran the fixed limit.
TIMEOUT_BASE_S = 30.0
TIMEOUT_PER_IMAGE_S = 0.25
TIMEOUT_MACS = 2_000_000
# Unicorn (unicorn-m0) runs the same Cortex-M0 ELF about 2.4x slower than QEMU 7.2 runs it
# on the AN385 (KWS, 50 inputs: 6.0 s against 2.5 s, measured under load): its limit is
# this many times QEMU's.
UNICORN_SLOWER = 4


def run_firmware(fw: Firmware, pixels: np.ndarray, timeout: float | None = None,
                 classes: int = 10) -> tuple[np.ndarray, float]:
    """Run a semihosting firmware on N inputs already in the C API's layout and encoding
    (`backends.c.c_inputs`; one-channel uint8 images may stay [N, H, W]); returns
    (logits, seconds)."""
    if not fw.board.emulated:
        raise MnistEdgeError(f"{fw.board.name} is a real board, not a QEMU target")
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype.itemsize != 1 or pixels.ndim < 2:
        raise MnistEdgeError(f"inputs must be bytes [N, ...], got {pixels.dtype} {pixels.shape}")
    pixels = pixels.reshape(len(pixels), -1)
    if timeout is None:
        timeout = TIMEOUT_BASE_S + TIMEOUT_PER_IMAGE_S * len(pixels)
    if fw.board.emulator == "unicorn":
        from .unicorn_run import run_firmware as run_in_unicorn

        return run_in_unicorn(fw, pixels, timeout, classes)
    cmd = qemu_command(fw.board, fw.elf.resolve())
    require_tool(cmd[0])
    with tempfile.TemporaryDirectory(prefix="mnist-edge-qemu-") as tmp:
        work = Path(tmp)
        pixels.tofile(work / "images.bin")
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise MnistEdgeError(
                f"{fw.board.name}: the firmware did not finish {len(pixels)} images within "
                f"{timeout:.0f} s in QEMU and was stopped (hung, or pass a larger timeout)"
            ) from None
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            said = (proc.stdout + proc.stderr).strip().splitlines()
            detail = said[-1] if said else "no output"
            raise MnistEdgeError(f"{fw.board.name}: firmware failed in QEMU "
                                 f"(exit status {proc.returncode}): {detail}")
        out = work / "logits.bin"
        raw = np.fromfile(out, dtype=np.int8) if out.exists() else np.zeros(0, np.int8)
    if raw.size != len(pixels) * classes:
        raise MnistEdgeError(f"{fw.board.name}: firmware wrote {raw.size} logits, expected "
                             f"{len(pixels) * classes}")
    return raw.reshape(len(pixels), classes), seconds


def run_target(target: str, run_dir: Path, graph: QGraph, pixels: np.ndarray,
               options: dict[str, Any]) -> BackendResult:
    """Build the firmware for `target` into <run>/firmware/<target> and run all `pixels`."""
    board = get_target(target)
    # Built and run in a private folder, then renamed into place: concurrent runs of one
    # target never run an image another process is replacing.
    with atomic_dir(Path(run_dir) / "firmware" / board.name) as work:
        fw = build_firmware(graph, board, work, "qemu", opt=options.get("opt", "-O2"),
                            requant=options.get("requant"))
        timeout = options.get("timeout")
        if timeout is None:
            macs = max(analyze.summarize(graph)["macs"], TIMEOUT_MACS)
            timeout = TIMEOUT_BASE_S + TIMEOUT_PER_IMAGE_S * len(pixels) * macs / TIMEOUT_MACS
            timeout *= UNICORN_SLOWER if board.emulator == "unicorn" else 1
        logits, seconds = run_firmware(fw, c_inputs(graph, pixels), timeout,
                                       graph.output.size)
    where = ({"qemu_machine": board.qemu_machine, "qemu_seconds": round(seconds, 2)}
             if board.emulator == "qemu" else
             {"emulator": f"unicorn {board.core}", "emulator_seconds": round(seconds, 2)})
    extra = {**where,
             "requant": fw.requant, "images_per_second": round(len(pixels) / seconds, 1)}
    # Wall time per image in QEMU says nothing about the chip: no latency_us here.
    return BackendResult(logits, None, extra)


def _backend(target: str) -> Callable[[Path, QGraph, np.ndarray, dict[str, Any]], BackendResult]:
    """The `validate` backend that runs `target`'s firmware (validate.BACKENDS names them)."""
    def run(run_dir: Path, graph: QGraph, pixels: np.ndarray,
            options: dict[str, Any]) -> BackendResult:
        return run_target(target, run_dir, graph, pixels, options)

    run.__name__ = f"run_{target.removeprefix('qemu-').replace('-', '_')}"
    return run


run_m4 = _backend("qemu-m4")
run_m3 = _backend("qemu-m3")
run_m7 = _backend("qemu-m7")
run_m0 = _backend("qemu-m0")
run_m33 = _backend("qemu-m33")
run_m55 = _backend("qemu-m55")
run_unicorn_m0 = _backend("unicorn-m0")
run_rv32imc = _backend("qemu-rv32imc")
run_rv32imfc = _backend("qemu-rv32imfc")
