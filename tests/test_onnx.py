"""ONNX export (float, int8 QOperator, QDQ) and the onnxruntime validation backend.

The int8 model must reproduce golden bit for bit: every op's output is compared with
golden's trace (so a mismatch names the op), for both activation types.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_edge import __version__, fgraph, golden, qgraph, testing, validate
from mnist_edge.errors import MnistEdgeError
from mnist_edge.ops import ONNX_KINDS

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not found: install with "
                          "scripts/setup.sh")
onnx = pytest.importorskip("onnx", reason="onnx not found: install with scripts/setup.sh")

from mnist_edge.backends import onnx as ox  # noqa: E402
from mnist_edge.targets import onnxrt  # noqa: E402

GRAPHS = [("mixed", 0), ("mixed", 1), ("mixed", 2), ("dense", 0), ("dense", 1), ("dense", 3)]
ACTS = ["uint8", "int8"]


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _with_intermediates(model, graph: qgraph.QGraph):
    """Expose every op's output (named after the op) as an extra graph output."""
    shapes = {v.name: v for v in model.graph.value_info}
    for op in graph.ops:
        model.graph.output.append(shapes[op.name])
    return model


def _random_fgraph(seed: int = 0) -> fgraph.FloatGraph:
    """A float graph using every layer kind and every activation the export supports."""
    rng = np.random.default_rng(seed)

    def conv(name, cin, cout, k, stride=1, pad=(0, 0, 0, 0), groups=1):
        return fgraph.FOp(name, "conv2d",
                          {"kernel": [k, k], "stride": [stride, stride], "padding": list(pad),
                           "groups": groups},
                          {"weight": rng.normal(0, 0.3, (cout, cin // groups, k, k)).astype(
                              np.float32), "bias": rng.normal(0, 0.1, cout).astype(np.float32)})

    def linear(name, cin, cout):
        return fgraph.FOp(name, "linear", {},
                          {"weight": rng.normal(0, 0.2, (cout, cin)).astype(np.float32),
                           "bias": rng.normal(0, 0.1, cout).astype(np.float32)})

    ops = [conv("c0", 1, 4, 3, pad=(1, 1, 1, 1)), fgraph.FOp("a0", "relu"),
           fgraph.FOp("p0", "maxpool2d", {"kernel": [2, 2], "stride": [2, 2]}),
           conv("c1", 4, 6, 3, stride=2, pad=(0, 1, 1, 0)), fgraph.FOp("a1", "selu"),
           fgraph.FOp("p1", "avgpool2d", {"kernel": [2, 2], "stride": [2, 2]}),
           conv("c2", 6, 6, 3, pad=(1, 1, 1, 1), groups=2), fgraph.FOp("a2", "gelu"),
           fgraph.FOp("p2", "global_avgpool"), fgraph.FOp("f", "flatten"),
           linear("l0", 6, 12), fgraph.FOp("a3", "tanh"), linear("l1", 12, 12),
           fgraph.FOp("a4", "sigmoid"), linear("l2", 12, 10)]
    return fgraph.FloatGraph("random-float", ops)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with a random QGraph and float graph, like `mnist-edge quantize` leaves."""
    run = tmp_path / "run"
    qgraph.save(testing.random_qgraph(0, "mixed"), run / "probe")
    fgraph.save(_random_fgraph(), run / "probe")
    return run


# ------------------------------------------------------------------ int8 bit-exactness
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("layout,seed", GRAPHS)
def test_every_op_matches_golden(layout: str, seed: int, act: str) -> None:
    graph = testing.random_qgraph(seed, layout)
    pixels = testing.random_pixels(64, seed + 100)
    logits_ref, trace = golden.run_int8(graph, pixels, trace=True)
    model = _with_intermediates(ox.build_int8(graph, act), graph)
    logits, probs, *outs = _session(model).run(None, {ox.INPUT_NAME: pixels[:, None]})
    offset = 128 if act == "uint8" else 0
    for op, out, ref in zip(graph.ops, outs, trace, strict=True):
        assert out.dtype == np.dtype(act), op.name
        got = out.astype(np.int16).reshape(ref.shape) - offset
        np.testing.assert_array_equal(got, ref, err_msg=f"{op.name} ({op.kind}), {act}")
    assert logits.dtype == np.int8
    np.testing.assert_array_equal(logits, logits_ref)
    real = golden.dequantize(logits_ref, graph.output).astype(np.float64)
    softmax = np.exp(real - real.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, softmax / softmax.sum(axis=1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_initializers_are_the_qgraph_numbers(act: str) -> None:
    """Exactly the QGraph's integers and float32 scales; pools as float32(1/N) all-ones convs.
    (A 1-ulp change in a scale rarely shows in logits, so check the numbers themselves.)"""
    graph = testing.random_qgraph(0, "mixed")
    model = ox.build_int8(graph, act)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    offset = 128 if act == "uint8" else 0
    for i, op in enumerate(graph.ops):
        if op.kind not in ("conv2d", "linear", "avgpool2d", "global_avgpool"):
            continue
        node = nodes[op.name]
        x, w, ws, wz, ys, yz, b = (inits[nodes[op.name].input[k]] for k in (1, 3, 4, 5, 6, 7, 8))
        xq = graph.input_of(i)
        assert x.dtype == np.float32 and x == np.float32(xq.scale)
        assert ys == np.float32(op.output.scale) and yz.dtype == np.dtype(act)
        assert int(yz) == op.output.zero_point + offset
        assert int(inits[node.input[2]]) == xq.zero_point + offset
        # uint8 activations take uint8 weights (w + 128, zero point 128): exact on any x86
        assert w.dtype == np.dtype(act) and wz.dtype == np.dtype(act) and np.all(wz == offset)
        w = w.astype(np.int16) - offset
        if op.kind in ("conv2d", "linear"):
            np.testing.assert_array_equal(w.reshape(op.arrays["weight"].shape), op.arrays["weight"])
            np.testing.assert_array_equal(b, op.arrays["bias"])
            assert ws.tobytes() == op.arrays["w_scale"].tobytes()
        else:
            window = qgraph.pool_window(op, xq)
            assert np.all(w == 1) and w.shape[0] == xq.shape[0] and not b.any()
            assert np.all(ws == np.float32(1) / np.float32(window))
            group = next(a.i for a in node.attribute if a.name == "group")
            assert group == xq.shape[0]
        m = (np.float32(x) * ws).astype(np.float32) / np.float32(ys)
        np.testing.assert_array_equal(m.astype(np.float32), graph.multiplier(i))


def test_layouts_cover_every_op_kind() -> None:
    kinds = {op.kind for layout, seed in GRAPHS for op in testing.random_qgraph(seed, layout).ops}
    kinds |= {op.kind for op in testing.random_dag_qgraph(0).ops}  # add, concat: see
    assert kinds == set(ONNX_KINDS)  # tests/test_op_registry.py for their exports


def test_lut_edges_and_pool_rounding() -> None:
    """All 256 LUT entries and extreme pixels (0, 255) reach onnxruntime unchanged."""
    graph = testing.random_qgraph(2, "dense")
    pixels = np.stack([np.full((28, 28), v, np.uint8) for v in range(256)])
    for act in ACTS:
        logits = _session(ox.build_int8(graph, act)).run([ox.LOGITS_NAME],
                                                         {ox.INPUT_NAME: pixels[:, None]})[0]
        np.testing.assert_array_equal(logits, golden.run_int8(graph, pixels))


@pytest.mark.parametrize("act", ACTS)
def test_dynamic_batch(act: str) -> None:
    graph = testing.random_qgraph(1, "mixed")
    sess = _session(ox.build_int8(graph, act))
    for n in (1, 7):
        pixels = testing.random_pixels(n, n)
        logits, probs = sess.run(None, {ox.INPUT_NAME: pixels[:, None]})
        assert logits.shape == (n, 10) and probs.shape == (n, 10)
        np.testing.assert_array_equal(logits, golden.run_int8(graph, pixels))


# ------------------------------------------------------------------ model hygiene
def _assert_well_formed(model, name: str, qgraph_hash: str | None) -> None:
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output,
                                  *inferred.graph.input]}
    for node in inferred.graph.node:
        for out in node.output:
            t = shapes[out].type.tensor_type
            assert t.HasField("shape"), f"{out} has no shape"
            dims = [d.dim_value or d.dim_param for d in t.shape.dim]
            assert dims, f"{out} has rank 0"
            batch = dims[:1] if dims[0] == ox.BATCH else []  # constants (weights) have none
            assert all(isinstance(d, int) and d > 0 for d in dims[len(batch):]), f"{out}: {dims}"
    for out in inferred.graph.output:
        assert out.type.tensor_type.shape.dim[0].dim_param == ox.BATCH
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["mnist_edge_version"] == __version__
    assert meta["model_name"] == name
    assert meta.get("qgraph_hash") == qgraph_hash
    assert model.opset_import[0].version == ox.OPSET


@pytest.mark.parametrize("act", ACTS)
def test_int8_models_are_well_formed(act: str) -> None:
    graph = testing.random_qgraph(0, "mixed")
    for qdq in (False, True):
        model = ox.build_int8(graph, act, qdq=qdq)
        _assert_well_formed(model, graph.name, graph.content_hash())
        ops = {n.op_type for n in model.graph.node}
        if qdq:
            assert "QLinearConv" not in ops and {"QuantizeLinear", "Conv"} <= ops
        else:
            assert {"QLinearConv", "MaxPool", "Gather"} <= ops and "Conv" not in ops
        inputs = model.graph.input[0].type.tensor_type
        assert inputs.elem_type == onnx.TensorProto.UINT8


def test_export_is_deterministic(tmp_path: Path) -> None:
    graph = testing.random_qgraph(1, "dense")
    a = ox.export_int8(graph, tmp_path / "a.onnx").read_bytes()
    b = ox.export_int8(testing.random_qgraph(1, "dense"), tmp_path / "b.onnx").read_bytes()
    assert a == b
    assert b"/tmp" not in a and str(tmp_path).encode() not in a


# ------------------------------------------------------------------ float model
def test_float_export_matches_run_float(tmp_path: Path) -> None:
    fg = _random_fgraph(3)
    path = ox.export_float(fg, tmp_path / "model.onnx")
    model = onnx.load(str(path))
    _assert_well_formed(model, fg.name, None)
    images = testing.random_pixels(16, 5).astype(np.float32)[:, None] / np.float32(255)
    got = _session(model).run(None, {ox.FLOAT_INPUT_NAME: images})[0]
    want = fgraph.run_float(fg, images)
    assert got.shape == (16, 10)
    assert float(np.abs(got - want).max()) <= 1e-4
    assert float(np.abs(want).max()) > 0.1  # the comparison is not between two zero tensors


# ------------------------------------------------------------------ CLI and backend
def test_export_command_writes_all_models(run_dir: Path) -> None:
    from mnist_edge.cli import main

    assert main(["export", "onnx", str(run_dir), "--format", "qdq"]) == 0
    names = sorted(p.name for p in run_dir.glob("*.onnx"))
    assert names == sorted([ox.FLOAT_FILE, ox.INT8_FILE, ox.QDQ_FILE])
    assert not list(run_dir.glob(".*"))  # no temporary files left behind
    assert main(["export", "onnx", str(run_dir), "--activations", "int8"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(run_dir / ox.INT8_FILE)).metadata_props}
    assert meta["activations"] == "int8" and meta["format"] == "qoperator"


def test_export_command_without_float_graph(tmp_path: Path) -> None:
    from mnist_edge.cli import main

    qgraph.save(testing.random_qgraph(0, "dense"), tmp_path / "probe")
    assert main(["export", "onnx", str(tmp_path)]) == 2
    assert not list(tmp_path.glob("*.onnx"))  # nothing half-exported


@pytest.mark.parametrize("act", ACTS)
def test_validate_backend_onnxruntime(run_dir: Path, act: str) -> None:
    graph = qgraph.load_run(run_dir)
    path = ox.export_int8(graph, run_dir / f"model.{act}.onnx", act)
    pixels = testing.random_pixels(40, 9)
    labels = np.arange(40) % 10
    figures = validate.validate_backend(run_dir, "onnxruntime", pixels, labels,
                                        {"model_file": str(path)})
    assert figures["exact_logit_fraction"] == 1.0 and figures["max_abs_logit_diff"] == 0
    assert figures["activations"] == act and figures["latency_us_per_image"] > 0
    assert figures["float_max_abs_diff_vs_pytorch"] is not None
    assert figures["float_max_abs_diff_vs_pytorch"] <= 1e-4
    assert (run_dir / ox.FLOAT_FILE).exists()


def test_backend_exports_missing_model(run_dir: Path) -> None:
    graph = qgraph.load_run(run_dir)
    pixels = testing.random_pixels(5, 1)
    result = onnxrt.run(run_dir, graph, pixels, {"skip_float": True})
    assert (run_dir / ox.INT8_FILE).exists()
    np.testing.assert_array_equal(result.logits, golden.run_int8(graph, pixels))


def _bad_models(tmp_path: Path, graph: qgraph.QGraph) -> dict[str, Path]:
    bad = {"garbage": tmp_path / "garbage.onnx", "empty": tmp_path / "empty.onnx",
           "missing": tmp_path / "missing.onnx"}
    bad["garbage"].write_bytes(b"\x08\x07this is not a protobuf\xff\xfe" * 10)
    bad["empty"].write_bytes(b"")
    bad["float"] = ox.export_float(_random_fgraph(), tmp_path / "float.onnx", graph.content_hash())
    bad["other_graph"] = ox.export_int8(testing.random_qgraph(5, "mixed"), tmp_path / "o.onnx")
    foreign = ox.build_int8(graph)
    del foreign.metadata_props[:]
    bad["foreign"] = tmp_path / "foreign.onnx"
    bad["foreign"].write_bytes(foreign.SerializeToString())
    wrong_io = ox.build_int8(graph)
    wrong_io.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 11
    bad["wrong_io"] = tmp_path / "wrong_io.onnx"
    bad["wrong_io"].write_bytes(wrong_io.SerializeToString())
    unloadable = ox.build_int8(graph)
    unloadable.graph.node[0].op_type = "NoSuchOp"
    bad["unloadable"] = tmp_path / "unloadable.onnx"
    bad["unloadable"].write_bytes(unloadable.SerializeToString())
    truncated = ox.build_int8(graph).SerializeToString()
    bad["truncated"] = tmp_path / "truncated.onnx"
    bad["truncated"].write_bytes(truncated[: len(truncated) // 2])
    return bad


def test_corrupt_or_foreign_model_is_a_clean_error(tmp_path: Path, run_dir: Path) -> None:
    graph = qgraph.load_run(run_dir)
    pixels = testing.random_pixels(3, 0)
    for what, path in _bad_models(tmp_path, graph).items():
        with pytest.raises(MnistEdgeError) as info:
            onnxrt.run(run_dir, graph, pixels, {"model_file": str(path), "skip_float": True})
        message = str(info.value)
        assert "\n" not in message and str(path) in message, (what, message)


# ------------------------------------------------------------------ QDQ
def _qdq_logits(graph: qgraph.QGraph, act: str, pixels: np.ndarray, **config: str) -> np.ndarray:
    so = ort.SessionOptions()
    if config.pop("optimize", "1") == "0":
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for key, value in config.items():
        so.add_session_config_entry(key, value)
    model = ox.build_int8(graph, act, qdq=True)
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run([ox.LOGITS_NAME], {ox.INPUT_NAME: pixels[:, None]})[0]


def test_qdq_is_exact_when_onnxruntime_fuses_it() -> None:
    """onnxruntime turns DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv for
    uint8 by default, for int8 only with session.qdqisint8allowed=1: then QDQ is exact."""
    pixels = testing.random_pixels(100, 4)
    for layout, seed in GRAPHS:
        graph = testing.random_qgraph(seed, layout)
        ref = golden.run_int8(graph, pixels)
        np.testing.assert_array_equal(_qdq_logits(graph, "uint8", pixels), ref)
        np.testing.assert_array_equal(
            _qdq_logits(graph, "int8", pixels, **{"session.qdqisint8allowed": "1"}), ref)


def test_unfused_qdq_is_only_close() -> None:
    """Unfused, Conv runs in float32 and QuantizeLinear divides by y_scale: rare +-1 errors
    (a random LUT after them turns +-1 into anything). Bound what we measured (>= 98% exact)."""
    pixels = testing.random_pixels(200, 4)
    for layout, seed in GRAPHS:
        graph = testing.random_qgraph(seed, layout)
        ref = golden.run_int8(graph, pixels)
        logits = _qdq_logits(graph, "uint8", pixels, optimize="0")
        assert np.mean(logits == ref) >= 0.95, (layout, seed)
        assert np.mean(golden.predict(logits) == golden.predict(ref)) >= 0.98, (layout, seed)
