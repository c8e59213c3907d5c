"""Exact instruction counts in QEMU, for cores unicorn does not model (the Cortex-M55).

Unicorn 2 is QEMU 5.0 inside and knows no Cortex-M55 or MVE, so `bench --mcu
cortex-m55` runs the ordinary semihosting firmware in qemu-system-arm on one input,
with a small TCG plugin (templates/qemu/insn_count.c, built with the host's gcc) that
logs every translation block executed from the entry of mnist_edge_predict to its
return address: its address and its instruction count. `mcu_bench.BlockTally` turns
that log into per-layer counts exactly as it does unicorn's blocks, so both counters
share one definition. QEMU's -icount with SysTick was not used: AN547's SysTick runs
at 32 MHz (31.25 ns a tick), which no icount shift (2^N ns an instruction) divides,
so ticks round away up to 31 instructions per reading. tests/test_qemu_count.py
counts the same Cortex-M4 ELF both ways and gets the same figures.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import MnistEdgeError
from ..paths import TEMPLATES_DIR
from .firmware import Firmware, qemu_command
from .mcu_bench import BlockTally, Trace, _elf_image, disassembly
from .tools import require_tool

PLUGIN_SOURCE = TEMPLATES_DIR / "qemu" / "insn_count.c"
TIMEOUT_S = 600.0


def build_plugin(folder: Path) -> Path:
    """Compile the counting plugin into `folder` (the host's gcc, a fraction of a second)."""
    gcc = require_tool("gcc", "install gcc (the host C compiler builds QEMU's counting plugin)")
    out = Path(folder) / "insn_count.so"
    proc = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Wextra",
                           "-Werror", "-o", str(out), str(PLUGIN_SOURCE)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise MnistEdgeError(f"building the QEMU counting plugin failed: "
                             f"{said[0] if said else proc.returncode}")
    return out


def return_address(fw: Firmware) -> int:
    """The address after the runner's `bl mnist_edge_predict`: where the call returns."""
    code = disassembly(fw)
    addrs = sorted(code)
    for i, a in enumerate(addrs):
        if re.match(r"^bl\s+[0-9a-f]+\s+<mnist_edge_predict>$", code[a]) and i + 1 < len(addrs):
            return addrs[i + 1]
    raise MnistEdgeError(f"{fw.elf}: no call to mnist_edge_predict found")


def count_predict(fw: Firmware, pixels: np.ndarray) -> Trace:
    """Run the firmware on one input (bytes in the C API's layout) in QEMU and count the
    instructions of its mnist_edge_predict call, per kernel call as `emulate_predict`."""
    if not fw.board.emulated or fw.board.cpu.arch != "arm":
        raise MnistEdgeError(f"{fw.board.name}: counting in QEMU is for the Cortex-M targets "
                             "(it reads the stack from the callee's PUSH)")
    _, symbols = _elf_image(fw.elf)
    for need in ("mnist_edge_predict", "__stack_limit__", "__stack_top__"):
        if need not in symbols:
            raise MnistEdgeError(f"{fw.elf}: symbol {need} not found")
    start = symbols["mnist_edge_predict"].addr & ~1
    stop = return_address(fw)
    lo, hi = symbols["__stack_limit__"].addr, symbols["__stack_top__"].addr
    data = np.ascontiguousarray(pixels).reshape(1, -1)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-count-") as tmp:
        work = Path(tmp)
        plugin = build_plugin(work)
        log = work / "blocks.bin"
        data.tofile(work / "images.bin")
        cmd = qemu_command(fw.board, fw.elf.resolve())
        require_tool(cmd[0])
        at = cmd.index("-kernel")
        cmd[at:at] = ["-plugin", f"{plugin},start={start:#x},stop={stop:#x},stack_lo={lo:#x},"
                              f"stack_hi={hi:#x},out={log}"]
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise MnistEdgeError(f"{fw.board.name}: counting one inference in QEMU took over "
                                 f"{TIMEOUT_S:.0f} s and was stopped") from None
        if proc.returncode != 0:
            said = (proc.stdout + proc.stderr).strip().splitlines()
            raise MnistEdgeError(f"{fw.board.name}: firmware failed in QEMU under the counting "
                                 f"plugin: {said[-1] if said else proc.returncode}")
        stack_file = work / "blocks.bin.stack"
        if not stack_file.exists():
            raise MnistEdgeError(f"{fw.board.name}: the counting plugin never saw "
                                 "mnist_edge_predict return")
        entry_top, lowest = (int(v) for v in stack_file.read_text().split())
        blocks = np.fromfile(log, dtype="<u4").reshape(-1, 2)
        logits = np.fromfile(work / "logits.bin", dtype=np.int8)
    tally = BlockTally(symbols, fw.board)
    feed = tally.feed
    for address, n in blocks.tolist():
        feed(address, n)
    # The callee's first PUSH stores lr at its entry stack pointer - 4; the call's stack
    # reaches down to the lowest address it stored into the stack region.
    if not lo <= entry_top < hi:
        raise MnistEdgeError(f"{fw.elf}: mnist_edge_predict's first block stored nothing "
                             "on the stack; cannot measure its stack")
    stack = entry_top + 4 - lowest
    return tally.trace(logits, stack, None)
