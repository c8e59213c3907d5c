"""QGraph storage and invariants: round trip, hash, and refusal of broken graphs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from mnist_edge import qgraph
from mnist_edge.errors import MnistEdgeError
from mnist_edge.testing import random_qgraph


def test_save_load_save_is_byte_identical(tmp_path: Path) -> None:
    graph = random_qgraph(0, "mixed")
    j1, n1 = qgraph.save(graph, tmp_path / "a")
    loaded = qgraph.load(tmp_path / "a")
    j2, n2 = qgraph.save(loaded, tmp_path / "b")
    assert j1.read_bytes() == j2.read_bytes()
    assert n1.read_bytes() == n2.read_bytes()
    assert loaded.content_hash() == graph.content_hash()
    for a, b in zip(graph.ops, loaded.ops, strict=True):
        assert a.to_json() == b.to_json()
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


def test_json_records_schema_version_and_hash(tmp_path: Path) -> None:
    graph = random_qgraph(1, "dense")
    json_path, _ = qgraph.save(graph, tmp_path / "g")
    doc = json.loads(json_path.read_text())
    assert doc["schema"] == qgraph.SCHEMA and doc["version"] == qgraph.SCHEMA_VERSION
    assert doc["hash"] == graph.content_hash()
    # Scales are written exactly: the float32 value survives the text round trip.
    assert all(float(np.float32(op["output"]["scale"])) == op["output"]["scale"]
               for op in doc["ops"])


def test_edited_file_fails_the_hash(tmp_path: Path) -> None:
    json_path, _ = qgraph.save(random_qgraph(0, "dense"), tmp_path / "g")
    doc = json.loads(json_path.read_text())
    doc["ops"][-1]["output"]["zero_point"] += 1  # still valid, but not what was hashed
    json_path.write_text(json.dumps(doc))
    with pytest.raises(MnistEdgeError, match="hash mismatch"):
        qgraph.load(tmp_path / "g")


def test_load_never_unpickles(tmp_path: Path) -> None:
    json_path, npz_path = qgraph.save(random_qgraph(0, "dense"), tmp_path / "g")
    np.savez(npz_path, **{"conv2d0.weight": np.array([object()], dtype=object)})
    with pytest.raises(MnistEdgeError):
        qgraph.load(tmp_path / "g")


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"schema": "other"}'])
def test_corrupt_json_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    json_path, _ = qgraph.save(random_qgraph(0, "dense"), tmp_path / "g")
    json_path.write_bytes(content)
    with pytest.raises(MnistEdgeError, match="g.qgraph.json"):
        qgraph.load(tmp_path / "g")


def _broken(mutate) -> qgraph.QGraph:
    graph = copy.deepcopy(random_qgraph(0, "mixed"))
    mutate(graph)
    return graph


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda g: setattr(g.ops[0].output, "scale", float("nan")), "positive and finite"),
    (lambda g: setattr(g.ops[0].output, "scale", -0.5), "positive and finite"),
    (lambda g: setattr(g.ops[0].output, "scale", 0.1), "not a float32"),
    (lambda g: setattr(g.ops[0].output, "zero_point", 200), "outside int8"),
    (lambda g: setattr(g.ops[0].output, "shape", (4, 27, 28)), "output shape"),
    (lambda g: g.ops[0].arrays.__setitem__("bias", g.ops[0].arrays["bias"].astype(np.int64)),
     "bias is int64"),
    (lambda g: g.ops[0].arrays["weight"].__setitem__((0, 0, 0, 0), -128), "symmetric"),
    (lambda g: setattr(g.ops[2], "kind", "hardmax"), "unsupported op kind"),
    (lambda g: setattr(g.ops[2], "kind", "softmax"), "has no onnx arithmetic"),
    (lambda g: setattr(g.ops[2].output, "zero_point", g.ops[2].output.zero_point + 1),
     "keep its input"),
    (lambda g: g.ops[-1].arrays["w_scale"].__setitem__(0, np.inf), "weight scales"),
])
def test_invariants_are_checked(mutate, message: str) -> None:
    with pytest.raises(MnistEdgeError, match=message):
        _broken(mutate).validate()


def test_accumulator_beyond_int32_is_refused() -> None:
    graph = copy.deepcopy(random_qgraph(0, "dense"))
    fc = graph.ops[3]  # linear with 507 inputs
    fc.arrays["weight"][:] = 127  # 507 * 127 * span (<= 255): under 2^24 alone
    fc.arrays["bias"][:] = 12_000_000  # over 2^24 with this bias: legal, summed exactly
    graph.validate()
    fc.arrays["bias"][:] = 2**31 - 1  # but an int32 accumulator cannot hold this
    with pytest.raises(MnistEdgeError, match="2\\^31"):
        graph.validate()


def test_find_in_run_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MnistEdgeError, match="no QGraph"):
        qgraph.load_run(tmp_path)
