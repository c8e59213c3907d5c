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


# ----------------------------------------------------------------------------------------
# The `tflite` arithmetic: TensorFlow Lite Micro's integer requantization, bit for bit.
#
# A real multiplier M becomes (m, shift) with M ~= m * 2**(shift - 31), m a Q31 int32
# (QuantizeMultiplier). An int32 accumulator is scaled with MultiplyByQuantizedMultiplier:
# a saturating rounding doubling high multiply by m, then a rounding (half away from zero)
# divide by 2**-shift. All functions below work on NumPy int64 arrays holding int32 values,
# vectorized, and reproduce TFLM's C++ including its int32 wrap-around where TFLM has one.
# ----------------------------------------------------------------------------------------

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap of int64 values (what C++ int32 arithmetic does)."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier: the Q31 mantissa and the exponent of a real multiplier.

    frexp of the double gives q in [0.5, 1) and the exponent; q * 2**31 is rounded half
    away from zero (TfLiteRound); a mantissa that rounds up to 2**31 is halved and the
    exponent raised; an exponent below -31 flushes the multiplier to (0, 0). The result
    satisfies real ~= m * 2**(shift - 31). The default (double-rounding) build does not
    cap the shift; TFLITE_SINGLE_ROUNDING would cap it at 30.
    """
    import math

    real = float(real)
    if real == 0.0:
        return 0, 0
    if not math.isfinite(real):
        raise ValueError(f"requantization multiplier {real!r} is not finite")
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5))  # TfLiteRound: half away from zero
    q_fixed = -q_fixed if q < 0 else q_fixed
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul (ARM VQRDMULH) on int32 values.

    (a * b + nudge) / 2**31 with C++ truncating division, nudge = 2**30 for a non-negative
    product and 1 - 2**30 otherwise; INT32_MIN * INT32_MIN saturates to INT32_MAX.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b  # |ab| <= 2**62: exact in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    q = np.abs(num) >> 31  # truncating division toward zero
    q = np.where(num < 0, -q, q)
    return np.where(overflow, INT32_MAX, _wrap32(q))


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2**exponent rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(acc: np.ndarray, m: np.ndarray | int,
                                     shift: np.ndarray | int) -> np.ndarray:
    """TFLM's MultiplyByQuantizedMultiplier(int32 x, int32 m, int shift), default build.

    This is the double-rounding variant (SaturatingRoundingDoublingHighMul, then
    RoundingDivideByPOT) that TFLM and CMSIS-NN use unless TFLITE_SINGLE_ROUNDING=1, which
    replaces both roundings by one 64-bit (x * m + round) >> (31 - shift). `m` and `shift`
    broadcast against `acc` (per-channel arrays go on the channel axis). A positive shift
    multiplies x by 2**shift first, in int32 (wrapping as C++ does).
    """
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = _wrap32(np.asarray(acc, dtype=np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m), right)


def multiply_by_quantized_multiplier_smaller_than_one(x: np.ndarray, m: int,
                                                      shift: int) -> np.ndarray:
    """TFLM's MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0), default build."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m), -int(shift))


def multiply_by_quantized_multiplier_greater_than_one(x: np.ndarray, m: int,
                                                      left_shift: int) -> np.ndarray:
    """TFLM's MultiplyByQuantizedMultiplierGreaterThanOne (left_shift >= 0), default build."""
    x = _wrap32(np.asarray(x, dtype=np.int64) << int(left_shift))
    return saturating_rounding_doubling_high_mul(x, m)


def requantize_tflite(acc: np.ndarray, m: np.ndarray | int, shift: np.ndarray | int,
                      zero_point: int, act: tuple[int, int]) -> np.ndarray:
    """The `tflite` arithmetic's output stage of CONV_2D, DEPTHWISE_CONV_2D and
    FULLY_CONNECTED: MultiplyByQuantizedMultiplier of the int32 accumulator, plus the output
    zero point, clamped to the fused activation's range `act` (within int8)."""
    out = multiply_by_quantized_multiplier(_wrap32(acc), m, shift) + int(zero_point)
    return np.clip(out, act[0], act[1]).astype(np.int8)
