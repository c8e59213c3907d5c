"""Run a semihosting firmware whole in one of unicorn's core models (the `unicorn-m0`
validation backend).

QEMU 7.2's only Cortex-M0 machine is the BBC micro:bit (256 KB flash, 16 KB RAM), too
small for the MLPerf Tiny models, and it refuses `-cpu cortex-m0` on every larger
machine. Unicorn (QEMU 5.0's CPU models, no boards) has a Cortex-M0 model that
executes ARMv6-M and undefines Thumb-2 (tests/test_unicorn_m0.py), under any memory
map. So the firmware built for the core (-mcpu=cortex-m0, the M0 kernels, the same
qemu_main.c runner) boots from its vector table here, and the host serves the
semihosting calls the runner makes (BKPT 0xAB: open, flen, read, write, close,
write0, exit) from memory: images.bin is the input batch, logits.bin collects the
output. Nothing touches the host's files.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import MnistEdgeError
from .firmware import Firmware
from .mcu_bench import _Cpu, _elf_image

EXCP_BKPT = 7  # QEMU's target/arm/cpu.h: the exception number unicorn's hook receives
BKPT_SEMIHOST = 0xBEAB  # Thumb `bkpt 0xab`
SYS_OPEN, SYS_CLOSE, SYS_WRITE0, SYS_WRITE, SYS_READ, SYS_FLEN, SYS_EXIT = (
    0x01, 0x02, 0x04, 0x05, 0x06, 0x0C, 0x18)
ADP_STOPPED_APPLICATION_EXIT = 0x20026
IMAGES, LOGITS = 1, 2  # the two file handles the runner opens


class _Semihost:
    """The host side of the runner's semihosting calls, over in-memory files."""

    def __init__(self, images: bytes) -> None:
        self.images = images
        self.pos = 0
        self.logits = bytearray()
        self.console: list[str] = []
        self.status: bool | None = None  # set by SYS_EXIT

    def call(self, uc: Any, op: int, arg: int) -> int:
        def words(n: int) -> list[int]:
            raw = bytes(uc.mem_read(arg, 4 * n))
            return [int.from_bytes(raw[4 * i:4 * i + 4], "little") for i in range(n)]

        if op == SYS_OPEN:
            path, mode, length = words(3)
            name = bytes(uc.mem_read(path, min(length, 256))).decode("ascii", "replace")
            if name == "images.bin" and mode < 4:
                return IMAGES
            if name == "logits.bin" and 4 <= mode < 8:
                return LOGITS
            return -1
        if op == SYS_FLEN:
            return len(self.images) if words(1)[0] == IMAGES else -1
        if op == SYS_READ:
            fd, buf, length = words(3)
            if fd != IMAGES:
                return length
            chunk = self.images[self.pos:self.pos + length]
            uc.mem_write(buf, chunk)
            self.pos += len(chunk)
            return length - len(chunk)  # bytes not read
        if op == SYS_WRITE:
            fd, buf, length = words(3)
            if fd != LOGITS:
                return length
            self.logits += bytes(uc.mem_read(buf, length))
            return 0
        if op == SYS_CLOSE:
            return 0 if words(1)[0] in (IMAGES, LOGITS) else -1
        if op == SYS_WRITE0:
            text = bytes(uc.mem_read(arg, 256)).split(b"\0", 1)[0]
            self.console.append(text.decode("ascii", "replace"))
            return 0
        if op == SYS_EXIT:
            self.status = arg == ADP_STOPPED_APPLICATION_EXIT
            uc.emu_stop()
            return 0
        raise MnistEdgeError(f"the firmware made semihosting call {op:#x}, which the unicorn "
                             "runner does not serve")


def run_firmware(fw: Firmware, pixels: np.ndarray, timeout: float,
                 classes: int) -> tuple[np.ndarray, float]:
    """Boot the firmware from reset in the core's unicorn model on N inputs (bytes [N, ...]
    in the C API's layout) and return (logits [N, classes], seconds)."""
    import unicorn
    from unicorn import arm_const as arm

    board = fw.board
    if board.cpu.arch != "arm" or not board.cpu.unicorn_model:
        raise MnistEdgeError(f"{board.name}: the unicorn runner takes Cortex-M cores that "
                             "unicorn models")
    segments, _ = _elf_image(fw.elf)
    uc = _Cpu(fw).uc
    uc.mem_map(board.flash_origin, board.flash_size)
    uc.mem_map(board.ram_origin, board.ram_size)
    for addr, data in segments:
        uc.mem_write(addr, data)
    pixels = np.ascontiguousarray(pixels).reshape(len(pixels), -1)
    host = _Semihost(pixels.tobytes())
    failure: list[str] = []

    def on_interrupt(uc_: Any, intno: int, _: Any) -> None:
        pc = uc_.reg_read(arm.UC_ARM_REG_PC)
        insn = int.from_bytes(bytes(uc_.mem_read(pc, 2)), "little")
        if intno != EXCP_BKPT or insn != BKPT_SEMIHOST:
            failure.append(f"exception {intno} at pc={pc:#010x}")
            uc_.emu_stop()
            return
        try:
            result = host.call(uc_, uc_.reg_read(arm.UC_ARM_REG_R0),
                               uc_.reg_read(arm.UC_ARM_REG_R1))
        except (MnistEdgeError, unicorn.UcError) as exc:  # e.g. a buffer outside the map
            failure.append(f"semihosting call: {exc}")
            uc_.emu_stop()
            return
        uc_.reg_write(arm.UC_ARM_REG_R0, result & 0xFFFFFFFF)
        uc_.reg_write(arm.UC_ARM_REG_PC, (pc + 2) | 1)  # past the BKPT, still Thumb

    uc.hook_add(unicorn.UC_HOOK_INTR, on_interrupt)
    vectors = bytes(uc.mem_read(board.flash_origin, 8))
    uc.reg_write(arm.UC_ARM_REG_SP, int.from_bytes(vectors[:4], "little"))
    reset = int.from_bytes(vectors[4:], "little")
    start = time.perf_counter()
    try:
        uc.emu_start(reset | 1, 0xFFFFFFFF, timeout=int(timeout * 1_000_000))
    except unicorn.UcError as exc:
        pc = uc.reg_read(arm.UC_ARM_REG_PC)
        raise MnistEdgeError(f"{board.name}: the firmware stopped in unicorn's "
                             f"{board.core} model at pc={pc:#010x}: {exc}") from None
    seconds = time.perf_counter() - start
    if failure:
        raise MnistEdgeError(f"{board.name}: firmware failed in unicorn: {failure[0]}")
    if host.status is None:
        raise MnistEdgeError(f"{board.name}: the firmware did not finish {len(pixels)} inputs "
                             f"within {timeout:.0f} s in unicorn and was stopped (hung, or "
                             "pass a larger timeout)")
    if not host.status:
        said = "".join(host.console).strip().splitlines()
        raise MnistEdgeError(f"{board.name}: firmware failed in unicorn: "
                             f"{said[-1] if said else 'exit status 1'}")
    raw = np.frombuffer(bytes(host.logits), dtype=np.int8)
    if raw.size != len(pixels) * classes:
        raise MnistEdgeError(f"{board.name}: firmware wrote {raw.size} logits, expected "
                             f"{len(pixels) * classes}")
    return raw.reshape(len(pixels), classes), seconds
