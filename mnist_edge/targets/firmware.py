"""Firmware (Cortex-M, RISC-V rv32): generated C + templates/firmware -> ELF/HEX/BIN, and
`mnist-edge flash`.

A firmware folder holds the generated model in `c/`, the startup code, linker
script, console and main program rendered from templates/firmware/, a
Makefile and README that rebuild it without Python, and `build/` with the
objects, `firmware.elf/.hex/.bin` and the link map. Python runs the very
commands the Makefile holds, so both builds are the same.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..backends.c import C_WARNINGS, MVE_SOURCES, c_inputs
from ..errors import MnistEdgeError
from ..paths import TEMPLATES_DIR, atomic_dir, template_env, write_manifest
from ..qgraph import QGraph
from .boards import Board, get_board, get_target
from .tools import compiler_cache, require_tool, run_step

APPS = ("qemu", "board")
OPT_LEVELS = ("-O2", "-Os", "-O3", "-O1", "-O0")
MODEL_SOURCES = ("c/mnist_edge_model.c", "c/mnist_edge_kernels.c", "c/mnist_edge_weights.c")
HEADERS = ("startup.h", "semihost.h", "console.h", "console_uart.h")


@dataclass
class Firmware:
    """A built firmware folder and what it was built for."""

    folder: Path
    board: Board
    app: str
    requant: str
    opt: str

    @property
    def elf(self) -> Path:
        return self.folder / "build" / "firmware.elf"

    @property
    def hex(self) -> Path:
        return self.folder / "build" / "firmware.hex"

    @property
    def bin(self) -> Path:
        return self.folder / "build" / "firmware.bin"

    @property
    def map(self) -> Path:
        return self.folder / "build" / "firmware.map"


def sources(board: Board, app: str) -> list[str]:
    """The C files of one firmware, relative to its folder."""
    main = "qemu_main.c" if app == "qemu" else "board_main.c"
    startup = "startup_riscv.c" if board.cpu.arch == "riscv" else "startup.c"
    files = [main, startup, "startup_common.c", f"console_{board.console}.c", "console_common.c"]
    if board.console.startswith("uart_"):
        files.append("console_uart.c")
    if board.console == "semihost" or app == "qemu":
        files.append("semihost.c")
    mve = [f"c/{name}" for name in MVE_SOURCES] if board.cpu.mve else []
    return files + list(MODEL_SOURCES) + mve


def compile_flags(board: Board, opt: str) -> list[str]:
    # picolibc's headers (stdint.h, string.h) come with its specs file, at compile time too.
    libc = ["--specs=picolibc.specs"] if board.cpu.arch == "riscv" else []
    return [*board.cpu.cflags, *libc, opt, "-std=c99", "-ffunction-sections", "-fdata-sections",
            *C_WARNINGS, f"-DRUNNER_BATCH={board.runner_batch}", "-I.", "-Ic"]


def tool(board: Board, name: str) -> str:
    """The cross tool `name` (gcc, objcopy, objdump, size) of the board's core."""
    return board.cpu.cross + name


def link_flags(board: Board) -> list[str]:
    """Arm links newlib-nano, RISC-V picolibc (its specs are in the compile flags): only
    memcpy/memset and libgcc are used."""
    libc = ["--specs=nano.specs"] if board.cpu.arch == "arm" else []
    return ["-nostartfiles", *libc, "-T", "link.ld", "-Wl,--gc-sections",
            "-Wl,-Map=build/firmware.map", "-Wl,--no-warn-rwx-segments"]


LDLIBS = ["-lc", "-lgcc"]


def qemu_command(board: Board, elf: str | Path) -> list[str]:
    """QEMU with semihosting: the firmware reads and writes files in QEMU's working folder."""
    if board.cpu.arch == "riscv":
        machine = ["qemu-system-riscv32", "-M", str(board.qemu_machine), "-bios", "none"]
    else:
        machine = ["qemu-system-arm", "-M", str(board.qemu_machine)]
    if board.qemu_cpu:
        machine += ["-cpu", board.qemu_cpu]
    return [*machine, "-nographic", "-monitor", "none", "-serial", "null",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]


def pyocd_command(board: Board, hex_file: str | Path) -> list[str]:
    return ["pyocd", "flash", "--target", str(board.pyocd_target), str(hex_file)]


def openocd_command(board: Board, elf: str | Path) -> list[str]:
    args = [f'"{a}"' if " " in a else a for a in board.openocd_args]
    return ["openocd", *args, "-c", f'"program {elf} verify reset exit"']


def render_firmware_files(graph: QGraph, board: Board, app: str, requant: str, opt: str,
                          vectors: int) -> dict[str, bytes]:
    """Every firmware file except the model's C, keyed by its path in the folder."""
    from ..backends.c_planner import plan_arena

    cflags = compile_flags(board, opt)
    srcs = sources(board, app)
    static = [s for s in srcs if not s.startswith("c/")] + list(HEADERS)
    files = {name: (TEMPLATES_DIR / "firmware" / name).read_bytes() for name in static}
    ctx: dict[str, Any] = {
        "model": graph.name, "qhash": graph.content_hash(), "version": __version__,
        "board": board, "app": app, "requant": requant, "opt": opt,
        "stack_bytes": board.stack_bytes, "classes": graph.output.size, "vectors": vectors,
        "arena_bytes": plan_arena(graph).arena_bytes,
        "cflags": cflags, "ldflags": link_flags(board), "ldlibs": LDLIBS, "sources": srcs,
        "run_command": qemu_command(board, "build/firmware.elf") if board.emulated else [],
        "pyocd_command": pyocd_command(board, "build/firmware.hex"),
        "openocd_command": openocd_command(board, "build/firmware.elf"),
        "serial_note": board.serial_note, "clock_note": _clock_note(board),
    }
    env = template_env("firmware")
    for name in ("link.ld", "Makefile", "README.md"):
        files[name] = env.get_template(f"{name}.j2").render(ctx).encode()
    return files


def _clock_note(board: Board) -> str:
    return {"uart_stm32f4": "16 MHz HSI", "uart_nrf52": "64 MHz"}.get(board.console,
                                                                    "no clock in QEMU")


def check_fits(graph: QGraph, board: Board) -> None:
    """Say before building, in one line, when the model's constants or arena alone exceed the
    part's flash or RAM (the linker would say it only after a full build, in its own words)."""
    from ..analyze import summarize
    from ..backends.c_planner import plan_arena

    weights = summarize(graph)["weight_bytes"]
    runner = board.runner_batch * (graph.input.size + graph.output.size)
    ram = plan_arena(graph).arena_bytes + board.stack_bytes + runner
    for what, need, have in (("flash", weights, board.flash_size),
                             ("RAM", ram, board.ram_size)):
        if need > have:
            detail = ("its weights, biases and tables alone" if what == "flash"
                      else f"its arena, a {board.stack_bytes:,} B stack and the runner's "
                           f"{runner:,} B of inputs and outputs")
            raise MnistEdgeError(f"model {graph.name} does not fit {board.name} ({board.title}): "
                                 f"{detail} need {need:,} B of {what}, the part has {have:,} B")


def build_firmware(graph: QGraph, board: Board, out_dir: Path, app: str = "qemu",
                   opt: str = "-O2", requant: str | None = None,
                   vector_pixels: np.ndarray | None = None) -> Firmware:
    """Generate the model's C, render the firmware, compile it; the folder is swapped in whole."""
    from ..backends.c import generate_c

    if app not in APPS:
        raise MnistEdgeError(f"unknown firmware app {app!r}; choose from: {', '.join(APPS)}")
    if opt not in OPT_LEVELS:
        raise MnistEdgeError(f"unsupported optimization level {opt!r}")
    requant = requant or board.cpu.requant
    if graph.arithmetic == "tflite":  # TFLM's requantization is integer only: no FPU needed
        requant = "int"
    if requant == "float" and not board.cpu.has_fpu:
        raise MnistEdgeError(f"{board.name} ({board.core}) has no FPU: use integer requantization")
    check_fits(graph, board)
    gcc, objcopy = require_tool(tool(board, "gcc")), require_tool(tool(board, "objcopy"))
    vectors = 0 if vector_pixels is None else len(vector_pixels)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        generate_c(graph, tmp / "c", requant, vector_pixels)
        files = render_firmware_files(graph, board, app, requant, opt, vectors or 20)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / "build").mkdir()
        cflags = compile_flags(board, opt)
        objects = []
        compile_cmd = [*compiler_cache(), gcc, *cflags]
        for src in sources(board, app):
            obj = f"build/{Path(src).stem}.o"
            run_step([*compile_cmd, "-c", src, "-o", obj], tmp, f"compiling {src}")
            objects.append(obj)
        run_step([gcc, *cflags, *link_flags(board), "-o", "build/firmware.elf", *objects,
                  *LDLIBS], tmp, f"linking the firmware for {board.name}")
        for fmt, ext in (("ihex", "hex"), ("binary", "bin")):
            run_step([objcopy, "-O", fmt, "build/firmware.elf", f"build/firmware.{ext}"], tmp,
                     "objcopy")
        write_manifest(tmp, {"model": graph.name, "qgraph_hash": graph.content_hash(),
                             "board": board.name, "app": app, "requant": requant, "opt": opt,
                             "test_vectors": vectors})
    return Firmware(out_dir, board, app, requant, opt)


# ------------------------------------------------------------------------ the CLI


def _flash_board(fw: Firmware, probe: str, dry_run: bool) -> int:
    board = fw.board
    if probe == "pyocd":
        cmd = pyocd_command(board, fw.hex)
        tool, label, install = "pyocd", "pyOCD", "install it with `pip install pyocd`"
    else:
        cmd = ["openocd", *board.openocd_args, "-c", f"program {fw.elf} verify reset exit"]
        tool, label, install = "openocd", "openocd", "install it with `apt-get install openocd`"
    print(f"firmware for {board.title}: {fw.elf} (+ .hex, .bin)")
    print("flash command: " + " ".join(f"'{a}'" if " " in a else a for a in cmd))
    print(f"console: {board.serial_note} (see {fw.folder / 'README.md'})")
    if dry_run:
        return 0
    require_tool(tool, install, label)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise MnistEdgeError(f"{tool} did not finish within 120 s; "
                             "is the probe attached?") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise MnistEdgeError(f"flashing {board.name} with {tool} failed (no probe attached?): "
                             f"{last}")
    print(f"flashed {board.name}; open the console to see the self-test")
    return 0


def flash_command(args: Any) -> int:
    """`mnist-edge flash RUN --target qemu-m4` or `--board nucleo-f411re [--probe pyocd]`."""
    from .. import qgraph

    if bool(args.target) == bool(args.board):
        raise MnistEdgeError("give exactly one of --target (QEMU) or --board (real board)")
    run_dir = Path(args.run)
    graph = qgraph.load_run(run_dir)
    if args.board:
        board = get_board(args.board)
        pixels = _test_pixels(args.data, 20)
        fw = build_firmware(graph, board, run_dir / "firmware" / board.name, "board",
                            vector_pixels=pixels)
        return _flash_board(fw, args.probe, args.dry_run)
    from . import qemu

    board = get_target(args.target)
    fw = build_firmware(graph, board, run_dir / "firmware" / board.name, "qemu")
    if args.dry_run:
        print(f"firmware for {board.title}: {fw.elf} (+ .hex, .bin)")
        print(f"run command (in a folder holding images.bin): "
              f"{' '.join(qemu_command(board, fw.elf))}")
        return 0
    pixels, labels = _test_pixels(args.data, args.limit, with_labels=True)
    from .. import golden

    logits, seconds = qemu.run_firmware(fw, c_inputs(graph, pixels))
    reference = golden.run_int8(graph, pixels)
    exact = float(np.mean(logits == reference))
    acc = float(np.mean(golden.predict(logits) == labels))
    print(f"{board.name}: {len(pixels)} images in {seconds:.1f} s on {board.title}; "
          f"accuracy {acc:.2%}, exact logits {exact:.4%} vs golden")
    return 0 if exact == 1.0 else 1


def _test_pixels(data_dir: str | None, limit: int, with_labels: bool = False):
    from .. import data

    images, labels = data.load_mnist("test", data_dir)
    if limit <= 0:
        raise MnistEdgeError("--limit must be positive")
    return (images[:limit], labels[:limit]) if with_labels else images[:limit]
