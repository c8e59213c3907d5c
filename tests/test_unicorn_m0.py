"""unicorn-m0: a Cortex-M0 that holds the MLPerf Tiny models.

The firmware is ARMv6-M code on a 4 MB + 4 MB map, run from reset in unicorn's Cortex-M0
model with the host serving semihosting (targets/unicorn_run.py). What makes it a
Cortex-M0 and not just any Arm core: the model undefines Thumb-2, so a firmware built for
a Cortex-M3 stops on its first 32-bit data-processing instruction, while the same bytes
run on unicorn's Cortex-M3 model. (Before dba5a5d, unicorn ignored the model under
UC_MODE_MCLASS and ran every Arm core as a Cortex-M33: the first two tests failed.)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import mlperf_run, need

from mnist_edge import golden, qgraph
from mnist_edge.backends.c import c_inputs
from mnist_edge.errors import MnistEdgeError
from mnist_edge.probe_inputs import probe_batch
from mnist_edge.targets import firmware, mcu_bench
from mnist_edge.targets.boards import TARGETS
from mnist_edge.targets.qemu import run_firmware
from mnist_edge.testing import random_pixels, random_qgraph
from mnist_edge.validate import validate_backend

M0 = TARGETS["unicorn-m0"]
ADD_W = bytes.fromhex("01eb0100")  # add.w r0, r1, r1 (Thumb-2, not in ARMv6-M)
ADDS = bytes.fromhex("4818")  # adds r0, r1, r1 (16-bit Thumb, in ARMv6-M)
NOP = bytes.fromhex("00bf")


def _run_code(core: str, code: bytes) -> int:
    """Execute `code` from 0 on unicorn's model of `core` (as mcu_bench sets it up); r0."""
    from unicorn import arm_const as arm

    uc = mcu_bench._Cpu(SimpleNamespace(board=replace(M0, core=core))).uc
    uc.mem_map(0, 0x1000)
    uc.mem_write(0, code + NOP)
    uc.reg_write(arm.UC_ARM_REG_R1, 5)
    uc.emu_start(1, len(code))
    return uc.reg_read(arm.UC_ARM_REG_R0)


def test_the_m0_model_undefines_thumb2() -> None:
    import unicorn

    assert _run_code("cortex-m0", ADDS) == 10
    assert _run_code("cortex-m3", ADD_W) == 10
    with pytest.raises(unicorn.UcError, match="INSN_INVALID"):
        _run_code("cortex-m0", ADD_W)


def need_m0() -> None:
    need("arm-none-eabi-gcc")
    pytest.importorskip("unicorn")
    pytest.importorskip("elftools")


def test_a_thumb2_firmware_stops_on_the_m0(tmp_path: Path) -> None:
    need_m0()
    graph = random_qgraph(0, "mixed")
    fw = firmware.build_firmware(graph, replace(M0, core="cortex-m3"), tmp_path / "fw")
    pixels = c_inputs(graph, random_pixels(2, 1))
    fw.board = replace(fw.board, core="cortex-m3")
    logits, _ = run_firmware(fw, pixels, classes=graph.output.size)  # a Cortex-M3 runs it
    assert np.array_equal(logits, golden.run_int8(graph, random_pixels(2, 1)))
    fw.board = M0
    with pytest.raises(MnistEdgeError, match="cortex-m0 model at pc=.*Invalid instruction"):
        run_firmware(fw, pixels, classes=graph.output.size)


def test_runner_errors_come_back_in_one_line(tmp_path: Path) -> None:
    need_m0()
    graph = random_qgraph(0, "mixed")
    fw = firmware.build_firmware(graph, M0, tmp_path / "fw")
    ragged = np.zeros((1, graph.input.size - 1), np.uint8)
    with pytest.raises(MnistEdgeError, match="images.bin is not a whole number of inputs"):
        run_firmware(fw, ragged, classes=graph.output.size)


def test_mlperf_ad_exact_on_unicorn_m0_and_refused_by_the_microbit(
        mlperf_runs: dict[str, Path]) -> None:
    """The autoencoder's 270 KB of weights exceed the micro:bit's flash; the M0 with the
    larger map runs it exactly (structured inputs first, then seeded random ones)."""
    need_m0()
    run = mlperf_run(mlperf_runs, "ad")
    graph = qgraph.load_run(run)
    pixels = probe_batch(graph, 10, 0)
    with pytest.raises(MnistEdgeError, match="does not fit qemu-m0"):
        validate_backend(run, "qemu-m0", pixels, None)
    f = validate_backend(run, "unicorn-m0", pixels, None)
    assert f["images"] == 10 and f["exact_logit_fraction"] == 1.0
    assert f["emulator"] == "unicorn cortex-m0"
