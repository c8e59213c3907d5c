"""Inputs other than one 28x28 image (issue 21): RGB images, int8 feature maps, vectors.

The QGraph input is a vector or CxHxW with its own quantization, given as uint8 bytes
(q = p - 128) or int8; the C API reads images HWC. Every backend that takes such an input
must equal golden, and every backend that does not must say so by name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import need

from mnist_edge import golden, qgraph
from mnist_edge.backends import onnx as ox
from mnist_edge.backends.c import c_inputs, generate_c, render_tree
from mnist_edge.backends.rtl import generate_rtl
from mnist_edge.errors import MnistEdgeError
from mnist_edge.targets import firmware, onnxrt
from mnist_edge.targets.boards import TARGETS
from mnist_edge.testing import SHAPE_LAYOUTS, random_inputs, random_qgraph
from mnist_edge.validate import validate_backend

CORE_INPUTS = 20


def _run_dir(tmp_path: Path, layout: str, seed: int = 1) -> Path:
    graph = random_qgraph(seed, layout)
    run = tmp_path / layout
    qgraph.save(graph, run / graph.name)
    return run


def test_c_inputs_are_hwc() -> None:
    graph = random_qgraph(1, "rgb")
    x = random_inputs(graph, 2, 3)  # [2, 3, 20, 18]
    rows = c_inputs(graph, x)
    assert rows.shape == (2, 3 * 20 * 18)
    c, h, w = graph.input.shape
    for y, xx, ch in ((0, 0, 2), (5, 7, 1), (19, 17, 0)):
        assert rows[1, (y * w + xx) * c + ch] == x[1, ch, y, xx]
    with pytest.raises(MnistEdgeError, match="takes input of shape"):
        c_inputs(graph, x[:, :2])


@pytest.mark.parametrize("layout", SHAPE_LAYOUTS)
def test_header_states_the_input(layout: str) -> None:
    graph = random_qgraph(1, layout)
    header = render_tree(graph)["mnist_edge.h"].decode()
    assert f"#define MNIST_EDGE_INPUT_SIZE {graph.input.size}\n" in header
    assert f"#define MNIST_EDGE_INPUT_ZERO_POINT ({graph.input.zero_point})" in header
    assert f"typedef {graph.input_encoding}_t mnist_edge_input_t;" in header
    assert f"#define MNIST_EDGE_OUTPUT_SIZE {graph.output.size}\n" in header
    if len(graph.input.shape) == 3 and graph.input.shape[0] > 1:
        assert "HWC" in header


def test_no_mnist_sizes_in_a_non_mnist_build(tmp_path: Path) -> None:
    """The generated C and firmware of a 1x49x10 int8 model name no 28, 784 or 10 classes
    (weights and test vectors are data, not assumptions: they are left out)."""
    graph = random_qgraph(1, "features")
    c_dir = generate_c(graph, tmp_path / "c", "int")
    files = {p.name: p.read_text() for p in c_dir.iterdir()
             if p.name not in ("mnist_edge_weights.c", "test_vectors.h", "manifest.json")}
    fw = firmware.render_firmware_files(graph, TARGETS["qemu-m4"], "qemu", "float", "-O2", 20)
    files.update({k: v.decode() for k, v in fw.items()})
    for name, text in files.items():
        for pattern in (r"\b784\b", r"\b28\s*[x*]\s*28\b", r"\b1x28x28\b"):
            assert not re.search(pattern, text), (name, pattern)
    assert "#define MNIST_EDGE_OUTPUT_SIZE 12" in files["mnist_edge.h"]


# QDQ with int8 activations is fused (and so exact) only with session.qdqisint8allowed=1:
# tests/test_onnx.py::test_qdq_is_exact_when_onnxruntime_fuses_it.
@pytest.mark.parametrize("act,qdq", [("uint8", False), ("int8", False), ("uint8", True)])
@pytest.mark.parametrize("layout", SHAPE_LAYOUTS)
def test_onnx_export_is_exact(tmp_path: Path, layout: str, act: str, qdq: bool) -> None:
    graph = random_qgraph(1, layout)
    x = random_inputs(graph, 64, 4)
    path = (ox.export_qdq if qdq else ox.export_int8)(graph, tmp_path / "m.onnx", act)
    onnxrt.check_int8_model(path, graph)
    logits = onnxrt.run_logits(onnxrt.session(path), graph, x)
    np.testing.assert_array_equal(logits, golden.run_int8(graph, x))


@pytest.mark.parametrize("backend", ["wasm", "qemu-m4", "qemu-m0", "qemu-rv32imc"])
@pytest.mark.parametrize("layout", SHAPE_LAYOUTS)
def test_emulated_and_browser_builds_are_exact(tmp_path: Path, layout: str,
                                               backend: str) -> None:
    if backend == "wasm":
        need("emcc")
        need("node")
    else:
        need(firmware.tool(TARGETS[backend], "gcc"))
        need(firmware.qemu_command(TARGETS[backend], "x.elf")[0])
    run = _run_dir(tmp_path, layout)
    graph = qgraph.load_run(run)
    x = random_inputs(graph, CORE_INPUTS, 5)
    figures = validate_backend(run, backend, x, np.zeros(CORE_INPUTS, np.uint8))
    assert figures["exact_logit_fraction"] == 1.0, figures.get("first_mismatch")


@pytest.mark.parametrize("layout", ["rgb", "features", "vector"])
def test_hls_takes_any_input_and_rtl_refuses_other_inputs(tmp_path: Path, layout: str
                                                          ) -> None:
    """HLS streams the input as the C API takes it (HWC for several channels, int8 as is)
    and stores it CHW; the RTL reads any image of bytes (an RGB one streams C x H x W:
    tests/test_rtl.py runs one; int8 features as they are: tests/test_rtl_tflite.py runs
    int8 images) and refuses a vector by name."""
    need("g++")
    run = _run_dir(tmp_path, layout)
    graph = qgraph.load_run(run)
    figures = validate_backend(run, "hls", random_inputs(graph, CORE_INPUTS, 6), None)
    assert figures["exact_logit_fraction"] == 1.0, figures.get("first_mismatch")
    if layout == "rgb":
        generate_rtl(graph, tmp_path / "rtl")
        assert "3 planes of" in (tmp_path / "rtl" / "README.md").read_text()
        return
    if layout == "features":
        generate_rtl(graph, tmp_path / "rtl")
        assert "a_wdata = s_data;  // int8 as sent" in \
            (tmp_path / "rtl" / "mnist_edge_engine.v").read_text()
        return
    with pytest.raises(MnistEdgeError,
                       match=r"the RTL backend reads an image of uint8 or int8 bytes \(CxHxW\)"):
        generate_rtl(graph, tmp_path / "rtl")
    assert not (tmp_path / "rtl").exists()


def test_qgraph_round_trip_keeps_the_encoding(tmp_path: Path) -> None:
    graph = random_qgraph(1, "features")
    qgraph.save(graph, tmp_path / "g")
    back = qgraph.load(tmp_path / "g")
    assert back.input_encoding == "int8" and back.content_hash() == graph.content_hash()
    assert "input_encoding" not in random_qgraph(0, "mixed").to_json()  # old hashes stay


def test_bad_inputs_are_refused() -> None:
    graph = random_qgraph(1, "vector")
    graph.input.shape = (2, 3, 4, 5)
    with pytest.raises(MnistEdgeError, match="must be a vector"):
        graph.validate()
    graph = random_qgraph(1, "vector")
    graph.input_encoding = "float16"
    with pytest.raises(MnistEdgeError, match="encoding 'float16'"):
        graph.validate()
