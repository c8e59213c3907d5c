"""The ONNX files real exporters write (issue 21): patterns seen in published third-party
files that no exporter in tests/exporters.py writes, so each graph is built by hand with
onnx.helper (seeded weights, not trained: exactness does not need accuracy).

Each pattern goes through import (whose float check against onnxruntime must pass) ->
quantize (calibrated on MNIST) -> validate on onnxruntime, c, c-x86, c-int and hls, every
backend bit-exact. What stays refused is refused by the CLI in one line, exit 2, no run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mnist_edge import fgraph, pipeline  # noqa: E402
from mnist_edge.importers import import_onnx  # noqa: E402
from mnist_edge.quantize import quantize_run  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHECK = 100  # images of the float check
BACKENDS = ["onnxruntime", "c", "c-x86", "c-int"] + (["hls"] if shutil.which("g++") else [])


# ------------------------------------------------------------------ building graphs
class Net:
    """A graph under construction: `add` appends a node and returns its output name;
    weights are seeded normals, scaled by 1/sqrt(fan-in) to keep activations moderate."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}

    def const(self, value, dtype=np.float32) -> str:
        name = f"k{len(self.inits)}"
        self.inits[name] = np.asarray(value, dtype)
        return name

    def weight(self, *shape: int) -> str:
        fan_in = int(np.prod(shape[1:]))
        return self.const(self.rng.normal(size=shape) / np.sqrt(fan_in))

    def add(self, op: str, *inputs: str, name: str | None = None, domain: str | None = None,
            **attrs) -> str:
        out = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name or f"n_{out}",
                                           domain=domain, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 3, pad: int = 0) -> str:
        return self.add("Conv", x, self.weight(cout, cin, k, k), self.const(
            self.rng.normal(size=cout) * 0.1), pads=[pad] * 4)

    def gemm(self, x: str, fin: int, fout: int) -> str:
        return self.add("Gemm", x, self.weight(fout, fin), self.const(
            self.rng.normal(size=fout) * 0.1), transB=1)

    def batchnorm(self, x: str, c: int, name: str = "bn") -> str:
        r = self.rng
        return self.add("BatchNormalization", x, self.const(r.uniform(0.5, 1.5, c)),
                        self.const(r.normal(size=c) * 0.2), self.const(r.normal(size=c) * 0.2),
                        self.const(r.uniform(0.5, 2.0, c)), name=name)

    def model(self, out: str, opset: int = 17, in_shape=("N", 1, 28, 28), name: str = "g"):
        assert out == self.nodes[-1].output[0], "the last node computes the output"
        self.nodes[-1].output[0] = "y"
        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             list(in_shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
            [numpy_helper.from_array(v, k) for k, v in self.inits.items()])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(model, path: Path) -> Path:
    """The bytes as they are (onnx.save would not mind either: no checker runs)."""
    path.write_bytes(model.SerializeToString())
    return path


def _cnn(net: Net, x: str = "x") -> str:
    """conv 4 (pad 1) -> relu -> maxpool 2 -> flatten -> gemm 10: the plain body."""
    h = net.add("MaxPool", net.add("Relu", net.conv(x, 1, 4, pad=1)), kernel_shape=[2, 2],
                strides=[2, 2])
    return net.gemm(net.add("Flatten", h), 4 * 14 * 14, 10)


def _through(tmp_path: Path, mnist_dir: Path, model, name: str) -> tuple[Path, dict]:
    """import -> quantize -> validate on every backend: bit-exact; (run folder, import.json)."""
    path = _save(model, tmp_path / f"{name}.onnx")
    run_dir, doc = import_onnx(path, tmp_path / "runs", name, data_dir=str(mnist_dir),
                               check_images=CHECK)
    assert doc["float_check"]["relative_diff"] <= 1e-4
    quantize_run(run_dir, str(mnist_dir), "percentile", 100)
    results = pipeline.validate_run(run_dir, BACKENDS, str(mnist_dir), 60)
    assert pipeline.all_exact(results), {b: f["exact_logit_fraction"] for b, f in results.items()}
    assert list(results) == BACKENDS
    return run_dir, doc


def _ops(run_dir: Path) -> list[tuple[str, dict]]:
    return [(op.kind, op.attrs) for op in fgraph.load(fgraph.find_in_run(run_dir)).ops]


# ------------------------------------------------------------------ graph repairs
def test_nodes_in_reverse_order(tmp_path: Path, mnist_dir: Path) -> None:
    """keras2onnx stores the nodes last to first: sorted, and said so."""
    net = Net(1)
    model = net.model(_cnn(net))
    model.graph.node.reverse()
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model)
    run_dir, doc = _through(tmp_path, mnist_dir, model, "reversed")
    assert [r["repair"] for r in doc["repaired"]] == ["nodes out of topological order"]
    assert [k for k, _ in _ops(run_dir)] == ["conv2d", "relu", "maxpool2d", "flatten", "linear"]


def _defect(model, kind: str) -> None:
    if kind == "empty graph name":
        model.graph.name = ""
    elif kind == "output listed twice":
        model.graph.output.append(model.graph.output[0])
    else:
        for node in model.graph.node:
            node.domain = "ai.onnx"


DEFECTS = ["empty graph name", "output listed twice", "default domain spelled 'ai.onnx'"]


@pytest.mark.parametrize("kind", DEFECTS)
def test_cosmetic_defect_repaired(tmp_path: Path, mnist_dir: Path, kind: str) -> None:
    """Each defect alone: onnxruntime runs the file, the import repairs it and says so."""
    import onnxruntime as ort

    net = Net(2)
    model = net.model(_cnn(net))
    _defect(model, kind)
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    if kind != "output listed twice":  # the checker of onnx 1.23 lets this one through
        with pytest.raises(onnx.checker.ValidationError):
            onnx.checker.check_model(model)
    path = _save(model, tmp_path / "m.onnx")
    _, doc = import_onnx(path, tmp_path / "runs", "m", data_dir=str(mnist_dir),
                         check_images=CHECK)
    assert [r["repair"] for r in doc["repaired"]] == [kind]


def test_all_defects_through_the_cli(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    """All four at once, imported by the CLI (the import line names the repairs), then
    quantized and validated bit-exact."""
    from mnist_edge.cli import main

    net = Net(3)
    model = net.model(_cnn(net))
    for kind in DEFECTS:
        _defect(model, kind)
    model.graph.node.reverse()
    path = _save(model, tmp_path / "messy.onnx")
    runs = tmp_path / "runs"
    assert main(["import", str(path), "--runs", str(runs), "--data", str(mnist_dir)]) == 0
    line = capsys.readouterr().out
    assert "repaired: default domain spelled 'ai.onnx'; empty graph name; output listed " \
           "twice; nodes out of topological order" in line, line
    quantize_run(runs / "messy", str(mnist_dir), "percentile", 100)
    assert pipeline.all_exact(pipeline.validate_run(runs / "messy", BACKENDS, str(mnist_dir),
                                                    60))


# ------------------------------------------------------------------ BatchNormalization
def _bn_model(where: str) -> tuple[object, list[str], str]:
    """(model, expected IR op kinds, how the BatchNormalization went)."""
    net = Net(4)
    relu = net.add("Relu", net.conv("x", 1, 4, pad=1))
    if where == "after relu, before an unpadded conv":
        h = net.add("Relu", net.conv(net.batchnorm(relu, 4), 4, 8))
        h = net.add("MaxPool", h, kernel_shape=[2, 2], strides=[2, 2])
        out = net.gemm(net.add("Flatten", h), 8 * 13 * 13, 10)
        return net.model(out), ["conv2d", "relu", "conv2d", "relu", "maxpool2d", "flatten",
                                "linear"], "folded forward into the next Conv"
    if where == "after relu, before a padded conv":
        h = net.add("Relu", net.conv(net.batchnorm(relu, 4), 4, 8, pad=1))
        h = net.add("MaxPool", h, kernel_shape=[2, 2], strides=[2, 2])
        out = net.gemm(net.add("Flatten", h), 8 * 14 * 14, 10)
        return net.model(out), ["conv2d", "relu", "conv2d", "conv2d", "relu", "maxpool2d",
                                "flatten", "linear"], "kept as a per-channel affine op"
    pool = net.add("MaxPool", relu, kernel_shape=[2, 2], strides=[2, 2])
    if where == "before flatten":
        out = net.gemm(net.add("Flatten", net.batchnorm(pool, 4)), 4 * 14 * 14, 10)
        return net.model(out), ["conv2d", "relu", "maxpool2d", "flatten", "linear"], \
            "folded forward into the next Gemm/MatMul"
    if where == "after the last gemm":
        h = net.add("Relu", net.gemm(net.add("Flatten", pool), 4 * 14 * 14, 10))
        return net.model(net.batchnorm(h, 10)), ["conv2d", "relu", "maxpool2d", "flatten",
                                                 "linear", "relu", "linear"], \
            "kept as a per-channel affine op"
    # tf2onnx writes a BatchNormalization it cannot fuse as Mul and Add by [1,C,1,1]
    scale = net.const(net.rng.uniform(0.5, 1.5, (1, 4, 1, 1)))
    shift = net.const(net.rng.normal(size=(1, 4, 1, 1)) * 0.2)
    h = net.add("Add", net.add("Mul", relu, scale, name="bn_mul"), shift, name="bn_add")
    h = net.add("MaxPool", h, kernel_shape=[2, 2], strides=[2, 2])
    out = net.gemm(net.add("Flatten", h), 4 * 14 * 14, 10)
    return net.model(out), ["conv2d", "relu", "conv2d", "maxpool2d", "flatten", "linear"], \
        "kept as a per-channel affine op"


@pytest.mark.parametrize("where", ["after relu, before an unpadded conv",
                                   "after relu, before a padded conv", "before flatten",
                                   "after the last gemm", "as Mul and Add before a max pool"])
def test_batchnorm_that_cannot_fold_backwards(tmp_path: Path, mnist_dir: Path,
                                              where: str) -> None:
    """Folded forward into the next Conv/Gemm where exact (the next conv unpadded: padding
    zeros would enter after the affine), else a depthwise 1x1 conv or diagonal linear."""
    model, kinds, how = _bn_model(where)
    run_dir, doc = _through(tmp_path, mnist_dir, model, "bn")
    ops = _ops(run_dir)
    assert [k for k, _ in ops] == kinds
    assert {f["how"] for f in doc["folded"]} == {how}
    assert {f["op_type"] for f in doc["folded"]} <= {"BatchNormalization", "Mul", "Add"}
    if how == "kept as a per-channel affine op" and where != "after the last gemm":
        assert [a for k, a in ops if k == "conv2d"][1] == {
            "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0, 0, 0], "groups": 4}


# ------------------------------------------------------------------ Pad
def _pad_model(case: str):
    """(model, expected IR op kinds, the first op's padding after the stem)."""
    net = Net(5)
    if case in ("opset 10 attribute, before a conv", "opset 13 input, before a conv"):
        opset = 10 if case.startswith("opset 10") else 13
        pads = [0, 0, 1, 2, 0, 0, 2, 1]
        x = (net.add("Pad", "x", pads=pads) if opset == 10
             else net.add("Pad", "x", net.const(pads, np.int64)))
        h = net.add("Relu", net.conv(x, 1, 4))
        h = net.add("MaxPool", h, kernel_shape=[2, 2], strides=[2, 2])
        out = net.gemm(net.add("Flatten", h), 4 * 14 * 14, 10)
        return net.model(out, opset), ["conv2d", "relu", "maxpool2d", "flatten", "linear"], \
            [1, 2, 2, 1]
    relu = net.add("Relu", net.conv("x", 1, 4, pad=1))
    if case == "all zero":  # before a max pool, which a real Pad could not precede
        h = net.add("Pad", relu, net.const([0] * 8, np.int64))
        h = net.add("MaxPool", h, kernel_shape=[2, 2], strides=[2, 2])
        out = net.gemm(net.add("Flatten", h), 4 * 14 * 14, 10)
        return net.model(out), ["conv2d", "relu", "maxpool2d", "flatten", "linear"], None
    if case == "before an average pool":
        h = net.add("Pad", relu, net.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
        h = net.add("AveragePool", h, kernel_shape=[3, 3], strides=[2, 2])
    else:  # the average pool's own pads, counted
        h = net.add("AveragePool", relu, kernel_shape=[3, 3], strides=[2, 2],
                    pads=[1, 1, 1, 1], count_include_pad=1)
    out = net.gemm(net.add("Flatten", h), 4 * 14 * 14, 10)
    return net.model(out), ["conv2d", "relu", "conv2d", "flatten", "linear"], [1, 1, 1, 1]


@pytest.mark.parametrize("case", ["all zero", "before an average pool",
                                  "average pool counting its pads",
                                  "opset 10 attribute, before a conv",
                                  "opset 13 input, before a conv"])
def test_pad(tmp_path: Path, mnist_dir: Path, case: str) -> None:
    """Zero pads are dropped; zeros an average counts make it a depthwise conv of weight
    1/9 (count_include_pad); pads as attribute (Pad-2) or input (Pad-11+) become the
    Conv's padding."""
    model, kinds, padding = _pad_model(case)
    run_dir, doc = _through(tmp_path, mnist_dir, model, "pad")
    ops = _ops(run_dir)
    assert [k for k, _ in ops] == kinds
    if case == "all zero":
        assert [d["op_type"] for d in doc["dropped"]] == ["Pad"]
    elif "average" in case:
        assert ops[2][1] == {"kernel": [3, 3], "stride": [2, 2], "padding": padding,
                             "groups": 4}
        weight = fgraph.load(fgraph.find_in_run(run_dir)).ops[2].arrays["weight"]
        np.testing.assert_array_equal(weight, np.float32(1 / 9))
    else:
        assert ops[0][1]["padding"] == padding


# ------------------------------------------------------------------ layout and shapes
def test_reshape_that_moves_a_size_one_axis(tmp_path: Path, mnist_dir: Path) -> None:
    """tf2onnx writes [N,28,28,1] -> [N,1,28,28] as a Reshape: NHWC -> NCHW, not a flatten."""
    net = Net(6)
    x = net.add("Reshape", "x", net.const([-1, 1, 28, 28], np.int64))
    model = net.model(_cnn(net, x), in_shape=("N", 28, 28, 1))
    run_dir, doc = _through(tmp_path, mnist_dir, model, "nhwc")
    assert doc["layout"] == "nhwc" and doc["input_shape"] == [1, 28, 28]
    assert [k for k, _ in _ops(run_dir)] == ["conv2d", "relu", "maxpool2d", "flatten", "linear"]


def _mlp(opset: int):
    """The flatten as live shape arithmetic: Shape -> Gather(0) -> Unsqueeze -> Concat([-1])
    -> Reshape; at opset 13+ `axes` are inputs, and Squeeze(Slice) stands for the Gather."""
    net = Net(7)
    shape = net.add("Shape", "x")
    if opset >= 13:
        axes = net.const([0], np.int64)
        first = net.add("Slice", shape, net.const([0], np.int64), net.const([1], np.int64))
        batch = net.add("Unsqueeze", net.add("Squeeze", first, axes), axes)
    else:
        batch = net.add("Unsqueeze", net.add("Gather", shape, net.const(0, np.int64), axis=0),
                        axes=[0])
    target = net.add("Concat", batch, net.const([-1], np.int64), axis=0)
    h = net.add("Relu", net.gemm(net.add("Reshape", "x", target), 784, 32))
    return net.model(net.gemm(h, 32, 10), opset)


@pytest.mark.parametrize("opset", [11, 13])
def test_mlp_flattened_by_shape_arithmetic(tmp_path: Path, mnist_dir: Path,
                                           opset: int) -> None:
    run_dir, _ = _through(tmp_path, mnist_dir, _mlp(opset), f"mlp{opset}")
    assert [k for k, _ in _ops(run_dir)] == ["flatten", "linear", "relu", "linear"]


# ------------------------------------------------------------------ refusals
def _refused_model(op: str):
    net = Net(8)
    if op in ("LSTM", "GRU", "RNN"):  # a [T,N,F] sequence of image rows
        gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        net.nodes.append(helper.make_node(op, ["x", net.weight(1, 16 * gates, 28),
                                               net.weight(1, 16 * gates, 16)], ["", "h"],
                                          name="the_rnn", hidden_size=16))
        h = net.add("Squeeze", "h", net.const([0], np.int64))
        return net.model(net.gemm(h, 16, 10), in_shape=(28, "N", 28)), "the_rnn"
    relu = net.add("Relu", net.conv("x", 1, 4, pad=1))
    if op == "LayerNormalization":
        h = net.add(op, relu, net.const(np.ones((4, 28, 28))), net.const(np.zeros((4, 28, 28))),
                    name="the_norm", axis=1)
    elif op == "MeanVarianceNormalization":
        h = net.add(op, relu, name="the_norm")
    elif op == "Resize":
        h = net.add(op, relu, "", net.const([1, 1, 0.5, 0.5]), name="the_resize")
        return net.model(net.gemm(net.add("Flatten", h), 4 * 14 * 14, 10)), "the_resize"
    else:  # ai.onnx.ml
        h = net.add("Normalizer", net.add("Flatten", relu), name="the_scaler",
                    domain="ai.onnx.ml", norm="L2")
        model = net.model(net.gemm(h, 4 * 28 * 28, 10))
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
        return model, "the_scaler"
    return net.model(net.gemm(net.add("Flatten", h), 4 * 28 * 28, 10)), "the_norm"


@pytest.mark.parametrize("op,words", [
    ("LayerNormalization", ("mean and variance of each input",)),
    ("MeanVarianceNormalization", ("mean and variance of each input",)),
    ("LSTM", ("recurrent",)), ("GRU", ("recurrent",)), ("RNN", ("recurrent",)),
    ("Resize", ("resize the images before the model",)),
    ("Normalizer", ("ai.onnx.ml operators",)),
])
def test_refused(tmp_path: Path, op: str, words: tuple[str, ...]) -> None:
    """The CLI in a subprocess: one stderr line naming the node and its op type, exit 2,
    nothing written. Each file runs in onnxruntime: the refusal is ours, not a bad file."""
    import onnxruntime as ort

    model, node = _refused_model(op)
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    path = _save(model, tmp_path / f"{op}.onnx")
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "mnist_edge.cli", "import", str(path),
                           "--runs", str(runs)], capture_output=True, text=True, env=env,
                          timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("mnist-edge: error: ")
    for w in (f"node '{node}' ({op})", *words):
        assert w in lines[0], lines[0]
    assert not runs.exists() or not any(runs.iterdir())
