"""A float `.tflite` becomes a float graph and goes through our quantizer like an ONNX import.

A small float model written without TensorFlow (conv, depthwise conv, fused and separate
activations, a residual ADD, MEAN, a flatten before FULLY_CONNECTED, a trailing SOFTMAX)
and the MLPerf Tiny float ResNet-8 run in the float graph as TFLite Micro runs them; the
ResNet then quantizes (calibrated on seeded random inputs) and onnxruntime equals golden;
what does not map is refused by operator index and builtin name, leaving nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_edge import fgraph
from mnist_edge.backends.tflite_flatbuffer import build
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers import import_tflite
from mnist_edge.importers.tflite_fgraph import tflite_to_fgraph
from mnist_edge.importers.tflite_reader import parse_tflite

pytest.importorskip("tflite_micro")
from mnist_edge.targets.tflm import run_tflm  # noqa: E402

RESNET = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf-tiny" / \
    "pretrainedResnet.tflite"


def _f(name: str, shape: list[int], data: np.ndarray | None = None) -> dict:
    t = dict(name=name, shape=shape, dtype="float32")
    if data is not None:
        t["data"] = data.astype(np.float32)
    return t


def _float_model(tail: str = "SOFTMAX") -> bytes:
    """x [1,6,5,2] -> CONV 3x3 SAME (RELU6) -> DEPTHWISE 3x3 SAME -> ADD (residual, RELU)
    -> HARD_SWISH -> RESHAPE [1,120] -> FC (RELU) -> FC -> `tail`."""
    rng = np.random.default_rng(0)
    r = lambda *s: rng.normal(0, 0.4, s)  # noqa: E731
    tensors = [_f("x", [1, 6, 5, 2]),
               _f("w1", [4, 3, 3, 2], r(4, 3, 3, 2)), _f("b1", [4], r(4)),
               _f("c1", [1, 6, 5, 4]),
               _f("w2", [1, 3, 3, 4], r(1, 3, 3, 4)), _f("b2", [4], r(4)),
               _f("c2", [1, 6, 5, 4]), _f("a", [1, 6, 5, 4]), _f("h", [1, 6, 5, 4]),
               dict(name="s", shape=[2], dtype="int32", data=np.array([1, 120], np.int32)),
               _f("f", [1, 120]),
               _f("w3", [8, 120], r(8, 120) * 0.3), _f("b3", [8], r(8)), _f("d", [1, 8]),
               _f("w4", [3, 8], r(3, 8)), _f("b4", [3], r(3)), _f("z", [1, 3]),
               _f("y", [1, 3])]
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                options=dict(padding="SAME", stride_w=1, stride_h=1, fused_activation="RELU6")),
           dict(op="DEPTHWISE_CONV_2D", inputs=[3, 4, 5], outputs=[6],
                options=dict(padding="SAME", stride_w=1, stride_h=1, depth_multiplier=1)),
           dict(op="ADD", inputs=[3, 6], outputs=[7], options=dict(fused_activation="RELU")),
           dict(op="HARD_SWISH", inputs=[7], outputs=[8]),
           dict(op="RESHAPE", inputs=[8, 9], outputs=[10]),
           dict(op="FULLY_CONNECTED", inputs=[10, 11, 12], outputs=[13],
                options=dict(fused_activation="RELU")),
           dict(op="FULLY_CONNECTED", inputs=[13, 14, 15], outputs=[16]),
           dict(op=tail, inputs=[16] if tail == "SOFTMAX" else [16, 16], outputs=[17],
                options=dict(beta=1.0) if tail == "SOFTMAX" else {})]
    return build(tensors, ops, [0], [17])


def _mean_model() -> bytes:
    rng = np.random.default_rng(1)
    return build([_f("x", [1, 5, 4, 3]),
                  dict(name="axes", shape=[2], dtype="int32", data=np.array([1, 2], np.int32)),
                  _f("m", [1, 3]), _f("w", [2, 3], rng.normal(0, 1, (2, 3))), _f("y", [1, 2])],
                 [dict(op="MEAN", inputs=[0, 1], outputs=[2], options=dict(keep_dims=False)),
                  dict(op="FULLY_CONNECTED", inputs=[2, 3, -1], outputs=[4])], [0], [4])


def _float_vs_tflm(data: bytes, n: int = 16) -> tuple[float, float]:
    model = parse_tflite(data, "f")
    graph, _, dropped = tflite_to_fgraph(model, "f")
    shape = model.tensors[model.inputs[0]].shape
    x = np.random.default_rng(2).normal(0, 1, (n, *shape[1:])).astype(np.float32)
    ref = run_tflm(data, x).reshape(n, -1).astype(np.float64)
    chw = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
    ours = fgraph.run_float(graph, chw).astype(np.float64)
    if dropped:
        ours = np.exp(ours - ours.max(1, keepdims=True))
        ours /= ours.sum(1, keepdims=True)
    return float(np.abs(ours - ref).max()), float(np.mean(ours.argmax(1) == ref.argmax(1)))


@pytest.mark.parametrize("make", [_float_model, _mean_model], ids=["conv_fc", "mean"])
def test_float_graph_runs_as_tflm_float(make) -> None:
    diff, agree = _float_vs_tflm(make())
    assert diff < 1e-5 and agree == 1.0


def test_softmax_is_dropped_and_the_flatten_permutes_columns() -> None:
    graph, mapped, dropped = tflite_to_fgraph(parse_tflite(_float_model(), "f"), "f")
    assert dropped == ["operator 7 (SOFTMAX)"]
    kinds = [op.kind for op in graph.ops]
    assert kinds == ["conv2d", "clip", "conv2d", "add", "relu", "hardswish", "flatten",
                     "linear", "relu", "linear"]
    assert graph.input_shape == (2, 6, 5) and graph.input_kind == "features"


def test_refused_by_operator_and_nothing_written(tmp_path: Path) -> None:
    src = tmp_path / "f.tflite"
    src.write_bytes(_float_model(tail="SUB"))
    with pytest.raises(MnistEdgeError, match=r"operator 7 \(SUB\): has no float-graph mapping"):
        import_tflite(src, tmp_path / "runs", "f")
    assert not (tmp_path / "runs" / "f").exists()


def test_mlperf_float_resnet_imports_quantizes_and_is_exact(tmp_path: Path) -> None:
    if not RESNET.is_file():
        reason = f"{RESNET} is absent: the float ResNet-8 is not tested"
        print(reason)
        pytest.skip(reason)
    from mnist_edge import api

    run_dir, doc = import_tflite(RESNET, tmp_path, "r")
    assert doc["float"] and doc["float_check"]["max_abs_diff"] < 1e-5
    assert doc["float_check"]["argmax_agreement"] == 1.0
    x = np.random.default_rng(3).uniform(0, 1, (64, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=x)
    m = api.Model(run_dir)
    m.quantize(data=str(tmp_path / "cal.npz"), calib_images=64, progress=False)
    res = m.validate("onnxruntime", data=str(tmp_path / "cal.npz"), limit=32, progress=False)
    assert res.backends["onnxruntime"]["exact_logit_fraction"] == 1.0, res


def test_mutated_float_files_map_or_are_refused_in_one_line() -> None:
    """300 mutations (tests/tflite_fuzz.py) of the small float model: the reader and the
    float mapping either take each or refuse it with a one-line MnistEdgeError."""
    from tflite_fuzz import mutate

    rng = np.random.default_rng(7)
    data = _float_model()
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(300):
        what, mutated = mutate(data, rng)
        try:
            tflite_to_fgraph(parse_tflite(mutated, "f"), "f")
            outcomes["ok"] += 1
        except MnistEdgeError as exc:
            assert "\n" not in str(exc), (what, str(exc))
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0
