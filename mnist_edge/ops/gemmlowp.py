"""gemmlowp's fixed-point math (fixedpoint/fixedpoint.h), vectorized over int32 values.

TFLM's int8 SOFTMAX, LOGISTIC and TANH evaluate exp, 1/(1+x) and friends in these
Q-formats; reproducing them operation by operation (every rounding, saturation and
int32 wrap) is the only way to match TFLM to the bit. Values are int64 arrays holding
int32 raw values; a FixedPoint<int32, I> has 31 - I fractional bits.
"""

from __future__ import annotations

import numpy as np

from ..requant import (
    INT32_MAX,
    INT32_MIN,
    _wrap32,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

mul = saturating_rounding_doubling_high_mul  # FixedPoint * FixedPoint: integer bits add


def add(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """FixedPoint + (wrapping int32 addition, as gemmlowp's Add for int32)."""
    return _wrap32(np.asarray(a, dtype=np.int64) + b)


def sat_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<exponent>: saturating left or rounding right shift."""
    x = np.asarray(x, dtype=np.int64)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    out = _wrap32(x << exponent)
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def rescale(x: np.ndarray, src_bits: int, dst_bits: int) -> np.ndarray:
    """Rescale<dst>(FixedPoint<src>)."""
    return sat_mul_pot(x, src_bits - dst_bits)


def rounding_half_sum(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """(a + b) / 2 rounded away from zero (C++ truncating division of sum + sign)."""
    s = np.asarray(a, dtype=np.int64) + b
    t = s + np.where(s >= 0, 1, -1)
    return np.where(t >= 0, t // 2, -((-t) // 2))


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = add(a, 1 << 28)
    x2 = mul(x, x)
    x3 = mul(x2, x)
    x4 = mul(x2, x2)
    x4_over_4 = sat_mul_pot(x4, -2)
    poly = sat_mul_pot(add(mul(add(x4_over_4, x3), constant_1_over_3), x2), -1)
    return add(constant_term, mul(constant_term, add(x, poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """exp(a) for a <= 0 given as FixedPoint<int32, integer_bits>; result Q0.31."""
    frac = 31 - integer_bits
    quarter = 1 << (frac - 2)
    a = np.asarray(a, dtype=np.int64)
    a_mod = add(a & (quarter - 1), -quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod, integer_bits, 0))
    remainder = add(a_mod, -a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac + exponent))) != 0
            result = np.where(bit, mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal(a: np.ndarray) -> np.ndarray:
    """The shared Newton-Raphson core: x ~= 1 / half_denominator in Q2.29."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = add(1515870810, mul(half_denominator, -1010580540))  # 48/17 - 32/17 * d
    one_f2 = 1 << 29
    for _ in range(3):
        one_minus = add(one_f2, -mul(half_denominator, x))
        x = add(x, rescale(mul(x, one_minus), 4, 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1), Q0.31 in and out."""
    return rescale(_newton_reciprocal(a), 1, 0)  # ExactMulByPot<-1>: Q2.29 read as Q1.30


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """(1 - a) / (1 + a) for a in [0, 1), Q0.31 in and out."""
    return rescale(add(_newton_reciprocal(a), -(1 << 29)), 2, 0)


def logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp::logistic: 1 / (1 + exp(-a)) for any a, Q0.31 result."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    abs_a = np.where(positive, a, _wrap32(-a))
    pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(_wrap32(-abs_a),
                                                                  integer_bits))
    neg = add(INT32_MAX, -pos)
    return np.where(a == 0, 1 << 30, np.where(positive, pos, neg))


def tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp::tanh: (1 - exp(-2a)) / (1 + exp(-2a)), Q0.31 result."""
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    n = np.where(negative, a, _wrap32(-a))
    # ExactMulByPot<1>: the same raw value read with one more integer bit.
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, _wrap32(-t), t))


def count_leading_zeros32(x: np.ndarray) -> np.ndarray:
    """__builtin_clz of uint32 values (32 for zero)."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    _, exp = np.frexp(x.astype(np.float64))  # exact: x < 2**53
    return np.where(x == 0, 32, 32 - exp).astype(np.int64)


def get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's GetReciprocal: (1/x as Q0.31 of the normalized x, num_bits_over_unit)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = count_leading_zeros32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = (((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    return one_over_one_plus_x_for_x_in_0_1(_wrap32(shifted)), num_bits_over_unit
