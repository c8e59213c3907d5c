"""The requantization contract, in one place.

Every backend (golden, onnxruntime, C, HLS, RTL) must turn an int32
accumulator into int8 exactly as these functions do. Two equivalent forms:

* float path: ``y = sat8(rne(float32(acc) * M) + z_y)`` with
  ``M = float32(float32(x_scale * w_scale) / y_scale)`` — what onnxruntime's
  QLinearConv computes;
* integer path: ``M = m * 2**-shift`` with a 24-bit integer ``m``; the exact
  product ``acc * m`` is rounded to 24 significant bits (what the float32
  multiply does), then shifted right with round-half-to-even. No FPU needed.

Both agree for every int32 accumulator (tests/test_int_requant.py proves it): where
|acc| >= 2**24, float32(acc) itself rounds to 24 significant bits (to nearest, ties to
even), so the integer path first rounds `acc` the same way.
"""

from __future__ import annotations

import numpy as np

ACC_LIMIT = 1 << 24  # |acc| below this keeps float32(acc) exact (and float32 BLAS sums exact)
INT8_MIN, INT8_MAX = -128, 127


def multiplier(x_scale: float, w_scale: np.ndarray | float, y_scale: float) -> np.ndarray:
    """M per output channel, rounded in float32 exactly as onnxruntime does."""
    xs = np.float32(x_scale)
    ws = np.asarray(w_scale, dtype=np.float32)
    ys = np.float32(y_scale)
    return np.atleast_1d((xs * ws).astype(np.float32) / ys).astype(np.float32)


def requantize_float(acc: np.ndarray, mult: np.ndarray, zero_point: int) -> np.ndarray:
    """Float path. `mult` broadcasts against `acc` (channel axis placed by the caller)."""
    prod = acc.astype(np.float32) * np.asarray(mult, dtype=np.float32)
    y = np.rint(prod).astype(np.int64) + int(zero_point)
    return np.clip(y, INT8_MIN, INT8_MAX).astype(np.int8)


def decompose(mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split float32 multipliers into (m, shift) with M == m * 2**-shift, 2**23 <= m < 2**24.

    A zero multiplier (a dead channel) gives m = 0, shift = 0.
    """
    mult = np.asarray(mult, dtype=np.float32)
    if not np.all(np.isfinite(mult)) or np.any(mult < 0):
        raise ValueError("requantization multipliers must be finite and non-negative")
    mant, exp = np.frexp(mult.astype(np.float64))  # mult = mant * 2**exp, 0.5 <= mant < 1
    m = np.rint(mant * (1 << 24)).astype(np.int64)  # exact: float32 has 24 significant bits
    shift = (24 - exp).astype(np.int64)
    shift[m == 0] = 0
    return m, shift


def _round_shift_rne(value: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """value / 2**shift rounded half to even, for int64 arrays and shift >= 0."""
    shift = np.broadcast_to(shift, value.shape)
    out = value.copy()
    pos = shift > 0
    if np.any(pos):
        v = value[pos]
        s = shift[pos]
        q = v >> s  # floor division
        rem = v - (q << s)
        half = np.int64(1) << (s - 1)
        up = (rem > half) | ((rem == half) & ((q & 1) == 1))
        out[pos] = q + up
    return out


def round_to_24_bits(p: np.ndarray) -> np.ndarray:
    """Round int64 values to 24 significant bits, half to even (the float32 rounding)."""
    mag = np.abs(p)
    bits = np.zeros_like(mag)
    nz = mag > 0
    bits[nz] = np.floor(np.log2(mag[nz].astype(np.float64))).astype(np.int64) + 1
    # log2 in float64 can be off by one near powers of two: correct it exactly.
    too_big = (bits > 0) & ((np.int64(1) << np.maximum(bits - 1, 0)) > mag)
    bits[too_big] -= 1
    too_small = (bits < 62) & ((np.int64(1) << np.minimum(bits, 62)) <= mag) & nz
    bits[too_small] += 1
    drop = np.maximum(bits - 24, 0)
    rounded = _round_shift_rne(mag, drop) << drop
    return np.where(p < 0, -rounded, rounded)


def requantize_int(acc: np.ndarray, m: np.ndarray, shift: np.ndarray,
                   zero_point: int) -> np.ndarray:
    """Integer-only path; bit-identical to `requantize_float` for every int32 `acc`."""
    p = round_to_24_bits(acc.astype(np.int64)) * np.asarray(m, dtype=np.int64)
    p = round_to_24_bits(p)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(-shift, 0)
    right = np.minimum(np.maximum(shift, 0), 62)  # |p| < 2**62: larger shifts round to 0
    y = _round_shift_rne(p << left, np.broadcast_to(right, p.shape)) + int(zero_point)
    return np.clip(y, INT8_MIN, INT8_MAX).astype(np.int8)
