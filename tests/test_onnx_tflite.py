"""The ONNX export of the tflite arithmetic: standard integer ops, exact in onnxruntime.

* each building block of `backends/onnx_fixed` (SRDHM, RoundingDivideByPOT, the int32
  wrap, MultiplyByQuantizedMultiplier, the saturating shift, gemmlowp's reciprocal, the
  average pool's rounded division) against `requant.py` / `gemmlowp.py` on sweeps that hold
  INT32_MIN * INT32_MIN, every shift and exact ties of both signs;
* every single-op TFLite fixture that imports (those of test_c_tflite, plus the dilated
  conv) against golden, with uint8 and int8 activations;
* the four MLPerf Tiny models on a few hundred structured and random inputs;
* what is refused by name: the QDQ form, before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import MODELS, mlperf_run
from onnx import TensorProto, helper

from mnist_edge import golden, qgraph
from mnist_edge.backends import onnx as onnx_backend
from mnist_edge.backends import onnx_fixed as fx
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers import import_tflite
from mnist_edge.ops import gemmlowp as g
from mnist_edge.probe_inputs import probe_batch
from mnist_edge.requant import (
    INT32_MAX,
    INT32_MIN,
    _wrap32,
    multiply_by_quantized_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from mnist_edge.targets import onnxrt
from mnist_edge.testing import random_inputs
from mnist_edge.validate import validate_backend

RNG = np.random.default_rng(24)


# ------------------------------------------------------------------ the building blocks

def _run_block(block, *inputs: np.ndarray) -> np.ndarray:
    """One block on int64 graph inputs x0, x1..., run in onnxruntime's CPU provider."""
    b = onnx_backend._Builder()
    names = [f"x{k}" for k in range(len(inputs))]
    out = block(b, *names)
    b.node("Identity", [out], "y", "output")
    graph = helper.make_graph(
        b.nodes, "block",
        [helper.make_tensor_value_info(n, TensorProto.INT64, list(x.shape))
         for n, x in zip(names, inputs, strict=True)],
        [helper.make_tensor_value_info("y", TensorProto.INT64,
                                       [None] * max(x.ndim for x in inputs))], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = onnx_backend.IR_VERSION
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {n: x.astype(np.int64) for n, x in zip(names, inputs, strict=True)})[0]


def _int32_sweep(n_random: int = 3000) -> np.ndarray:
    """The int32 limits, powers of two and their neighbours, both signs, and random values."""
    p = np.int64(1) << np.arange(31)
    edges = [0, 1, -1, INT32_MAX, INT32_MIN, INT32_MIN + 1, INT32_MAX - 1, 1 << 30,
             -(1 << 30), (1 << 30) - 1, 1 - (1 << 30)]
    return np.unique(np.concatenate([edges, p, -p, p - 1, 1 - p, p + 1, -p - 1,
                                     RNG.integers(INT32_MIN, INT32_MAX, n_random,
                                                  endpoint=True)])).astype(np.int64)


def test_srdhm_equals_requant_including_int32_min_squared() -> None:
    v = _int32_sweep(400)
    a, m = (x.ravel() for x in np.meshgrid(v, v))  # every pair: ~300,000 products
    assert np.any((a == INT32_MIN) & (m == INT32_MIN))
    got = _run_block(lambda b, x, y: fx.srdhm(b, x, y, "s"), a, m)
    want = saturating_rounding_doubling_high_mul(a, m)
    np.testing.assert_array_equal(got, want)
    assert got[(a == INT32_MIN) & (m == INT32_MIN)][0] == INT32_MAX


def test_rounding_divide_by_pot_every_exponent_with_ties() -> None:
    x = _int32_sweep(2000)
    for e in range(0, 32):
        ties = (2 * RNG.integers(-(1 << 20), 1 << 20, 50) + 1) << max(e - 1, 0)
        xs = np.concatenate([x, ties[(ties >= INT32_MIN) & (ties <= INT32_MAX)], -ties])
        got = _run_block(lambda b, v, e=e: fx.rdbpot(b, v, e, "r"), xs)
        np.testing.assert_array_equal(got, rounding_divide_by_pot(xs, e), err_msg=f"e={e}")


def test_wrap32_and_saturating_shift() -> None:
    big = np.concatenate([_int32_sweep(500) * 3, [1 << 31, 1 << 32, -(1 << 31) - 1,
                                                  (1 << 40) + 5, -(1 << 40) - 5]])
    np.testing.assert_array_equal(_run_block(lambda b, v: fx.wrap32(b, v, "w"), big),
                                  _wrap32(big))
    x = _int32_sweep(2000)
    for k in (-7, -1, 1, 2, 4, 12):
        got = _run_block(lambda b, v, k=k: fx.sat_mul_pot(b, v, k, "p"), x)
        np.testing.assert_array_equal(got, g.sat_mul_pot(x, k), err_msg=f"exponent {k}")


def test_multiply_by_quantized_multiplier_every_shift() -> None:
    """Per-channel (m, shift) for every shift -31..30 on one tensor, wrap included."""
    x = _int32_sweep(300)
    ms = np.array([0, 1, 1 << 30, (1 << 30) + 1, INT32_MAX, 1518500250,
                   *RNG.integers(1 << 30, 1 << 31, 4)], np.int64)
    shifts = np.arange(-31, 31)
    m, s = (v.ravel() for v in np.meshgrid(ms, shifts))
    got = _run_block(lambda b, v: fx.mbqm(b, v, m[:, None], s[:, None], "q", wrap=True),
                     np.broadcast_to(x, (len(m), len(x))).copy())
    want = multiply_by_quantized_multiplier(x[None, :], m[:, None], s[:, None])
    np.testing.assert_array_equal(got, want)


def test_reciprocal_and_clz_equal_gemmlowp() -> None:
    a = np.concatenate([[0, 1, 2, INT32_MAX, INT32_MAX - 1, 1 << 30, (1 << 30) - 1],
                        RNG.integers(0, INT32_MAX, 20000)]).astype(np.int64)[:, None]
    got = _run_block(lambda b, v: fx.one_over_one_plus_x(b, v, "r"), a)
    np.testing.assert_array_equal(got, g.one_over_one_plus_x_for_x_in_0_1(a))
    # GetReciprocal over sums of exps: Q12.19, from one term (2**19) up to 2**31 - 1
    s = np.concatenate([[1 << 19, (1 << 19) + 1, INT32_MAX, (1 << 30), (1 << 30) - 1],
                        RNG.integers(1 << 19, INT32_MAX, 5000)]).astype(np.int64)[:, None]
    got_scale = _run_block(lambda b, v: fx.get_reciprocal(b, v, 12, "g")[0], s)
    got_bits = _run_block(lambda b, v: fx.get_reciprocal(b, v, 12, "g")[1], s)
    want_scale, want_bits = g.get_reciprocal(s, 12)
    np.testing.assert_array_equal(got_scale, want_scale)
    np.testing.assert_array_equal(got_bits, want_bits)


def test_average_pool_division_rounds_half_away_from_zero() -> None:
    """Σ / count as TFLM's AveragePool: (acc + count/2) / count, or (acc - count/2) / count
    for acc <= 0, in C's truncating division."""
    counts = np.arange(1, 50, dtype=np.int64)
    acc = np.arange(-128 * 49, 127 * 49 + 1, dtype=np.int64)
    c = np.repeat(counts, len(acc))[:, None]
    x = np.tile(acc, len(counts))[:, None]
    got = _run_block(lambda b, v, d, h: fx.round_divide(b, v, d, h, "a"), x, c, c // 2)
    half = c // 2
    want = np.where(x > 0, (x + half) // c, -((half - x) // c))
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ whole graphs

def _inputs(graph: qgraph.QGraph, n: int, seed: int = 0) -> np.ndarray:
    return np.concatenate([probe_batch(graph, min(8, n), seed),
                           random_inputs(graph, n - min(8, n), seed=seed + 1)])


def _onnx_logits(graph: qgraph.QGraph, x: np.ndarray, path: Path,
                 activations: str = "uint8") -> np.ndarray:
    onnx_backend.export_int8(graph, path, activations)
    return onnxrt.run_logits(onnxrt.session(path), graph, x)


def _fixture_cases() -> dict:
    """Every single-op fixture that imports as a QGraph (test_c_tflite's list, which adds
    two-branch ADD/SUB/MUL/CONCATENATION, fused and padded pools and FC + SOFTMAX), plus
    the dilated conv the C backend refuses."""
    import test_c_tflite
    import test_tflite_fixtures

    return {**test_c_tflite.CASES, "conv_dilated": test_tflite_fixtures.CASES["conv_dilated"]}


CASES = _fixture_cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_fixture_exact(case: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(CASES[case]())
    graph = qgraph.load_run(import_tflite(path, tmp_path / "runs", None)[0])
    assert graph.arithmetic == "tflite"
    x = _inputs(graph, 64, seed=len(case))
    want = golden.run_int8(graph, x)
    for activations in ("uint8", "int8"):
        got = _onnx_logits(graph, x, tmp_path / f"{activations}.onnx", activations)
        bad = np.flatnonzero(np.any(got != want, axis=1))
        assert not len(bad), (f"{case} ({activations}): {len(bad)}/{len(x)} inputs differ; "
                              f"first {bad[0]}: onnx {got[bad[0]][:12]} golden "
                              f"{want[bad[0]][:12]}")



@pytest.mark.parametrize("key", sorted(MODELS))
def test_mlperf_models_exact_in_onnxruntime(mlperf_runs, key: str, tmp_path: Path) -> None:
    graph = qgraph.load_run(mlperf_run(mlperf_runs, key))
    x = _inputs(graph, 200, seed=7)
    got = _onnx_logits(graph, x, tmp_path / "m.onnx")
    want = golden.run_int8(graph, x)
    bad = np.flatnonzero(np.any(got != want, axis=1))
    assert not len(bad), f"{key}: {len(bad)}/{len(x)} inputs differ; first {bad[0]}"


def test_validate_backend_takes_the_integer_export(mlperf_runs) -> None:
    """`validate --backend onnxruntime` on a tflite run: exports, checks, exact."""
    run_dir = mlperf_run(mlperf_runs, "ad")
    graph = qgraph.load_run(run_dir)
    f = validate_backend(run_dir, "onnxruntime", _inputs(graph, 40), None)
    assert f["exact_logit_fraction"] == 1.0 and f["format"] == "integer", f
    meta = {p.key: p.value for p in onnx.load(str(run_dir / "model.int8.onnx")).metadata_props}
    assert meta["arithmetic"] == "tflite"
    ops = {n.op_type for n in onnx.load(str(run_dir / "model.int8.onnx")).graph.node}
    assert "ConvInteger" in ops and not ops & {"QLinearConv", "QuantizeLinear"}


def test_qdq_form_is_refused_by_name_and_writes_nothing(mlperf_runs, tmp_path: Path) -> None:
    import shutil

    run_dir = tmp_path / "ad"
    shutil.copytree(mlperf_run(mlperf_runs, "ad"), run_dir)
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(MnistEdgeError, match="QDQ form cannot express the tflite arithmetic"):
        onnx_backend.export_run(run_dir, "qdq")
    assert sorted(p.name for p in run_dir.iterdir()) == before
    written = onnx_backend.export_run(run_dir)  # the default form: the int8 model only
    assert [p.name for p in written] == [onnx_backend.INT8_FILE]

