"""TFLM's integer arithmetic and int8 kernels in NumPy equal TensorFlow Lite Micro, bit for bit.

The requantization primitives against a scalar transcription of TFLM's C++ (Python ints,
no vectorization), then whole MLPerf Tiny models run by `tflite_walk` against TFLM's own
interpreter on structured and seeded random inputs (scripts/tflm_parity.py runs 10,000).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tflite_walk import run

from mnist_edge.importers.tflite_reader import read_tflite
from mnist_edge.probe_inputs import probe_inputs
from mnist_edge.requant import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

MLPERF = Path(__file__).resolve().parent.parent.parent / "shared" / "models" / "mlperf-tiny"
MODELS = ("pretrainedResnet_quant.tflite", "kws_ref_model.tflite", "vww_96_int8.tflite",
          "ad01_int8.tflite")
INPUTS_PER_MODEL = 64


# ------------------------------------------------------ scalar transcriptions of the C++
def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _wrap(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def _srdhm(a: int, b: int) -> int:
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _wrap(_c_div(ab + nudge, 1 << 31))


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def _mbqm(x: int, m: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return _rdbpot(_srdhm(_wrap(x * (1 << left)), m), right)


def test_quantize_multiplier_edges() -> None:
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(2.0 ** -32) == (1 << 30, -31)
    assert quantize_multiplier(2.0 ** -33) == (0, 0)  # shift below -31 flushes to zero
    # A mantissa that rounds up to 2**31 is halved and the exponent raised.
    assert quantize_multiplier(1.0 - 2.0 ** -40) == (1 << 30, 1)
    # Round half away from zero on an exact tie: q * 2**31 = 2**30 + 0.5.
    assert quantize_multiplier((2 ** 30 + 0.5) / 2 ** 31) == (2 ** 30 + 1, 0)
    rng = np.random.default_rng(0)
    for real in rng.uniform(1e-9, 4.0, 2000):
        m, s = quantize_multiplier(real)
        q, e = math.frexp(real)
        assert s == e or (m == 1 << 30 and s == e + 1)
        assert abs(m * 2.0 ** (s - 31) - real) <= 2.0 ** (s - 32)


def test_primitives_match_scalar_cxx() -> None:
    rng = np.random.default_rng(1)
    edge = [0, 1, -1, 2, -2, 3, -3, (1 << 31) - 1, -(1 << 31), 1 << 30, -(1 << 30), 12345, -12345]
    a = np.concatenate([edge, rng.integers(-(1 << 31), 1 << 31, 3000)])
    b = np.concatenate([edge[::-1], rng.integers(-(1 << 31), 1 << 31, 3000)])
    got = saturating_rounding_doubling_high_mul(a, b)
    assert got.tolist() == [_srdhm(int(x), int(y)) for x, y in zip(a, b, strict=True)]
    e = rng.integers(0, 32, len(a))
    got = rounding_divide_by_pot(a, e)
    assert got.tolist() == [_rdbpot(int(x), int(k)) for x, k in zip(a, e, strict=True)]


def test_multiply_by_quantized_multiplier_matches_scalar_cxx() -> None:
    rng = np.random.default_rng(2)
    acc = np.concatenate([rng.integers(-(1 << 24), 1 << 24, 4000),
                          rng.integers(-(1 << 31), 1 << 31, 1000), [0, -1, 1]])
    reals = rng.uniform(1e-6, 3.0, len(acc)) ** 2
    pairs = [quantize_multiplier(r) for r in reals]
    m = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs])
    got = multiply_by_quantized_multiplier(acc, m, s)
    want = [_mbqm(int(x), int(mm), int(ss)) for x, mm, ss in zip(acc, m, s, strict=True)]
    assert got.tolist() == want


# ------------------------------------------------------------------- whole models vs TFLM
@pytest.mark.parametrize("name", MODELS)
def test_mlperf_model_equals_tflm(name: str) -> None:
    path = MLPERF / name
    if not path.is_file():
        print(f"skipped: {path} not found (the MLPerf Tiny models live in ../shared)")
        pytest.skip(f"{path} not found")
    pytest.importorskip("tflite_micro")
    from mnist_edge.targets.tflm import run_tflm

    model = read_tflite(path)
    t_in = model.tensors[model.inputs[0]]
    x = probe_inputs(t_in.shape[1:], INPUTS_PER_MODEL, seed=7,
                     zero_point=int(t_in.quantization.zero_point[0]))
    ours = run(model, x)
    ref = run_tflm(path, x)
    bad = np.flatnonzero(np.any((ours != ref).reshape(len(x), -1), axis=1))
    assert not len(bad), (f"{name}: {len(bad)} of {len(x)} inputs differ from TFLM; first "
                          f"input {bad[0]}: ours {ours[bad[0]].ravel()[:12]} "
                          f"tflm {ref[bad[0]].ravel()[:12]}")
