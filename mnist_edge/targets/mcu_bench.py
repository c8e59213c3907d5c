"""`mnist-edge bench`: exact instruction counts, flash and RAM of one inference on a
Cortex-M (M0, M3, M4, M7, M33, M55) or RISC-V (rv32imc, rv32imfc) core.

The firmware for the core is built as for QEMU (same flags, -O2 or -Os), then
`mnist_edge_predict` is run once in the unicorn instruction-set emulator.
Instructions are counted per basic block (UC_HOOK_BLOCK; unicorn fires no
per-instruction hook for IT-block instructions whose condition fails, and a
block runs to its end once entered), by decoding the instruction lengths of
the block (Thumb-2: 16 or 32 bits; RISC-V with C: 16 or 32 bits).
Instructions skipped by an IT condition still take an issue slot on the core,
so they are counted. Each block is charged to the kernel call (step) that the
model function last made, which gives per-layer counts. The stack is painted
before the call and scanned after it. The Cortex-M55 (MVE), which unicorn does not
model, is counted the same way in QEMU by a plugin (targets/qemu_count.py).
"""

from __future__ import annotations

import bisect
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import analyze, golden
from ..backends.c import c_inputs
from ..backends.c_planner import ArenaPlan, plan_arena
from ..errors import MnistEdgeError
from ..qgraph import QGraph
from .boards import BENCH_TARGET, CORES, get_target
from .firmware import Firmware, build_firmware, tool
from .tools import require_tool

PAINT = 0xA5A5A5A5
# Arm CMSIS-NN kernels on the same layer shapes (gcc 12.2, -O2, exact counts, Cortex-M4).
CMSIS_NN_REFERENCE = {
    "simplecnn": {"instructions": 6_799_862, "per_mac": 2.43},
    "gapnet": {"instructions": 5_491_701, "per_mac": 2.95, "note": "ReLU instead of SELU/GELU"},
}
MODEL_SOURCES = ("mnist_edge_model.o", "mnist_edge_kernels.o", "mnist_edge_weights.o",
                 "mnist_edge_kernels_mve.o")


def thumb_instruction_count(code: bytes) -> int:
    """Instructions in a run of Thumb-2 code: a halfword whose top 5 bits are 0b11101,
    0b11110 or 0b11111 starts a 32-bit instruction, any other a 16-bit one."""
    n = i = 0
    while i + 1 < len(code):
        top = code[i + 1] >> 3  # little endian: the high byte of the halfword
        i += 4 if top in (0b11101, 0b11110, 0b11111) else 2
        n += 1
    return n


def rvc_instruction_count(code: bytes) -> int:
    """Instructions in a run of RISC-V code with the C extension: a halfword whose low two
    bits are 0b11 starts a 32-bit instruction, any other is a 16-bit one."""
    n = i = 0
    while i + 1 < len(code):
        i += 4 if code[i] & 0b11 == 0b11 else 2
        n += 1
    return n


# ------------------------------------------------------------ Cortex-M4 timing estimate

# A simple Cortex-M4 timing model (after the Cortex-M4 TRM, table 3-1), an ESTIMATE:
# no wait states (code and data in zero-wait memory), no bus contention.
#  - data processing, IT, MUL/MLA, SMLAD and the other DSP ops, SXTB16, SEL: 1 cycle
#  - LDR*/VLDR: 2 cycles, 1 when directly after another load or store (pipelined)
#  - STR*/VSTR: 1 cycle (the write buffer); LDRD/STRD: 1 + 2
#  - LDM/STM/PUSH/POP: 1 + registers; a POP or LDM that loads pc also refills
#  - a taken branch (B, BL, BX, CBZ/CBNZ, POP {pc}): 1 + 2 to refill the pipeline;
#    not taken: 1
#  - SDIV/UDIV: 7 (the TRM says 2 to 12); VDIV/VSQRT: 14
M4_REFILL = 2

# The second, upper-bound estimate: every data load from flash (weights, biases,
# requantization constants, tables, literal pools) pays the flash's wait states, as if the
# accelerator's data cache always missed; instruction fetches are taken to hit the
# prefetch buffer and instruction cache (free). The part: STM32L4R5 (the MLPerf Tiny
# reference board, NUCLEO-L4R5ZI) at 120 MHz in range 1 boost mode, whose flash latency
# is 5 wait states (RM0432, "Number of wait states according to CPU clock frequency").
FLASH_PART = "STM32L4R5 at 120 MHz"
FLASH_WAIT_STATES = 5
_M4_COST = {"sdiv": 7, "udiv": 7, "vdiv": 14, "vsqrt": 14, "ldrd": 3, "strd": 3}
_LOAD = ("ldr", "vldr")
_STORE = ("str", "vstr")
_MULTI = ("ldm", "stm", "push", "pop", "vpush", "vpop")


def _base_mnemonic(text: str) -> str:
    m = text.split()[0].lower()
    return m.split(".")[0]


def m4_block_cycles(instructions: list[str], after_memory: bool = False) -> int:
    """Estimated cycles of one basic block, its last branch not taken (see M4_REFILL);
    `after_memory`: the instruction before it, in the same straight line, was a load or
    store (the emulator splits straight-line code into blocks where it likes)."""
    cycles, prev_mem = 0, after_memory
    for text in instructions:
        m = _base_mnemonic(text)
        mem = _is_memory(text)
        if m in _M4_COST:
            c = _M4_COST[m]
        elif m.startswith(_MULTI):
            regs = text[text.find("{") + 1:text.find("}")]
            n = sum(int(r.split("-")[1].strip("rsd")) - int(r.split("-")[0].strip("rsd")) + 1
                    if "-" in r else 1 for r in regs.split(",") if r.strip())
            c = 1 + n
        elif m.startswith(_LOAD):
            c = 1 if prev_mem else 2
        else:
            c = 1
        cycles += c
        prev_mem = mem
    return cycles


def _is_literal_load(text: str) -> bool:
    """A PC-relative load: its literal pool is in the function, in flash."""
    return _base_mnemonic(text).startswith(_LOAD) and "[pc" in text


def flash_data_ranges(symbols: dict[str, Symbol], origin: int, size: int
                      ) -> list[tuple[int, int]]:
    """The flash outside every function, as inclusive (first, last) addresses: where the
    memory-read hook counts data reads. Unicorn 2 misruns an IT block when a memory hook
    fires inside it (`ite eq; ldreq r1, [pc, #164]; ldrne ...` ran the branch after it as
    conditional too, and never returned), so the functions' own literal pools are not
    hooked but counted from the disassembly of each block run (`_is_literal_load`); a
    conditional one counts whether its condition held or not (an upper bound)."""
    funcs = sorted((s.addr & ~1, (s.addr & ~1) + s.size) for s in symbols.values()
                   if s.function and s.size and origin <= s.addr < origin + size)
    ranges, at = [], origin
    for lo, hi in funcs:
        if lo > at:
            ranges.append((at, lo - 1))
        at = max(at, hi)
    if at < origin + size:
        ranges.append((at, origin + size - 1))
    return ranges


def _is_memory(text: str) -> bool:
    return _base_mnemonic(text).startswith(_LOAD + _STORE + _MULTI)


def _ends_in_branch(text: str) -> bool:
    m = _base_mnemonic(text)
    return (m in ("b", "bl", "bx", "blx", "cbz", "cbnz") or
            (len(m) == 3 and m.startswith("b") and m[1:] in _CONDS) or
            ("pc" in text.split("{")[-1] and m.startswith(("pop", "ldm"))) or
            (m == "ldr" and text.split()[1].startswith("pc")))


_CONDS = {"eq", "ne", "cs", "cc", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le",
          "hs", "lo"}


def disassembly(fw: Firmware) -> dict[int, str]:
    """Address -> instruction text ("ldr r3, [r0, #4]"), from objdump of the ELF."""
    out = subprocess.run([require_tool(tool(fw.board, "objdump")), "-d", "--no-show-raw-insn",
                          str(fw.elf)], capture_output=True, text=True, check=True).stdout
    code: dict[int, str] = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([0-9a-f]+):\t(\S.*)$", line)
        if m and not m.group(2).startswith("."):
            code[int(m.group(1), 16)] = m.group(2).split(";")[0].split("@")[0].strip()
    return code


@dataclass
class Symbol:
    name: str
    addr: int
    size: int
    function: bool = False


def _elf_image(elf: Path) -> tuple[list[tuple[int, bytes]], dict[str, Symbol]]:
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        e = ELFFile(f)
        segments = [(seg["p_vaddr"], seg.data()) for seg in e.iter_segments()
                    if seg["p_type"] == "PT_LOAD" and seg["p_filesz"] > 0]
        symbols: dict[str, Symbol] = {}
        for s in e.get_section_by_name(".symtab").iter_symbols():
            if s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") and s.name:
                symbols.setdefault(s.name, Symbol(s.name, s["st_value"], s["st_size"],
                                                  s["st_info"]["type"] == "STT_FUNC"))
    return segments, symbols


@dataclass
class Trace:
    """What one emulated inference did."""

    logits: np.ndarray
    total: int
    glue: int  # instructions in mnist_edge_predict itself (calls, argmax call set-up)
    steps: list[tuple[str, int]]  # (function called by mnist_edge_predict, instructions)
    stack_bytes: int
    functions: dict[str, int]  # instructions per function (including inlined code)
    cycles: int | None = None  # Cortex-M4 timing estimate (see m4_block_cycles)
    step_cycles: list[int] | None = None
    flash_reads: int | None = None  # data reads from flash (each pays FLASH_WAIT_STATES)
    step_flash_reads: list[int] | None = None


class _Cpu:
    """The registers and instruction decoding of one architecture in unicorn."""

    def __init__(self, fw: Firmware) -> None:
        import unicorn

        board = fw.board
        self.riscv = board.cpu.arch == "riscv"
        if self.riscv:
            from unicorn import riscv_const as rv

            self.uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV32)
            self.uc.ctl_set_cpu_model(getattr(rv, board.cpu.unicorn_model))
            self.sp, self.pc, self.ra = rv.UC_RISCV_REG_SP, rv.UC_RISCV_REG_PC, rv.UC_RISCV_REG_RA
            self.args = (rv.UC_RISCV_REG_A0, rv.UC_RISCV_REG_A1)
            self.gp = rv.UC_RISCV_REG_GP
            self.count = rvc_instruction_count
            self.thumb = 0
        else:
            from unicorn import arm_const as arm

            # No UC_MODE_MCLASS: with it unicorn 2 ignores the model and runs a Cortex-M33
            # (cpu_arm_init); the M-profile models are M-profile without it, and the
            # Cortex-M0 model then refuses Thumb-2 (tests/test_unicorn_m0.py).
            self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB)
            self.uc.ctl_set_cpu_model(getattr(arm, board.cpu.unicorn_model))
            self.sp, self.pc, self.ra = arm.UC_ARM_REG_SP, arm.UC_ARM_REG_PC, arm.UC_ARM_REG_LR
            self.args = (arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1)
            self.gp = None
            self.count = thumb_instruction_count
            self.thumb = 1

    def setup_call(self, symbols: dict[str, Symbol], sp: int, arg0: int, arg1: int,
                   ret: int) -> None:
        uc = self.uc
        uc.reg_write(self.sp, sp)
        uc.reg_write(self.args[0], arg0)
        uc.reg_write(self.args[1], arg1)
        uc.reg_write(self.ra, ret | self.thumb)
        if self.riscv:
            from unicorn import riscv_const as rv

            if "__global_pointer$" in symbols:
                uc.reg_write(self.gp, symbols["__global_pointer$"].addr)
            # The startup code turns the FPU on (mstatus.FS); here the call starts cold.
            uc.reg_write(rv.UC_RISCV_REG_MSTATUS, uc.reg_read(rv.UC_RISCV_REG_MSTATUS) |
                         (1 << 13))


class BlockTally:
    """Charges executed basic blocks to the kernel calls of mnist_edge_predict: a block
    inside predict is glue; the first block outside it after a glue block starts a step
    when it begins a function (the kernel predict called); every later block outside
    predict (helpers the kernel calls) goes to that step. Fed by unicorn here and by
    the QEMU plugin in targets/qemu_count.py, so both count the same way."""

    def __init__(self, symbols: dict[str, Symbol], board: Any) -> None:
        funcs = sorted((s.addr & ~1, s.name, s.size) for s in symbols.values()
                       if s.size > 0 and board.flash_origin <= s.addr < board.flash_origin
                       + board.flash_size)
        self.funcs = funcs
        self.starts = [f[0] for f in funcs]
        self.entry = {f[0]: f[1] for f in funcs}
        predict = symbols["mnist_edge_predict"]
        self.p_lo = predict.addr & ~1
        self.p_hi = self.p_lo + predict.size
        self.in_predict = False
        self.glue = self.total = 0
        self.glue_cycles = 0
        self.steps: list[list[Any]] = []  # [function, instructions, cycles, flash reads]
        self.ran: dict[str, int] = {}

    def feed(self, address: int, n: int, c: int = 0) -> None:
        """One executed block at `address` of `n` instructions (and `c` estimated cycles)."""
        self.total += n
        if self.p_lo <= address < self.p_hi:
            self.glue += n
            self.glue_cycles += c
            self.in_predict = True
            return
        if self.in_predict and address in self.entry:
            self.steps.append([self.entry[address], 0, 0, 0])
        self.in_predict = False
        if self.steps:
            self.steps[-1][1] += n
            self.steps[-1][2] += c
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0:
            name = self.funcs[i][1]
            self.ran[name] = self.ran.get(name, 0) + n

    def trace(self, logits: np.ndarray, stack_bytes: int, cycles: int | None,
              flash_reads: int | None = None) -> Trace:
        ran = dict(self.ran)
        ran["mnist_edge_predict"] = self.glue
        return Trace(logits, self.total, self.glue, [(s[0], s[1]) for s in self.steps],
                     stack_bytes, ran, cycles,
                     [s[2] for s in self.steps] if cycles is not None else None,
                     flash_reads,
                     [s[3] for s in self.steps] if flash_reads is not None else None)


def emulate_predict(fw: Firmware, pixels: np.ndarray, timing: bool = False,
                    expected: np.ndarray | None = None) -> Trace:
    """Run mnist_edge_predict once in unicorn on one input, as bytes in the C API's layout
    (`backends.c.c_inputs`); with `timing`, also the Cortex-M4 cycle estimate per step and,
    given the `expected` logits, the data reads from flash.

    The flash reads need a memory-read hook, and unicorn 2 misruns some builds while one is
    set (Cortex-M4 -Os ResNet-8 and VWW gave other logits, or an invalid instruction, with
    it and golden's without it). So the hooked run counts only when its logits are the
    expected ones; otherwise the inference runs again without the hook, and the flash
    reads are None."""
    if timing and expected is not None:
        try:
            trace = _emulate(fw, pixels, True, flash_hook=True)
            if np.array_equal(trace.logits[:expected.size], expected):
                return trace
        except MnistEdgeError:
            pass
    return _emulate(fw, pixels, timing, flash_hook=False)


def _emulate(fw: Firmware, pixels: np.ndarray, timing: bool, flash_hook: bool) -> Trace:
    """One emulated inference: with `timing` the cycle model, with `flash_hook` the
    memory-read hook that counts data reads from flash."""
    import unicorn

    segments, symbols = _elf_image(fw.elf)
    for need in ("mnist_edge_predict", "__stack_limit__", "__stack_top__"):
        if need not in symbols:
            raise MnistEdgeError(f"{fw.elf}: symbol {need} not found")
    board = fw.board
    cpu = _Cpu(fw)
    uc = cpu.uc
    uc.mem_map(board.flash_origin, board.flash_size)
    uc.mem_map(board.ram_origin, board.ram_size)
    for addr, data in segments:
        uc.mem_write(addr, data)
    io = 0x60000000  # host-side buffers for the input and the logits, outside every board's map
    data = np.ascontiguousarray(pixels).tobytes()
    out = io + (len(data) + 15) // 16 * 16
    uc.mem_map(io, (out - io + 1024 + 0xFFF) // 0x1000 * 0x1000)
    uc.mem_write(io, data)
    lo, hi = symbols["__stack_limit__"].addr, symbols["__stack_top__"].addr
    uc.mem_write(lo, PAINT.to_bytes(4, "little") * ((hi - lo) // 4))

    tally = BlockTally(symbols, board)
    counts: dict[tuple[int, int], int] = {}
    count = cpu.count
    code = disassembly(fw) if timing else {}
    # (cycles, cycles straight after a load or store, ends in a branch, ends in one,
    #  literal-pool loads)
    block_cost: dict[tuple[int, int], tuple[int, int, bool, bool, int]] = {}
    clock = {"cycles": 0, "end": -1, "branch": False, "memory": False, "flash_reads": 0}

    def on_block(uc_: Any, address: int, size: int, _: Any) -> None:
        key = (address, size)
        n = counts.get(key)
        if n is None:
            n = counts[key] = count(bytes(uc_.mem_read(address, size)))
        c = 0
        if timing:
            cost = block_cost.get(key)
            if cost is None:
                ins = [code[a] for a in sorted(code) if address <= a < address + size]
                branch = bool(ins) and _ends_in_branch(ins[-1])
                cost = block_cost[key] = (m4_block_cycles(ins), m4_block_cycles(ins, True),
                                          branch, bool(ins) and not branch and _is_memory(ins[-1]),
                                          sum(map(_is_literal_load, ins)))
            straight_on = address == clock["end"]
            c = (cost[1] if straight_on and clock["memory"] else cost[0]) + \
                (M4_REFILL if clock["branch"] and not straight_on else 0)
            clock["cycles"] += c
            clock["end"], clock["branch"], clock["memory"] = address + size, cost[2], cost[3]
        tally.feed(address, n, c)
        if timing and flash_hook and cost[4]:
            clock["flash_reads"] += cost[4]
            if tally.steps and not tally.in_predict:
                tally.steps[-1][3] += cost[4]

    def on_flash_read(uc_: Any, access: int, address: int, size: int, value: int,
                      _: Any) -> None:
        clock["flash_reads"] += 1  # a data access; instruction fetches do not come here
        if tally.steps and not tally.in_predict:
            tally.steps[-1][3] += 1

    stop = board.flash_origin + board.flash_size - 16  # mapped, never executed
    cpu.setup_call(symbols, hi, io, out, stop)
    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    if flash_hook:
        for first, last in flash_data_ranges(symbols, board.flash_origin, board.flash_size):
            uc.hook_add(unicorn.UC_HOOK_MEM_READ, on_flash_read, begin=first, end=last)
    try:
        uc.emu_start(tally.p_lo | cpu.thumb, stop, timeout=120 * 1_000_000)
    except unicorn.UcError as exc:
        pc = uc.reg_read(cpu.pc)
        raise MnistEdgeError(f"emulating mnist_edge_predict failed at pc=0x{pc:08x}: "
                             f"{exc}") from exc
    if uc.reg_read(cpu.pc) != stop:
        raise MnistEdgeError("emulating mnist_edge_predict did not return within 120 s")
    paint = bytes(uc.mem_read(lo, hi - lo))
    used = hi - lo
    for off in range(0, hi - lo, 4):
        if int.from_bytes(paint[off:off + 4], "little") != PAINT:
            used = hi - lo - off
            break
    else:
        used = 0
    logits = np.frombuffer(bytes(uc.mem_read(out, 1024)), dtype=np.int8)
    return tally.trace(logits, used, clock["cycles"] if timing else None,
                       clock["flash_reads"] if flash_hook else None)


# ----------------------------------------------------------------- sizes from the map


_SECTION = re.compile(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
_SECTION_NAME = re.compile(r"^ (\.\S+|COMMON)$")
_SECTION_REST = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")


def map_sections(map_file: Path) -> list[tuple[str, int, str]]:
    """Input sections placed by the linker: (section name, bytes, object file)."""
    text = map_file.read_text()
    body = text.split("Linker script and memory map", 1)[-1]
    out, pending = [], None
    for line in body.splitlines():
        m = _SECTION.match(line)
        if m and m.group(1).startswith((".", "COMMON")):
            out.append((m.group(1), int(m.group(3), 16), m.group(4).strip()))
            pending = None
            continue
        m = _SECTION_NAME.match(line)
        if m:
            pending = m.group(1)
            continue
        m = _SECTION_REST.match(line)
        if m and pending:
            out.append((pending, int(m.group(2), 16), m.group(3).strip()))
        pending = None
    return [s for s in out if s[1] > 0 and not s[2].startswith("0x")]


# The per-channel requantization constants among the model's constants (the generated
# weights file names each array <op>_weights, _bias, _mult, _shift; -fdata-sections gives
# each its own input section in the map).
REQUANT_SUFFIXES = ("_mult", "_shift")


def memory_figures(fw: Firmware) -> dict[str, int]:
    """Flash and RAM bytes by kind, from the link map (the whole firmware and the model);
    requant_param_bytes is the part of weight_bytes that holds multipliers and shifts."""
    fig = {"model_code_bytes": 0, "weight_bytes": 0, "requant_param_bytes": 0,
           "layer_descriptor_bytes": 0, "library_code_bytes": 0, "firmware_support_bytes": 0,
           "model_ram_bytes": 0}
    for name, size, obj in map_sections(fw.map):
        base = Path(obj.split("(")[0]).name
        in_model = base in MODEL_SOURCES
        alloc_ram = name.startswith((".bss", ".data", "COMMON"))
        if name.startswith(".ARM") or name.startswith((".comment", ".debug")):
            continue
        if in_model and alloc_ram:
            fig["model_ram_bytes"] += size
        elif in_model and name.startswith(".text"):
            fig["model_code_bytes"] += size
        elif base == "mnist_edge_weights.o":
            fig["weight_bytes"] += size
            if name.endswith(REQUANT_SUFFIXES):  # a part of weight_bytes
                fig["requant_param_bytes"] += size
        elif base == "mnist_edge_model.o":
            fig["layer_descriptor_bytes"] += size
        elif in_model:
            fig["model_code_bytes"] += size  # e.g. switch tables of the kernels
        elif "(" in obj and name.startswith(".text"):
            fig["library_code_bytes"] += size
        elif name.startswith((".text", ".rodata", ".isr_vector")):
            fig["firmware_support_bytes"] += size
    size_tool = require_tool(tool(fw.board, "size"))
    out = subprocess.run([size_tool, str(fw.elf)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in out.stdout.splitlines()[1].split()[:3])
    fig.update({"elf_text_bytes": text, "elf_data_bytes": data, "elf_bss_bytes": bss})
    return fig


# The generated arrays by what they hold (c_arrays.py names them <prefix>_<op>_<what>).
FLASH_KINDS = {"weights": "flash_weight_bytes", "bias": "flash_bias_bytes",
               "mult": "flash_requant_bytes", "shift": "flash_requant_bytes",
               "table": "flash_requant_bytes"}


def flash_split(symbols: dict[str, Symbol], prefix: str = "mnist_edge") -> dict[str, int]:
    """The model's constants in flash by kind, from the symbol sizes: weights, biases, and
    requantization parameters (multipliers, shifts, LUTs)."""
    out = dict.fromkeys(FLASH_KINDS.values(), 0)
    for name, sym in symbols.items():
        what = name.rsplit("_", 1)[-1]
        if name.startswith(prefix + "_") and what in FLASH_KINDS:
            out[FLASH_KINDS[what]] += sym.size
    return out


# --------------------------------------------------------------------- the benchmark


def _step_labels(graph: QGraph, plan: ArenaPlan) -> list[tuple[str, int]]:
    """(op names, MACs) of each kernel call mnist_edge_predict makes, then argmax."""
    costs = {r.name: r.macs for r in analyze.layer_costs(graph)}
    rows = []
    for step in plan.steps:
        names = [graph.ops[i].name for i in step.ops] or ["input"]
        rows.append(("+".join(names), sum(costs.get(n, 0) for n in names)))
    rows.append(("argmax", 0))
    return rows


def bench(run_dir: Path, graph: QGraph, core: str, size: bool = False,
          pixels: np.ndarray | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Build for `core`, emulate one inference; figures for report.json["mcu_bench"][core]."""
    if core not in CORES:
        raise MnistEdgeError(f"unknown core {core!r}; choose from: {', '.join(CORES)}")
    opt = "-Os" if size else "-O2"
    # The core's own flags on its emulated board (cortex-m55-nomve runs on qemu-m55).
    board = replace(get_target(BENCH_TARGET[core]), core=core)
    fw = build_firmware(graph, board, Path(run_dir) / "firmware" / f"bench-{core}{opt}",
                        "qemu", opt=opt)
    image_source = "the given input"
    if pixels is None:
        pixels, image_source = _first_test_image(graph, data_dir)
    expected = golden.run_int8(graph, pixels[None])[0]
    if board.cpu.unicorn_model:
        trace = emulate_predict(fw, c_inputs(graph, pixels[None])[0],
                                timing=core == "cortex-m4", expected=expected)
    else:  # a core unicorn does not model: the same count, in QEMU
        from .qemu_count import count_predict

        trace = count_predict(fw, c_inputs(graph, pixels[None])[0])
    if not np.array_equal(trace.logits[:expected.size], expected):
        raise MnistEdgeError(f"{core}: logits in the instruction counter differ from golden")
    macs = analyze.summarize(graph)["macs"]
    plan = plan_arena(graph)
    labels = _step_labels(graph, plan)
    layers = []
    if len(labels) == len(trace.steps):
        for i, ((label, layer_macs), (func, n)) in enumerate(zip(labels, trace.steps,
                                                                 strict=True)):
            row = {"layer": label, "function": func, "instructions": n, "macs": layer_macs,
                   "per_mac": round(n / layer_macs, 3) if layer_macs else None}
            if trace.step_cycles is not None:
                row["estimated_cycles"] = trace.step_cycles[i]
            if trace.step_cycles is not None and trace.step_flash_reads is not None:
                row["estimated_cycles_flash_ws"] = (trace.step_cycles[i] + FLASH_WAIT_STATES
                                                    * trace.step_flash_reads[i])
            layers.append(row)
    else:  # the C changed its calls: still report by function
        layers = [{"layer": func, "function": func, "instructions": n, "macs": None,
                   "per_mac": None} for func, n in trace.steps]
    _, symbols = _elf_image(fw.elf)
    mem = memory_figures(fw)
    inference_code = sum(symbols[f].size for f in trace.functions if f in symbols)
    arena = symbols["me_arena"].size if "me_arena" in symbols else mem["model_ram_bytes"]
    figures = {
        "compiler": _gcc_version(fw), "opt": opt, "requant": fw.requant, "image": image_source,
        "instructions": trace.total, "macs": macs,
        "instructions_per_mac": round(trace.total / macs, 3) if macs else None,
        "predict_glue_instructions": trace.glue, "layers": layers,
        **({"estimated_cycles_m4_model": trace.cycles} if trace.cycles is not None else {}),
        **({"flash_data_reads": trace.flash_reads,
            "estimated_cycles_m4_flash_ws": trace.cycles + FLASH_WAIT_STATES * trace.flash_reads,
            "flash_wait_states": {"part": FLASH_PART, "wait_states": FLASH_WAIT_STATES}}
           if trace.cycles is not None and trace.flash_reads is not None else
           {"flash_data_reads": None} if trace.cycles is not None else {}),
        "functions": dict(sorted(trace.functions.items(), key=lambda kv: -kv[1])),
        "inference_code_bytes": inference_code, **mem, **flash_split(symbols),
        "flash_model_bytes": inference_code + mem["weight_bytes"] + mem["layer_descriptor_bytes"],
        "arena_bytes": arena, "scratch_bytes": plan.scratch_bytes,
        "lines_bytes": plan.lines_bytes, "stage_bytes": plan.stage_bytes,
        "band_copy_bytes": plan.describe()["band_copy_bytes"],
        "stack_bytes": trace.stack_bytes,
        "ram_bytes": arena + trace.stack_bytes,
    }
    ref = CMSIS_NN_REFERENCE.get(graph.name)
    if ref and core == "cortex-m4" and opt == "-O2":
        figures["cmsis_nn_reference"] = ref
    return figures


def _first_test_image(graph: QGraph, data_dir: str | None = None) -> tuple[np.ndarray, str]:
    """Input 0 of `--data` when given (an .npz, an image folder, MNIST); else MNIST test
    image 0 for a 1x28x28 pixel model if the files are at hand (never downloads), else a
    seeded random input."""
    from .. import data, inputs
    from ..testing import random_inputs

    if data_dir is not None:
        ds = inputs.load(data_dir, inputs.spec_of(graph), "test")
        return inputs.graph_input(graph, ds.x[:1])[0], f"input 0 of {ds.source}"
    if graph.input_encoding == "uint8" and tuple(graph.input.shape) == data.MNIST_SHAPE:
        try:
            images, _ = data.load_mnist("test", data.resolve_data_dir(data_dir, download=False))
            return images[0][None], "MNIST test image 0"
        except MnistEdgeError:
            pass
    return random_inputs(graph, 1, 0)[0], "a seeded random input (random_inputs(graph, 1, 0))"


def _gcc_version(fw: Firmware) -> str:
    gcc = tool(fw.board, "gcc")
    out = subprocess.run([require_tool(gcc), "-dumpversion"], capture_output=True, text=True)
    return f"{gcc} {out.stdout.strip()}"


def format_table(name: str, core: str, f: dict[str, Any]) -> str:
    """Markdown for docs/BENCHMARKS.md: per-layer counts, then totals and memory."""
    timed = "estimated_cycles_m4_model" in f
    lines = [f"### {name} on {core} ({f['compiler']}, {f['opt']}, {f['requant']} requant)", "",
             "| layer | kernel | instructions | MACs | instr/MAC |"
             + (" est. cycles (M4 model, 0 WS) | est. cycles (flash WS) |" if timed else ""),
             "|---|---|---:|---:|---:|" + ("---:|---:|" if timed else "")]
    for r in f["layers"]:
        per = f"{r['per_mac']:.2f}" if r["per_mac"] else ""
        macs = f"{r['macs']:,}" if r["macs"] else ""
        cyc = (f" {r['estimated_cycles']:,} | {_count(r.get('estimated_cycles_flash_ws'))} |"
               if timed and "estimated_cycles" in r else (" | |" if timed else ""))
        lines.append(f"| {r['layer']} | {r['function']} | {r['instructions']:,} | {macs} | "
                     f"{per} |{cyc}")
    lines.append(f"| mnist_edge_predict itself | | {f['predict_glue_instructions']:,} | | |"
                 + (" | |" if timed else ""))
    per = f"{f['instructions_per_mac']:.2f}" if f["instructions_per_mac"] else ""
    cyc = (f" **{f['estimated_cycles_m4_model']:,}** | "
           f"**{_count(f.get('estimated_cycles_m4_flash_ws'))}** |" if timed else "")
    lines.append(f"| **total** | | **{f['instructions']:,}** | {f['macs']:,} | **{per}** |{cyc}")
    ref = f.get("cmsis_nn_reference")
    if ref:
        lines.append(f"| CMSIS-NN reference (ours: {f['instructions'] / ref['instructions']:.3f}x) "
                     f"| | {ref['instructions']:,} | | {ref['per_mac']:.2f} |")
    lines += ["",
              "| flash: inference code | flash: weights | flash: biases | flash: requantization "
              "| flash: layer descriptors | flash total | RAM: arena | RAM: scratch (in the "
              "arena) | RAM: line buffers (in the arena) | RAM: weight stages (in the arena) "
              "| RAM: stack | RAM total |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
              f"| {f['inference_code_bytes']:,} B | {f['flash_weight_bytes']:,} B | "
              f"{f['flash_bias_bytes']:,} B | {f['flash_requant_bytes']:,} B | "
              f"{f['layer_descriptor_bytes']:,} B | {f['flash_model_bytes']:,} B | "
              f"{f['arena_bytes']:,} B | {f['scratch_bytes']:,} B | {f['lines_bytes']:,} B | "
              f"{f['stage_bytes']:,} B | {f['stack_bytes']:,} B | {f['ram_bytes']:,} B |", "",
              f"Inference code = every function that ran during one inference (symbol sizes); "
              f"all generated code: {f['model_code_bytes']:,} B, layer descriptors "
              f"{f['layer_descriptor_bytes']:,} B. Counted on {f['image']}."
              + (" Cycles are estimates from the Cortex-M4 timing model in "
                 "mnist_edge/targets/mcu_bench.py, not measurements: with zero wait states, and "
                 f"with {f['flash_wait_states']['wait_states']} wait states on each of the "
                 f"{f['flash_data_reads']:,} data reads from flash "
                 f"({f['flash_wait_states']['part']}; instruction fetches free)."
                 if timed and f.get("flash_data_reads") is not None else
                 " Cycles are estimates from the Cortex-M4 timing model in "
                 "mnist_edge/targets/mcu_bench.py, not measurements, with zero wait states; the "
                 "flash reads were not counted (unicorn misran this build with its memory-read "
                 "hook set)." if timed else "")]
    return "\n".join(lines)


def _count(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"


def format_summary(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    """One Markdown table per model across cores and levels: every layer's instructions,
    the total, flash and RAM."""
    out: list[str] = []
    for model in dict.fromkeys(name for name, _, _ in rows):
        runs = [(core, f) for name, core, f in rows if name == model]
        layers = [r["layer"] for r in runs[0][1]["layers"]]
        out += [f"{model}:", "",
                "| core | opt | requant | " + " | ".join(layers) + " | total | instr/MAC | "
                "flash: code | flash: weights | RAM: arena | RAM: scratch (in the arena) | "
                "RAM: stack high water | RAM total |",
                "|---|---|---|" + "---:|" * (len(layers) + 8)]
        for core, f in runs:
            per = f"{f['instructions_per_mac']:.2f}" if f["instructions_per_mac"] else ""
            counts = {r["layer"]: f"{r['instructions']:,}" for r in f["layers"]}
            out.append(f"| {core} | {f['opt']} | {f['requant']} | "
                       + " | ".join(counts.get(name, "") for name in layers)
                       + f" | {f['instructions']:,} | {per} | {f['inference_code_bytes']:,} B | "
                       f"{f['weight_bytes']:,} B | {f['arena_bytes']:,} B | "
                       f"{f['scratch_bytes']:,} B | {f['stack_bytes']:,} B | "
                       f"{f['ram_bytes']:,} B |")
        out.append("")
    out.append("Instructions of one inference, per layer (kernel call) and in total; flash code = "
               "the functions one inference runs; the arena includes the kernels' scratch (the "
               "convolutions take it from the caller), the stack is the high-water mark of one "
               "whole inference.")
    return "\n".join(out)
