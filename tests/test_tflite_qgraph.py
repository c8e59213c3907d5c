"""An int8 `.tflite` as a QGraph in the `tflite` arithmetic: golden equals TFLite Micro.

The four MLPerf Tiny int8 models and the single-operator fixtures of
test_tflite_fixtures (plus single-input variants of the two-input ones) import, and golden
equals TFLM on every output byte; the arithmetic survives a save/load with its hash; every
backend that does not implement it refuses such a graph by name; the CLI imports,
validates against `tflm` and refuses float and hostile files in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_tflite_fixtures import CASES, _act

from mnist_edge import golden, qgraph
from mnist_edge.backends.tflite_flatbuffer import build
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers.tflite_qgraph import tflite_to_qgraph
from mnist_edge.importers.tflite_reader import parse_tflite, read_tflite
from mnist_edge.probe_inputs import probe_batch

pytest.importorskip("tflite_micro")
from mnist_edge.targets.tflm import from_tflite_output, run_tflm, to_tflite_input  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf-tiny"
MLPERF = ("pretrainedResnet_quant", "kws_ref_model", "vww_96_int8", "ad01_int8")
N = 50
REPO = Path(__file__).resolve().parents[1]


def golden_vs_tflm(data: bytes, name: str, n: int = N, seed: int = 0) -> tuple[int, int]:
    """(inputs where golden equals TFLM on every byte, inputs) for a .tflite's bytes."""
    model = parse_tflite(data, name)
    graph, _ = tflite_to_qgraph(model, name)
    q = probe_batch(graph, n, seed)
    ours = golden.run_int8(graph, q)
    t_in, t_out = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
    ref = from_tflite_output(graph, run_tflm(data, to_tflite_input(graph, q, t_in)), t_out)
    assert ours.shape == ref.shape and ref.dtype == np.int8
    return int(np.all(ours == ref, axis=1).sum()), n


def _mlperf(name: str) -> Path:
    path = MODELS / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return path


@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_model_golden_equals_tflm(name: str) -> None:
    path = _mlperf(name)
    equal, n = golden_vs_tflm(path.read_bytes(), name)
    assert equal == n


# Fixtures the QGraph takes as they are, and those it refuses (with the reason's words).
REFUSED = {"add_broadcast": "inputs", "sub": "inputs", "mul": "inputs",
           "mul_broadcast_relu6": "inputs", "concat": "inputs", "softmax": "input"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixture_imports_and_golden_equals_tflm(case: str) -> None:
    data = CASES[case]()
    if case in REFUSED:
        with pytest.raises(MnistEdgeError, match=REFUSED[case]):
            tflite_to_qgraph(parse_tflite(data, case), case)
        return
    equal, n = golden_vs_tflm(data, case)
    assert equal == n


def _binary_one_input(op: str, activation: str = "NONE") -> bytes:
    """x -> RELU (another scale) -> r; op(x, r): two inputs of different scales from one."""
    shape = [1, 4, 5, 3]
    return build([_act("x", shape, 0.05, -7), _act("r", shape, 0.031, -128),
                  _act("y", shape, 0.09, 3)],
                 [dict(op="RELU", inputs=[0], outputs=[1]),
                  dict(op=op, inputs=[0, 1], outputs=[2],
                       options=dict(fused_activation=activation))], [0], [2])


def _concat_one_input() -> bytes:
    shape, out = [1, 2, 3, 4], [1, 2, 3, 8]
    return build([_act("x", shape, 0.05, 1), _act("r", shape, 0.05, 1), _act("y", out, 0.05, 1)],
                 [dict(op="RELU6", inputs=[0], outputs=[1]),
                  dict(op="CONCATENATION", inputs=[0, 1], outputs=[2], options=dict(axis=3))],
                 [0], [2])


def _pad_conv() -> bytes:
    """PAD with the zero point, then a VALID conv: the PAD folds into the conv's padding."""
    rng = np.random.default_rng(3)
    pads = np.array([[0, 0], [1, 2], [2, 0], [0, 0]], dtype=np.int32)
    w = rng.integers(-127, 128, (4, 3, 3, 2)).astype(np.int8)
    scales = rng.uniform(0.002, 0.02, 4)
    tensors = [_act("x", [1, 5, 5, 2], 0.05, 9),
               dict(name="p", shape=[4, 2], dtype="int32", data=pads),
               _act("xp", [1, 8, 7, 2], 0.05, 9),
               dict(name="w", shape=[4, 3, 3, 2], dtype="int8", scale=scales,
                    zero_point=[0] * 4, axis=0, data=w),
               _act("y", [1, 6, 5, 4], 0.1, -3)]
    return build(tensors, [dict(op="PAD", inputs=[0, 1], outputs=[2]),
                           dict(op="CONV_2D", inputs=[2, 3, -1], outputs=[4],
                                options=dict(padding="VALID", stride_w=1, stride_h=1,
                                             fused_activation="RELU"))], [0], [4])


def _flat_softmax() -> bytes:
    return build([_act("x", [1, 12], 0.1, 7), _act("y", [1, 12], 1 / 256, -128)],
                 [dict(op="SOFTMAX", inputs=[0], outputs=[1], options=dict(beta=1.0))],
                 [0], [1])


def _conv_flatten_fc() -> bytes:
    """conv -> RESHAPE [1,H*W*C] -> FULLY_CONNECTED: the HWC flatten order permutes the
    dense weight's columns."""
    rng = np.random.default_rng(4)
    w = rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8)
    fc = rng.integers(-127, 128, (5, 18)).astype(np.int8)
    tensors = [_act("x", [1, 6, 5, 2], 0.05, -2),
               dict(name="w", shape=[3, 3, 3, 2], dtype="int8", scale=[0.01, 0.02, 0.015],
                    zero_point=[0] * 3, axis=0, data=w),
               _act("c", [1, 2, 3, 3], 0.08, -5),
               dict(name="s", shape=[2], dtype="int32", data=np.array([1, 18], np.int32)),
               _act("f", [1, 18], 0.08, -5),
               dict(name="fw", shape=[5, 18], dtype="int8", scale=0.01, zero_point=0, data=fc),
               _act("y", [1, 5], 0.2, 4)]
    return build(tensors, [dict(op="CONV_2D", inputs=[0, 1, -1], outputs=[2],
                                options=dict(padding="VALID", stride_w=1, stride_h=2)),
                           dict(op="RESHAPE", inputs=[2, 3], outputs=[4]),
                           dict(op="FULLY_CONNECTED", inputs=[4, 5, -1], outputs=[6])],
                 [0], [6])


VARIANTS = {
    "add": lambda: _binary_one_input("ADD", "RELU"),
    "sub": lambda: _binary_one_input("SUB"),
    "mul_relu6": lambda: _binary_one_input("MUL", "RELU6"),
    "concat": _concat_one_input,
    "pad_conv": _pad_conv,
    "softmax_flat": _flat_softmax,
    "conv_flatten_fc": _conv_flatten_fc,
}


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_single_input_variant_golden_equals_tflm(case: str) -> None:
    equal, n = golden_vs_tflm(VARIANTS[case](), case)
    assert equal == n


def test_flatten_permutes_the_dense_columns() -> None:
    graph, mapped = tflite_to_qgraph(parse_tflite(_conv_flatten_fc(), "f"), "f")
    assert [op.kind for op in graph.ops] == ["conv2d", "flatten", "linear"]
    assert mapped[1]["qgraph"] == ["flatten_1"]


def _tflite_graph() -> qgraph.QGraph:
    return tflite_to_qgraph(read_tflite(_mlperf("ad01_int8")), "ad")[0]


def test_round_trip_keeps_the_arithmetic_and_hash(tmp_path: Path) -> None:
    graph = tflite_to_qgraph(read_tflite(_mlperf("kws_ref_model")), "kws")[0]
    json_path, _ = qgraph.save(graph, tmp_path / "kws")
    doc = json.loads(json_path.read_text())
    assert doc["arithmetic"] == "tflite" and doc["input_encoding"] == "int8"
    loaded = qgraph.load(tmp_path / "kws")
    assert loaded.arithmetic == "tflite"
    assert loaded.content_hash() == graph.content_hash() == doc["hash"]
    q = probe_batch(graph, 8, 1)
    np.testing.assert_array_equal(golden.run_int8(loaded, q), golden.run_int8(graph, q))


def test_onnx_graphs_do_not_store_the_default_arithmetic() -> None:
    from mnist_edge.testing import random_qgraph

    graph = random_qgraph(0, "mixed")
    assert graph.arithmetic == "onnx" and "arithmetic" not in graph.to_json()


def test_unknown_arithmetic_is_refused_on_load(tmp_path: Path) -> None:
    json_path, _ = qgraph.save(_tflite_graph(), tmp_path / "g")
    doc = json.loads(json_path.read_text())
    doc["arithmetic"] = "cmsis"
    json_path.write_text(json.dumps(doc))
    with pytest.raises(MnistEdgeError, match="arithmetic 'cmsis' is unknown"):
        qgraph.load(tmp_path / "g")


def _rtl(graph, tmp):
    from mnist_edge.backends.rtl import generate_rtl

    generate_rtl(graph, tmp / "rtl")


# (every backend implements the tflite arithmetic: their own tests; the RTL, for images,
# tests/test_rtl_tflite.py)
def test_rtl_refuses_the_autoencoders_vector_input_by_name(tmp_path: Path) -> None:
    with pytest.raises(MnistEdgeError) as exc:
        _rtl(_tflite_graph(), tmp_path)
    assert str(exc.value) == ("the RTL backend reads an image of uint8 or int8 bytes (CxHxW); "
                              "model ad takes int8 640: use the C, WebAssembly or ONNX "
                              "backends for it")
    assert not any(tmp_path.iterdir())


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_edge.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_cli_import_and_validate_against_tflm(tmp_path: Path) -> None:
    path = _mlperf("ad01_int8")
    r = _cli("import", str(path), "--runs", "runs", "--name", "ad", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "ad"
    info = json.loads((run / "import.json").read_text())
    assert info["format"] == "tflite" and len(info["sha256"]) == 64
    assert [e["qgraph"] for e in info["ops"]][:2] == [["linear_0"], ["linear_1"]]
    assert qgraph.load_run(run).arithmetic == "tflite"
    r = _cli("validate", str(run), "--backend", "tflm", "--inputs", "random:20", cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "tflm: no labels, exact logits 100.0000%" in r.stdout
    r = _cli("generate", "c", str(run), cwd=tmp_path)  # the C backend implements it
    assert r.returncode == 0, r.stderr
    assert (run / "c" / "mnist_edge_model.c").exists()
    r = _cli("generate", "hls", str(run), cwd=tmp_path)  # and so does HLS
    assert r.returncode == 0, r.stderr
    assert (run / "fpga" / "hls" / "mnist_edge_kernels.h").exists()
    r = _cli("generate", "rtl", str(run), cwd=tmp_path)  # the RTL: images only
    assert r.returncode == 2
    assert r.stderr.strip().startswith("mnist-edge: error: the RTL backend reads an image of "
                                       "uint8 or int8 bytes (CxHxW); model ad takes int8 640")


@pytest.mark.parametrize("what", ["float", "hybrid", "truncated", "multi-input"])
def test_cli_refuses_in_one_line_and_writes_nothing(what: str, tmp_path: Path) -> None:
    if what == "float":  # a float .tflite imports unless an operator does not map
        from test_tflite_float import _float_model

        src, words = tmp_path / "float.tflite", "operator 7 (SUB): has no float-graph mapping"
        src.write_bytes(_float_model(tail="SUB"))
    elif what == "hybrid":
        src, words = _mlperf("kws_ref_model_float32"), "hybrid"
    else:
        src = tmp_path / f"{what}.tflite"
        data = (_mlperf("kws_ref_model").read_bytes()[:5000] if what == "truncated"
                else CASES["sub"]())
        src.write_bytes(data)
        words = "not a valid TFLite" if what == "truncated" else "2 inputs"
    r = _cli("import", str(src), "--runs", "runs", "--name", "m", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.stderr
    assert not (tmp_path / "runs" / "m").exists()
