"""The Cortex-M55 with Helium: QEMU's instruction counter agrees with unicorn's, the MVE
kernels are what the M55 firmware runs, and they beat the scalar path. (Their exactness:
qemu-m55 in test_mcu's and test_zoo_matrix's per-core matrices and test_c_tflite's MLPerf
models, which all fail when the VCTP tail predicate is off by one byte.)

The QEMU plugin (targets/qemu_count.py) is what `bench --mcu cortex-m55` counts with, as
unicorn has no Cortex-M55. It is proven here on ELFs unicorn can run: the very same
Cortex-M4 and Cortex-M0 firmware counted both ways gives the same total, the same count
for every kernel call and every function, and the same stack.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import need

from mnist_edge import golden, qgraph
from mnist_edge.backends.c import c_inputs
from mnist_edge.targets import firmware, mcu_bench
from mnist_edge.targets.boards import TARGETS
from mnist_edge.testing import random_pixels, random_qgraph


def need_arm() -> None:
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    need("gcc")  # builds the plugin
    pytest.importorskip("elftools")


@pytest.mark.parametrize("target", ["qemu-m4", "qemu-m0"])
def test_qemu_count_equals_unicorn_on_the_same_elf(tmp_path: Path, target: str) -> None:
    need_arm()
    pytest.importorskip("unicorn")
    from mnist_edge.targets.qemu_count import count_predict

    graph = random_qgraph(5, "mixed")
    fw = firmware.build_firmware(graph, TARGETS[target], tmp_path / "fw")
    x = c_inputs(graph, random_pixels(1, 3))[0]
    a = mcu_bench.emulate_predict(fw, x)
    b = count_predict(fw, x)
    assert a.total == b.total > 10_000
    assert a.steps == b.steps and len(a.steps) > 3
    assert a.glue == b.glue and a.functions == b.functions
    assert a.stack_bytes == b.stack_bytes > 0
    expected = golden.run_int8(graph, random_pixels(1, 3))[0]
    assert np.array_equal(b.logits[:expected.size], expected)


def _defined_in(fw: firmware.Firmware, function: str) -> str:
    """The object file whose code the linker placed for `function` (from the link map)."""
    for name, _, obj in mcu_bench.map_sections(fw.map):
        if name == f".text.{function}":
            return Path(obj).name
    raise AssertionError(f"{function} not in {fw.map}")


def test_m55_runs_the_helium_kernels_and_nomve_does_not(tmp_path: Path) -> None:
    """(binutils 2.39's objdump prints MVE instructions as coprocessor ones, so the link
    map says where each kernel came from, and the MVE source itself holds VMLADAVA.)"""
    need_arm()
    graph = random_qgraph(5, "mixed")
    board = TARGETS["qemu-m55"]
    fw = firmware.build_firmware(graph, board, tmp_path / "mve")
    assert "vmladavaq_s8(" in (fw.folder / "c" / "mnist_edge_kernels_mve.c").read_text()
    for kernel in ("me_conv2d_s8", "me_fully_connected_s8"):
        assert _defined_in(fw, kernel) == "mnist_edge_kernels_mve.o"
    scalar = replace(board, core="cortex-m55-nomve")
    assert "c/mnist_edge_kernels_mve.c" not in firmware.sources(scalar, "qemu")
    fw = firmware.build_firmware(graph, scalar, tmp_path / "nomve")
    for kernel in ("me_conv2d_s8", "me_fully_connected_s8"):
        assert _defined_in(fw, kernel) == "mnist_edge_kernels.o"


def test_bench_m55_helium_beats_the_scalar_path(tmp_path: Path) -> None:
    need_arm()
    run_dir = tmp_path / "run"
    graph = random_qgraph(6, "mixed")
    qgraph.save(graph, run_dir / graph.name)
    pixels = random_pixels(1, 9)[0]
    mve = mcu_bench.bench(run_dir, graph, "cortex-m55", pixels=pixels)
    scalar = mcu_bench.bench(run_dir, graph, "cortex-m55-nomve", pixels=pixels)
    assert mve["instructions"] < scalar["instructions"]
    for f in (mve, scalar):  # bench() checked the logits against golden
        assert f["instructions"] == f["predict_glue_instructions"] + sum(
            r["instructions"] for r in f["layers"])
        assert all(r["instructions"] > 0 for r in f["layers"])
    conv = [i for i, r in enumerate(mve["layers"]) if r["function"] == "me_conv2d_s8"]
    assert conv and all(mve["layers"][i]["instructions"] < scalar["layers"][i]["instructions"]
                        for i in conv)
    assert "| **total** |" in mcu_bench.format_table(graph.name, "cortex-m55", mve)
    assert "mnist_edge_kernels_mve.o" in mcu_bench.MODEL_SOURCES
    assert 0 < mve["stack_bytes"] < TARGETS["qemu-m55"].stack_bytes
