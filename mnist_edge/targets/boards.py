"""Cores, emulated targets and real boards: compiler flags and memory maps.

One table feeds the linker script, the compiler command line, QEMU and the
flashing tools, so a board is added by adding one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MnistEdgeError

KB = 1024
MB = 1024 * KB


@dataclass(frozen=True)
class Core:
    """A Cortex-M core: how to compile for it and which requantization suits it."""

    name: str
    cflags: tuple[str, ...]
    requant: str  # "float" needs an FPU; "int" runs anywhere
    unicorn_model: str  # unicorn.arm_const.UC_CPU_ARM_* name


CORES: dict[str, Core] = {
    "cortex-m4": Core("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                    "-mfpu=fpv4-sp-d16"), "float", "UC_CPU_ARM_CORTEX_M4"),
    "cortex-m3": Core("cortex-m3", ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
                      "int", "UC_CPU_ARM_CORTEX_M3"),
    "cortex-m7": Core("cortex-m7", ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard",
                                    "-mfpu=fpv5-d16"), "float", "UC_CPU_ARM_CORTEX_M7"),
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

    @property
    def emulated(self) -> bool:
        return self.qemu_machine is not None

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

# The emulated target used to build each core's benchmark firmware.
BENCH_TARGET = {"cortex-m4": "qemu-m4", "cortex-m3": "qemu-m3", "cortex-m7": "qemu-m7"}


def get_target(name: str) -> Board:
    if name not in TARGETS:
        raise MnistEdgeError(f"unknown emulated target {name!r}; choose from: "
                             f"{', '.join(TARGETS)}")
    return TARGETS[name]


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise MnistEdgeError(f"unknown board {name!r}; choose from: {', '.join(BOARDS)}")
    return BOARDS[name]
