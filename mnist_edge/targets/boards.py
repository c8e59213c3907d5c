"""Cores, emulated targets and real boards: compiler flags and memory maps.

One table feeds the linker script, the compiler command line, QEMU and the
flashing tools, so a board is added by adding one entry here.

Target names are `qemu-<core>`: qemu-m0 (Cortex-M0, no DSP, no divider, 16 KB
RAM), qemu-m3, qemu-m4, qemu-m7, qemu-m33 (Cortex-M33 with DSP and FPU),
qemu-m55 (Cortex-M55 with Helium, the MVE integer and float vector extension), and
for RISC-V the ISA string itself: qemu-rv32imc (integer only, no FPU: float
instructions trap in QEMU) and qemu-rv32imfc (single-precision FPU).

`unicorn-m0` is the Cortex-M0 that holds models larger than the micro:bit: ARMv6-M code
(the Cortex-M0 flags and kernels) on the MPS2 AN385 memory map (4 MB + 4 MB), run in
unicorn's Cortex-M0 model (targets/unicorn_run.py), because QEMU 7.2 has no Cortex-M0
machine but the micro:bit and refuses `-cpu cortex-m0` on the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MnistEdgeError

KB = 1024
MB = 1024 * KB


@dataclass(frozen=True)
class Core:
    """A CPU core: how to compile for it and which requantization suits it."""

    name: str
    cflags: tuple[str, ...]
    requant: str  # "float" needs an FPU; "int" runs anywhere
    # unicorn.arm_const.UC_CPU_ARM_* / riscv_const.UC_CPU_RISCV32_* name; "" where unicorn
    # has no model of the core (its instructions are then counted in QEMU)
    unicorn_model: str
    arch: str = "arm"  # arm (Thumb, Cortex-M) | riscv (rv32, machine mode)
    has_fpu: bool = True
    mve: bool = False  # Helium: the firmware compiles the MVE kernels (c.MVE_SOURCES)

    @property
    def cross(self) -> str:
        """The GNU toolchain prefix."""
        return "arm-none-eabi-" if self.arch == "arm" else "riscv64-unknown-elf-"


CORES: dict[str, Core] = {
    "cortex-m0": Core("cortex-m0", ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"),
                      "int", "UC_CPU_ARM_CORTEX_M0", has_fpu=False),
    "cortex-m4": Core("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                    "-mfpu=fpv4-sp-d16"), "float", "UC_CPU_ARM_CORTEX_M4"),
    "cortex-m3": Core("cortex-m3", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
                      "int", "UC_CPU_ARM_CORTEX_M3", has_fpu=False),
    "cortex-m7": Core("cortex-m7", ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard",
                                    "-mfpu=fpv5-d16"), "float", "UC_CPU_ARM_CORTEX_M7"),
    "cortex-m33": Core("cortex-m33", ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard",
                                      "-mfpu=fpv5-sp-d16"), "float", "UC_CPU_ARM_CORTEX_M33"),
    # -mcpu=cortex-m55 turns on MVE (integer and float: __ARM_FEATURE_MVE == 3), the DSP
    # extension and the FPU (fp-armv8, -mfpu=auto picks it from the CPU). Unicorn has no
    # Cortex-M55: its instructions are counted in QEMU instead (targets/qemu_count.py).
    "cortex-m55": Core("cortex-m55", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard",
                                      "-mfpu=auto"), "float", "", mve=True),
    # The same core with Helium off (+nomve: no MVE kernels, no auto-vectorization): the
    # scalar DSP path, for `bench` to set beside the Helium one on qemu-m55.
    "cortex-m55-nomve": Core("cortex-m55-nomve", ("-mcpu=cortex-m55+nomve", "-mthumb",
                                                  "-mfloat-abi=hard", "-mfpu=auto"),
                             "float", ""),
    "rv32imc": Core("rv32imc", ("-march=rv32imc", "-mabi=ilp32", "-mcmodel=medany"), "int",
                    "UC_CPU_RISCV32_BASE32", arch="riscv", has_fpu=False),
    "rv32imfc": Core("rv32imfc", ("-march=rv32imfc", "-mabi=ilp32f", "-mcmodel=medany"),
                     "float", "UC_CPU_RISCV32_BASE32", arch="riscv"),
}


@dataclass(frozen=True)
class Board:
    """Where the firmware runs: a QEMU machine or a real board and its probe settings."""

    name: str
    title: str
    core: str
    flash_origin: int
    flash_size: int
    ram_origin: int
    ram_size: int
    console: str  # semihost | uart_stm32f4 | uart_nrf52
    qemu_machine: str | None = None
    pyocd_target: str | None = None
    openocd_args: tuple[str, ...] = ()
    serial_note: str = ""  # where a real board's console shows up
    qemu_cpu: str | None = None  # -cpu for QEMU (RISC-V: which ISA extensions exist)
    stack_bytes: int = 8 * KB
    runner_batch: int = 32  # images per semihosting read in the QEMU runner (RAM!)
    # qemu: qemu-system-* runs the firmware; unicorn: the core's unicorn model does, the
    # host serving semihosting (targets/unicorn_run.py); qemu_machine then says where the
    # same ELF also runs in QEMU (`make run`), on that machine's own core.
    emulator: str = "qemu"

    @property
    def emulated(self) -> bool:
        return self.qemu_machine is not None or self.emulator == "unicorn"

    @property
    def cpu(self) -> Core:
        return CORES[self.core]


# The MPS2 FPGA images QEMU models: 4 MB SSRAM1 at 0 (code) and 4 MB SSRAM2/3 at 0x20000000.
TARGETS: dict[str, Board] = {
    "qemu-m4": Board("qemu-m4", "Arm MPS2 AN386 (Cortex-M4F) in QEMU", "cortex-m4",
                     0x00000000, 4 * MB, 0x20000000, 4 * MB, "semihost",
                     qemu_machine="mps2-an386"),
    "qemu-m3": Board("qemu-m3", "Arm MPS2 AN385 (Cortex-M3) in QEMU", "cortex-m3",
                     0x00000000, 4 * MB, 0x20000000, 4 * MB, "semihost",
                     qemu_machine="mps2-an385"),
    "qemu-m7": Board("qemu-m7", "Arm MPS2 AN500 (Cortex-M7) in QEMU", "cortex-m7",
                     0x00000000, 4 * MB, 0x20000000, 4 * MB, "semihost",
                     qemu_machine="mps2-an500"),
    # nRF51822: 256 KB flash at 0, 16 KB RAM at 0x20000000. The arena, a one-image
    # runner buffer and a 3 KB stack must fit; images and logits come by semihosting.
    "qemu-m0": Board("qemu-m0", "BBC micro:bit (nRF51822, Cortex-M0) in QEMU", "cortex-m0",
                     0x00000000, 256 * KB, 0x20000000, 16 * KB, "semihost",
                     qemu_machine="microbit", stack_bytes=3 * KB, runner_batch=1),
    # The Cortex-M0 firmware on the AN385 map (4 MB SSRAM1 at 0, 4 MB at 0x20000000), run
    # in unicorn's Cortex-M0 model, which undefines every Thumb-2 instruction an ARMv6-M
    # core lacks. The same ELF also boots in QEMU's AN385 (`make run`), but there the
    # core is a Cortex-M3: validation runs unicorn's M0 only.
    "unicorn-m0": Board("unicorn-m0", "Cortex-M0 (ARMv6-M) in unicorn's Cortex-M0 model, "
                        "MPS2 AN385 memory map", "cortex-m0", 0x00000000, 4 * MB,
                        0x20000000, 4 * MB, "semihost", qemu_machine="mps2-an385",
                        emulator="unicorn"),
    # AN505 boots secure: code in the secure alias of SSRAM1 (0x10000000), data in the
    # secure alias of SSRAM2/3 (0x38000000), 4 MB each.
    "qemu-m33": Board("qemu-m33", "Arm MPS2 AN505 (Cortex-M33, DSP, FPU) in QEMU",
                      "cortex-m33", 0x10000000, 4 * MB, 0x38000000, 4 * MB, "semihost",
                      qemu_machine="mps2-an505"),
    # The SSE-300 subsystem of AN547 boots secure: code in the secure alias of the 512 KB
    # ITCM (0x10000000), data in the secure alias of the 4 MB internal SRAM at 0x31000000
    # (two 2 MB banks back to back). QEMU 7.2's mps2-tz.c (an547 RAMInfo) and `info mtree`.
    "qemu-m55": Board("qemu-m55", "Arm MPS3 AN547 (Cortex-M55, Helium, FPU) in QEMU",
                      "cortex-m55", 0x10000000, 512 * KB, 0x31000000, 4 * MB, "semihost",
                      qemu_machine="mps3-an547"),
    # QEMU's virt board, machine mode, no firmware (-bios none): "flash" and RAM are
    # the first two 4 MB of its DRAM at 0x80000000.
    "qemu-rv32imc": Board("qemu-rv32imc", "RISC-V rv32imc (QEMU virt, no FPU)", "rv32imc",
                          0x80000000, 4 * MB, 0x80400000, 4 * MB, "semihost",
                          qemu_machine="virt", qemu_cpu="rv32,a=false,f=false,d=false"),
    "qemu-rv32imfc": Board("qemu-rv32imfc", "RISC-V rv32imfc (QEMU virt, FPU)", "rv32imfc",
                           0x80000000, 4 * MB, 0x80400000, 4 * MB, "semihost",
                           qemu_machine="virt", qemu_cpu="rv32,a=false,d=false"),
}

BOARDS: dict[str, Board] = {
    "nucleo-f411re": Board(
        "nucleo-f411re", "ST NUCLEO-F411RE (STM32F411RE, Cortex-M4F)", "cortex-m4",
        0x08000000, 512 * KB, 0x20000000, 128 * KB, "uart_stm32f4",
        pyocd_target="stm32f411re",
        openocd_args=("-f", "board/st_nucleo_f4.cfg"),
        serial_note="the ST-LINK virtual COM port (/dev/ttyACM0 on Linux), 115200 8N1",
    ),
    "nrf52840dk": Board(
        "nrf52840dk", "Nordic nRF52840-DK (nRF52840, Cortex-M4F)", "cortex-m4",
        0x00000000, 1 * MB, 0x20000000, 256 * KB, "uart_nrf52",
        pyocd_target="nrf52840",
        openocd_args=("-f", "interface/jlink.cfg", "-c", "transport select swd",
                      "-f", "target/nrf52.cfg"),
        serial_note="the J-Link virtual COM port (/dev/ttyACM0 on Linux), 115200 8N1",
    ),
}

# The emulated target used to build each core's benchmark firmware (the Cortex-M0 on the
# large map, which holds the MLPerf models; the counts of one inference are the
# micro:bit's: the same code, flash and RAM at the same addresses).
BENCH_TARGET = {"cortex-m4": "qemu-m4", "cortex-m3": "qemu-m3", "cortex-m7": "qemu-m7",
                "cortex-m0": "unicorn-m0", "cortex-m33": "qemu-m33", "cortex-m55": "qemu-m55",
                "cortex-m55-nomve": "qemu-m55",
                "rv32imc": "qemu-rv32imc",
                "rv32imfc": "qemu-rv32imfc"}


def get_target(name: str) -> Board:
    if name not in TARGETS:
        raise MnistEdgeError(f"unknown emulated target {name!r}; choose from: "
                             f"{', '.join(TARGETS)}")
    return TARGETS[name]


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise MnistEdgeError(f"unknown board {name!r}; choose from: {', '.join(BOARDS)}")
    return BOARDS[name]
