"""The `litert` and `litert-ref` validate backends: LiteRT's optimized and reference kernels.

LiteRT is not the reference of the tflite arithmetic (TFLM is), so these backends are not
required to be exact: they must run, agree where LiteRT's kernels compute TFLM's numbers,
and report every disagreement as it is (the logits are LiteRT's own, never adjusted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_edge import qgraph
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers import import_tflite
from mnist_edge.pipeline import validation_line
from mnist_edge.probe_inputs import probe_batch
from mnist_edge.testing import random_inputs
from mnist_edge.validate import validate_backend

pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed: scripts/setup.sh")
from mnist_edge.targets import litert  # noqa: E402

MLPERF_AD = (Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mlperf-tiny"
             / "ad01_int8.tflite")


def _inputs(graph: qgraph.QGraph, n: int) -> np.ndarray:
    return np.concatenate([probe_batch(graph, 8, 0), random_inputs(graph, n - 8, seed=1)])


def _agreeing_fixtures() -> dict:
    """Fixtures where both of LiteRT's kernel sets compute TFLM's numbers on this machine
    (checked on 200 inputs each): a padded conv, a depthwise conv of multiplier 8, a padded
    average pool, and FULLY_CONNECTED + SOFTMAX."""
    import test_c_tflite
    import test_tflite_fixtures as fx

    return {"conv_same_s1": fx.CASES["conv_same_s1"],
            "depthwise_m8_s2": fx.CASES["depthwise_m8_s2"],
            "avg_pool_same": fx.CASES["avg_pool_same"],
            "fc_softmax_10": test_c_tflite.CASES["fc_softmax_10"]}


AGREEING = _agreeing_fixtures()


def _import(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    return import_tflite(path, tmp_path / "runs", None)[0]


@pytest.mark.parametrize("backend", ["litert", "litert-ref"])
@pytest.mark.parametrize("case", sorted(AGREEING))
def test_litert_agrees_where_its_kernels_are_tflms(case: str, backend: str,
                                                   tmp_path: Path) -> None:
    run_dir = _import(tmp_path, case, AGREEING[case]())
    graph = qgraph.load_run(run_dir)
    f = validate_backend(run_dir, backend, _inputs(graph, 48), None)
    assert f["exact_logit_fraction"] == 1.0 and f["exact_input_fraction"] == 1.0, f
    assert f["litert_kernels"] == ("reference" if backend == "litert-ref" else "optimized")


def test_litert_mismatches_are_reported_not_hidden(tmp_path: Path) -> None:
    """The MLPerf autoencoder: LiteRT's reference FULLY_CONNECTED differs from TFLM's on
    almost every input (BENCHMARKS). The backend returns LiteRT's own bytes, the figures
    count the differing inputs, and the validate line says so; tflm stays exact."""
    if not MLPERF_AD.exists():
        reason = f"{MLPERF_AD} is absent: the LiteRT mismatch test needs it"
        print(reason)
        pytest.skip(reason)
    run_dir = import_tflite(MLPERF_AD, tmp_path, None)[0]
    graph = qgraph.load_run(run_dir)
    x = _inputs(graph, 64)
    f = validate_backend(run_dir, "litert-ref", x, None)
    assert f["exact_input_fraction"] < 0.5 and f["max_abs_logit_diff"] >= 1, f
    assert "of inputs differ" in validation_line("litert-ref", {**f, "seconds": 0})
    assert validate_backend(run_dir, "tflm", x, None)["exact_logit_fraction"] == 1.0

    from mnist_edge.targets.litert import run_reference
    from mnist_edge.targets.tflm import from_tflite_output, to_tflite_input

    res = run_reference(run_dir, graph, x, {})
    model_in = to_tflite_input(graph, graph.input_to_int8(x), _tensor(MLPERF_AD, "in"))
    direct = litert.run_litert(litert.interpreter(MLPERF_AD, "reference"), model_in)
    np.testing.assert_array_equal(
        res.logits, from_tflite_output(graph, direct, _tensor(MLPERF_AD, "out")))


def _tensor(path: Path, which: str):
    from mnist_edge.importers.tflite_reader import read_tflite

    m = read_tflite(path)
    return m.tensors[m.inputs[0] if which == "in" else m.outputs[0]]


def test_bad_kernel_name_and_unloadable_model_are_one_line_errors() -> None:
    with pytest.raises(MnistEdgeError, match="LiteRT kernels must be one of"):
        litert.interpreter(b"", "fast")
    with pytest.raises(MnistEdgeError, match="LiteRT cannot load the model"):
        litert.interpreter(b"TFL3 not a model", "reference")


def test_float_edges_run_in_litert(tmp_path: Path) -> None:
    """A float-in, float-out file (QUANTIZE ... DEQUANTIZE) runs: the float output is
    quantized back with the file's own scale before the comparison."""
    import test_tflite_fixtures as fx

    run_dir = _import(tmp_path, "edges", fx.CASES["quantize_fc_dequantize"]())
    graph = qgraph.load_run(run_dir)
    f = validate_backend(run_dir, "litert-ref", _inputs(graph, 32), None)
    assert f["images"] == 32 and f["max_abs_logit_diff"] <= 1, f

