"""Proof that the integer-only requantization equals the float32 one for every int32 acc.

`requant.requantize_int` (what the C int mode, HLS and RTL implement) must give
exactly `requant.requantize_float` (what onnxruntime computes). Exhaustive over
edge cases (ties, powers of two, saturation, every shift) and dense ranges, then
random over millions of (acc, M, zero point) triples.
"""

from __future__ import annotations

import numpy as np
import pytest

from mnist_edge.requant import ACC_LIMIT, decompose, requantize_float, requantize_int

ACC_MAX = ACC_LIMIT - 1


def _both(acc: np.ndarray, mult: np.ndarray, zp: int) -> tuple[np.ndarray, np.ndarray]:
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.float32)
    m, shift = decompose(mult)
    return requantize_float(acc, mult, zp), requantize_int(acc, m, shift, zp)


def _assert_equal(acc: np.ndarray, mult: np.ndarray, zp: int) -> None:
    f, i = _both(acc, mult, zp)
    bad = np.flatnonzero(f != i)
    if len(bad):
        k = bad[0]
        a = np.broadcast_to(acc, f.shape)[k]
        mm = np.broadcast_to(mult, f.shape)[k]
        pytest.fail(f"{len(bad)} mismatches; first acc={a} M={mm!r} zp={zp}: "
                    f"float {f[k]} int {i[k]}")


def _special_accs() -> np.ndarray:
    """0, ±2^k, ±(2^k ± 1) and the extremes of the accumulator range."""
    p = np.int64(1) << np.arange(24, dtype=np.int64)
    vals = np.concatenate([[0, ACC_MAX], p, p - 1, p + 1, p[p > 1] * 3 // 2])
    vals = vals[(vals >= 0) & (vals <= ACC_MAX)]
    return np.unique(np.concatenate([vals, -vals]))


def _multipliers_every_shift() -> np.ndarray:
    """For every shift from -8 to 70: the smallest, largest and a few odd mantissas."""
    rng = np.random.default_rng(0)
    out = []
    for shift in range(-8, 71):
        odd = rng.integers(1 << 23, 1 << 24, 4)
        for m in (1 << 23, (1 << 24) - 1, (1 << 23) + 1, 0xC00000, *odd):
            v = float(m) * 2.0 ** -shift
            if np.isfinite(np.float32(v)) and np.float32(v) > 0:
                out.append(np.float32(v))
    return np.unique(np.array(out, dtype=np.float32))


def test_decompose_is_exact() -> None:
    mult = _multipliers_every_shift()
    m, shift = decompose(mult)
    assert np.all((m >= 1 << 23) & (m < 1 << 24))
    assert np.array_equal(np.ldexp(m.astype(np.float64), -shift), mult.astype(np.float64))


def test_every_shift_on_special_accumulators() -> None:
    accs = _special_accs()
    mult = _multipliers_every_shift()
    for zp in (-128, -5, 0, 77, 127):
        _assert_equal(accs[:, None], mult[None, :], zp)


def test_ties_and_near_ties() -> None:
    """acc chosen so that acc * M lands on or next to k + 1/2, for many M and k."""
    rng = np.random.default_rng(1)
    mult = np.concatenate([_multipliers_every_shift(),
                           np.float32(2.0) ** -rng.uniform(1, 24, 2000).astype(np.float32)])
    mult = mult[(mult > 1e-7) & (mult < 1e3)].astype(np.float32)
    k = np.arange(-300, 300, dtype=np.float64)
    centre = np.rint((k[None, :] + 0.5) / mult[:, None].astype(np.float64))
    for d in (-2, -1, 0, 1, 2):
        acc = np.clip(centre + d, -ACC_MAX, ACC_MAX).astype(np.int64)
        _assert_equal(acc, mult[:, None], 0)
        _assert_equal(acc, mult[:, None], -17)


def test_exact_power_of_two_ties() -> None:
    """M = 2^-s: acc * M is exactly a half-integer for acc = odd * 2^(s-1)."""
    for s in range(1, 25):
        mult = np.float32(2.0 ** -s)
        odd = np.arange(-(ACC_MAX >> s) | 1, ACC_MAX >> s, 2, dtype=np.int64)
        acc = odd[::max(1, len(odd) // 20000)] << (s - 1)
        acc = acc[np.abs(acc) <= ACC_MAX]
        _assert_equal(acc, np.array([mult]), 3)


def test_saturation() -> None:
    accs = np.concatenate([_special_accs(), np.arange(-2000, 2001)])
    for mult in (np.float32(1.0), np.float32(37.5), np.float32(0.999), np.float32(1e-3),
                 np.float32(2.0**20), np.float32(3e6)):
        for zp in (-128, 127, 0):
            f, i = _both(accs, np.array([mult]), zp)
            assert np.array_equal(f, i)
            assert f.min() == -128 or mult < 1e-2  # the range really saturates


def test_dense_ranges() -> None:
    """Every acc in |acc| < 2^20 for a handful of typical multipliers."""
    acc = np.arange(-(1 << 20) + 1, 1 << 20, dtype=np.int64)
    for mult in (np.float32(0.0123), np.float32(1 / 255), np.float32(3.1e-5),
                 np.float32(0.5), np.float32(2.0**-23 * 0xABCDEF)):
        _assert_equal(acc, np.array([mult]), -3)


def test_random_millions() -> None:
    """4 million random (acc, M, zp) over the whole |acc| < 2^24 range."""
    rng = np.random.default_rng(2024)
    for _ in range(4):
        n = 1_000_000
        # Log-uniform magnitudes reach small and large accumulators alike.
        mag = np.exp(rng.uniform(0, np.log(ACC_MAX), n)).astype(np.int64)
        acc = np.where(rng.random(n) < 0.5, -mag, mag)
        mult = np.exp(rng.uniform(np.log(1e-9), np.log(1e2), n)).astype(np.float32)
        zp = int(rng.integers(-128, 128))
        _assert_equal(acc, mult, zp)


def test_int32_accumulators_beyond_2_24() -> None:
    """Large layers: float32(acc) rounds acc to 24 bits; the integer path must do the same.

    Edge cases at every power of two from 2^24 to 2^31 (the values float32 conversion ties
    on: 2^k + odd multiples of half a step), then random int32 accumulators.
    """
    rng = np.random.default_rng(7)
    edges = []
    for k in range(24, 31):
        step = 1 << (k - 23)  # float32 spacing in [2^k, 2^(k+1))
        base = np.int64(1) << k
        for j in (0, 1, 2, 3, 1000, (1 << 23) - 1):
            v = base + j * step
            edges += [v - 1, v, v + 1, v + step // 2, v + step // 2 - 1, v + step // 2 + 1]
    edges.append(2**31 - 1)
    edges = np.array(edges, np.int64)
    edges = np.unique(np.concatenate([edges, -edges, [-(2**31)]]))
    mults = _multipliers_every_shift()
    for zp in (-128, 0, 37):
        _assert_equal(edges[:, None], mults[None, :], zp)
    for _ in range(5):
        acc = rng.integers(-(2**31), 2**31, 1_000_000, dtype=np.int64)
        mult = rng.choice(mults, len(acc))
        _assert_equal(acc, mult, int(rng.integers(-128, 128)))


def near_half_wide_cases(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Accumulators beyond 2^24 with M chosen so that acc * M lands near k + 1/2: where
    skipping the rounding of acc to 24 bits would flip the result (a few in a thousand)."""
    rng = np.random.default_rng(seed)
    acc = rng.integers(1 << 24, 1 << 31, n, dtype=np.int64)
    mult = ((rng.integers(0, 127, n) + 0.5) / acc).astype(np.float32)
    sign = rng.choice([-1, 1], n)
    return acc * sign, mult


def test_wide_accumulators_near_ties() -> None:
    from mnist_edge.requant import _round_shift_rne, round_to_24_bits

    acc, mult = near_half_wide_cases(200_000)
    _assert_equal(acc, mult, 0)
    m, shift = decompose(mult)
    naive = np.clip(_round_shift_rne(round_to_24_bits(acc * m), shift), -128, 127)
    assert np.sum(naive != requantize_float(acc, mult, 0)) > 10  # the cases do matter
