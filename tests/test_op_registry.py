"""The op registry and the graph IR: one definition per op kind, every backend lowers each.

Also the schema-v2 graph itself (named inputs, DAG order, version-1 files still load),
the attribute checks that turn a hostile file into one line, and the integer semantics
of `add` and `concat`, pinned against onnxruntime through the exported standard ops.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mnist_edge import fgraph, golden, qgraph
from mnist_edge.backends import onnx as onnx_backend
from mnist_edge.errors import MnistEdgeError
from mnist_edge.ops import ONNX_KINDS, REGISTRY
from mnist_edge.qgraph import QTensor
from mnist_edge.testing import random_dag_fgraph, random_dag_qgraph, random_pixels, random_qgraph

# Every backend that lowers QGraph ops, as "module: lowering table". A backend may also
# list kinds it refuses (with the reason) in REFUSED; those named in EVERY_KIND may not.
BACKENDS = {
    "onnx": "mnist_edge.backends.onnx",
    "c": "mnist_edge.backends.c",
    "hls": "mnist_edge.backends.hls",
    "rtl": "mnist_edge.backends.rtl",
}
EVERY_KIND = ("onnx", "c", "hls")  # the backends the import issue requires for every op
TFLITE_TOO = ("onnx", "hls")  # backends that lower tflite-only kinds (sub, mul, softmax) too


def test_every_tflite_kind_has_a_tflite_export_lowering() -> None:
    """`export tflite` writes every kind that exists in the tflite arithmetic."""
    from mnist_edge.backends import tflite

    kinds = {k for k, spec in REGISTRY.items() if spec.tflite is not None}
    assert kinds - set(tflite.LOWERING) == set()
    assert set(tflite.LOWERING) <= kinds, "a lowering for a kind with no tflite arithmetic"


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_registered_kind_has_a_lowering(backend: str) -> None:
    try:
        module = importlib.import_module(BACKENDS[backend])
    except ModuleNotFoundError:
        pytest.skip(f"backend {backend} is not in this tree")
    lowered = set(module.LOWERING)
    refused = dict(getattr(module, "REFUSED", {}))
    if backend in EVERY_KIND:
        assert not refused, f"{backend} refuses {sorted(refused)}"
    # Every backend owes a lowering to each kind of the onnx arithmetic; those that also
    # implement the tflite arithmetic, to every kind.
    missing = sorted(set(ONNX_KINDS) - lowered - set(refused))
    if backend in TFLITE_TOO:  # these implement both arithmetics: every kind
        missing = sorted(set(REGISTRY) - lowered - set(refused))
    assert not missing, f"{backend} has no lowering for {missing}"
    assert not lowered - set(REGISTRY), "lowering for an unregistered kind"
    if backend == "c":  # kinds map to planner steps; each step kind needs its own lowering
        steps = set(module.LOWERING.values()) - {"flatten"}
        assert steps <= set(module.STEP_LOWERING), sorted(steps - set(module.STEP_LOWERING))


def test_registry_entries_are_complete() -> None:
    for kind, spec in REGISTRY.items():
        assert spec.kind == kind and spec.summary and spec.arity >= 0
        assert all(np.dtype(d) for d in spec.arrays.values())
        assert all(a.what for a in spec.attrs.values())


def test_v2_round_trip_keeps_the_graph(tmp_path: Path) -> None:
    graph = random_dag_qgraph(0)
    assert not graph.is_chain
    json_path, _ = qgraph.save(graph, tmp_path / "g")
    doc = json.loads(json_path.read_text())
    assert doc["version"] == 2
    assert [o["inputs"] for o in doc["ops"]][4] == ["p0", "g1"]
    loaded = qgraph.load(tmp_path / "g")
    pixels = random_pixels(50, 3)
    np.testing.assert_array_equal(golden.run_int8(loaded, pixels),
                                  golden.run_int8(graph, pixels))


def test_version_1_files_still_load(tmp_path: Path) -> None:
    """A v1 file (a chain, no inputs) written as mnist-edge 0.1 wrote it."""
    graph = random_qgraph(0, "mixed")
    json_path, _ = qgraph.save(graph, tmp_path / "g")
    doc = json.loads(json_path.read_text())
    doc["version"] = 1
    for o in doc["ops"]:
        del o["inputs"]
    doc.pop("hash")
    arrays = [(f"{op.name}.{k}", op.arrays[k]) for op in graph.ops for k in sorted(op.arrays)]
    doc["hash"] = qgraph._hash(doc, arrays)
    json_path.write_text(qgraph.canonical_json(doc))
    loaded = qgraph.load(tmp_path / "g")
    assert loaded.is_chain
    assert [op.inputs for op in loaded.ops] == [op.inputs for op in graph.ops]


def _rehashed(tmp_path: Path, mutate) -> Path:
    """Save a graph, mutate its JSON, recompute the hash so only the registry can object."""
    graph = random_dag_qgraph(1)
    json_path, _ = qgraph.save(graph, tmp_path / "g")
    doc = json.loads(json_path.read_text())
    mutate(doc)
    doc.pop("hash")
    arrays = [(f"{op.name}.{k}", op.arrays[k]) for op in graph.ops for k in sorted(op.arrays)]
    doc["hash"] = qgraph._hash(doc, arrays)
    json_path.write_text(json.dumps(doc))
    return tmp_path / "g"


def _attrs(doc: dict, name: str) -> dict:
    return next(o for o in doc["ops"] if o["name"] == name)["attrs"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: _attrs(d, "c0").__setitem__("stride", [0, 0]), "'stride' is \\[0, 0\\]"),
    (lambda d: _attrs(d, "c0").__setitem__("kernel", "3x3"), "'kernel' is '3x3'"),
    (lambda d: _attrs(d, "c0").__setitem__("padding", [1, 1]), "four integers"),
    (lambda d: _attrs(d, "c0").__setitem__("padding", [1, 1, -1, 1]), "four integers"),
    (lambda d: _attrs(d, "c0").__setitem__("groups", True), "'groups'"),
    (lambda d: _attrs(d, "c0").pop("kernel"), "'kernel' is missing"),
    (lambda d: _attrs(d, "p0").__setitem__("dilation", [2, 2]), "unknown attribute"),
    (lambda d: d["ops"][4].__setitem__("inputs", ["p0"]), "reads 1 input"),
    (lambda d: d["ops"][4].__setitem__("inputs", ["p0", "nowhere"]), "no earlier op"),
    (lambda d: d["ops"][4].__setitem__("inputs", ["p0", "cat"]), "no earlier op"),
    (lambda d: d["ops"][0]["output"].__setitem__("zero_point", -127.5), "integer"),
    (lambda d: d["ops"][0]["output"].__setitem__("shape", [4, 28.0, 28]), "positive integers"),
    (lambda d: d.__setitem__("ops", {"c0": d["ops"][0]}), "must be a list"),
    (lambda d: d.__setitem__("version", "2"), "schema version '2'"),
])
def test_hostile_attributes_are_one_line_errors(tmp_path: Path, mutate, message: str) -> None:
    stem = _rehashed(tmp_path, mutate)
    with pytest.raises(MnistEdgeError, match=message) as info:
        qgraph.load(stem)
    assert "\n" not in str(info.value)


def test_dead_ops_are_refused() -> None:
    graph = copy.deepcopy(random_qgraph(0, "dense"))
    spare = copy.deepcopy(graph.ops[0])
    spare.name = "spare"  # a second conv on the input that nothing reads
    graph.ops.insert(1, spare)
    with pytest.raises(MnistEdgeError, match="never read"):
        graph.validate()


def _session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("activations", ["uint8", "int8"])
@pytest.mark.parametrize("qdq", [False, True])
def test_dag_export_is_exact_in_onnxruntime(activations: str, qdq: bool) -> None:
    for seed in range(3):
        graph = random_dag_qgraph(seed)
        pixels = random_pixels(300, seed + 10)
        model = onnx_backend.build_int8(graph, activations, qdq)
        out = _session(model).run(["logits"], {"pixels": pixels[:, None]})[0]
        np.testing.assert_array_equal(out, golden.run_int8(graph, pixels))


def _add_graph(sa: float, za: int, sb: float, zb: int, sy: float, zy: int, seed: int = 0):
    """input -> two LUTs giving arbitrary (scale, zp) tensors -> add.

    The LUTs are random permutations, so the 256 pixel values probe 256 (q_a, q_b) pairs.
    """
    from mnist_edge.qgraph import INPUT_SCALE, INPUT_ZERO_POINT, QGraph, QOp

    shape = (1, 28, 28)
    rng = np.random.default_rng(seed)
    ident = rng.permutation(np.arange(-128, 128)).astype(np.int8)
    swap = rng.permutation(np.arange(-128, 128)).astype(np.int8)
    ops = [QOp("a", "lut", QTensor(shape, sa, za), {}, {"table": ident}, ["input"]),
           QOp("b", "lut", QTensor(shape, sb, zb), {}, {"table": swap}, ["input"]),
           QOp("sum", "add", QTensor(shape, sy, zy), {}, {}, ["a", "b"]),
           QOp("flat", "flatten", QTensor((784,), sy, zy), {}, {}, ["sum"])]
    return QGraph("add-probe", QTensor(shape, INPUT_SCALE, INPUT_ZERO_POINT), ops)


@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_add_semantics_match_onnxruntime(activations: str) -> None:
    """200 scale/zero-point draws x 256 input pairs each, against the exported standard ops."""
    rng = np.random.default_rng(0)
    pixels = np.arange(256, dtype=np.uint8).repeat(4)[:784].reshape(1, 28, 28)
    for draw in range(200):
        s = [float(np.float32(np.exp(rng.uniform(-6, 1)))) for _ in range(3)]
        z = [int(v) for v in rng.integers(-128, 128, 3)]
        graph = _add_graph(s[0], z[0], s[1], z[1], s[2], z[2], draw)
        graph.validate()
        model = onnx_backend.build_int8(graph, activations)
        out = _session(model).run(["logits"], {"pixels": pixels[:, None]})[0]
        np.testing.assert_array_equal(out, golden.run_int8(graph, pixels))


def test_add_tracks_the_real_sum() -> None:
    """The integer weights approximate the scale ratio: the result is within one step."""
    graph = _add_graph(0.02, 3, 0.0071, -20, 0.03, 5)
    pixels = random_pixels(20, 0)
    _, outs = golden.run_int8(graph, pixels, trace=True)
    a, b, y = (golden.dequantize(o, op.output) for o, op in zip(outs[:3], graph.ops[:3],
                                                                 strict=True))
    inside = np.abs(a + b) < 0.03 * 120
    assert np.all(np.abs((a + b) - y)[inside] <= 0.03 * 0.5 + 1e-6)


def test_float_graph_dag_runs_and_round_trips(tmp_path: Path) -> None:
    fg = random_dag_fgraph(2)
    fgraph.save(fg, tmp_path / "f")
    loaded = fgraph.load(tmp_path / "f.fgraph.json")
    x = random_pixels(10, 1)[:, None] / np.float32(255.0)
    np.testing.assert_array_equal(fgraph.run_float(loaded, x), fgraph.run_float(fg, x))
