"""TFLM's fixed-point integer arithmetic as standard ONNX int64 nodes, primitive by primitive.

Each function adds the nodes that compute one primitive of `mnist_edge.requant` or
`ops.gemmlowp` on int64 tensors holding int32 values, so that onnxruntime reproduces TFLite
Micro's numbers with no float anywhere. ONNX shifts only unsigned integers (BitShift) and
its integer Div truncates toward zero (C's `/`), so the primitives are written with what
the standard defines exactly on int64:

* ``x << k``                     -> Mul by 2**k (int64 never overflows here);
* int32 wrap-around              -> Mod(x + 2**31, 2**32) - 2**31 (Mod with fmod=0 takes the
  divisor's sign, so the result is the two's-complement wrap);
* truncating division            -> Div;
* round half away from zero of x / d (d > 0)  -> Sign(x) * Div(|x| + floor(d / 2), d), which
  is gemmlowp's RoundingDivideByPOT for d = 2**e and TFLM's average-pool division for any d.

tests/test_onnx_tflite.py proves every block equal to requant.py / gemmlowp.py on sweeps
that include INT32_MIN * INT32_MIN, every shift and the ties of both signs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto

from ..requant import INT32_MAX, INT32_MIN

if TYPE_CHECKING:
    from .onnx import _Builder

I64 = np.int64
POW2 = np.array([1 << k for k in range(41)], I64)  # 2**0 .. 2**40, Gathered by exponent


def const(b: _Builder, value: int) -> str:
    """A shared int64 scalar."""
    return b.const(value, I64)


def wrap32(b: _Builder, x: str, name: str) -> str:
    """Two's-complement int32 wrap of int64 values (what C++ int32 arithmetic does)."""
    up = b.node("Add", [x, const(b, 1 << 31)], f"{name}.biased", f"{name}_bias")
    mod = b.node("Mod", [up, const(b, 1 << 32)], f"{name}.mod", f"{name}_mod", fmod=0)
    return b.node("Sub", [mod, const(b, 1 << 31)], name, f"{name}_unbias")


def add32(b: _Builder, x: str, y: str, name: str) -> str:
    """gemmlowp's int32 FixedPoint addition (wrapping)."""
    return wrap32(b, b.node("Add", [x, y], f"{name}.sum", f"{name}_add"), name)


def srdhm(b: _Builder, x: str, m: str, name: str) -> str:
    """SaturatingRoundingDoublingHighMul: (x*m + nudge) / 2**31, truncated (Div), nudge
    2**30 for x*m >= 0 else 1 - 2**30. The quotient exceeds INT32_MAX only for
    INT32_MIN * INT32_MIN, where it is exactly 2**31: Min(., INT32_MAX) is the saturation."""
    ab = b.node("Mul", [x, m], f"{name}.ab", f"{name}_mul")
    nonneg = b.node("GreaterOrEqual", [ab, const(b, 0)], f"{name}.nonneg", f"{name}_sign")
    nudge = b.node("Where", [nonneg, const(b, 1 << 30), const(b, 1 - (1 << 30))],
                   f"{name}.nudge", f"{name}_nudge")
    num = b.node("Add", [ab, nudge], f"{name}.num", f"{name}_nudged")
    q = b.node("Div", [num, const(b, 1 << 31)], f"{name}.q", f"{name}_high")
    return b.node("Min", [q, const(b, INT32_MAX)], name, f"{name}_saturate")


def round_divide(b: _Builder, x: str, divisor: str, half: str, name: str) -> str:
    """x / d rounded half away from zero for d > 0: Sign(x) * ((|x| + half) / d) with
    half = floor(d / 2) (TFLM's average pool; RoundingDivideByPOT for d = 2**e)."""
    mag = b.node("Abs", [x], f"{name}.abs", f"{name}_abs")
    up = b.node("Add", [mag, half], f"{name}.up", f"{name}_plus_half")
    q = b.node("Div", [up, divisor], f"{name}.q", f"{name}_div")
    sign = b.node("Sign", [x], f"{name}.sign", f"{name}_sign")
    return b.node("Mul", [q, sign], name, f"{name}_signed")


def pot_constants(exponent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2**e, floor(2**e / 2)) for exponents e >= 0: RoundingDivideByPOT's divisor, half."""
    e = np.asarray(exponent, I64)
    if np.any(e < 0) or np.any(e > 40):
        raise ValueError(f"rounding shift {e.min()}..{e.max()} outside 0..40")
    return POW2[e], np.where(e > 0, POW2[np.maximum(e - 1, 0)], 0).astype(I64)


def rdbpot(b: _Builder, x: str, exponent: np.ndarray | int, name: str) -> str:
    """RoundingDivideByPOT by constant exponents (a scalar or an array broadcast on x)."""
    e = np.asarray(exponent, I64)
    if not np.any(e):
        return x
    div, half = pot_constants(e)
    return round_divide(b, x, b.init(f"{name}.divisor", div), b.init(f"{name}.half", half),
                        name)


def mbqm(b: _Builder, x: str, m: np.ndarray, shift: np.ndarray, name: str,
         wrap: bool) -> str:
    """MultiplyByQuantizedMultiplier (double rounding) with constant per-channel m, shift
    (arrays already shaped to broadcast on x): x * 2**max(shift, 0), wrapped to int32 when
    `wrap` (the caller's bound says it may leave int32), SRDHM by m, then
    RoundingDivideByPOT by max(-shift, 0)."""
    shift = np.asarray(shift, I64)
    left = np.maximum(shift, 0)
    if np.any(left):
        x = b.node("Mul", [x, b.init(f"{name}.left", POW2[left])], f"{name}.shifted",
                   f"{name}_shift_left")
        if wrap:
            x = wrap32(b, x, f"{name}.wrapped")
    high = srdhm(b, x, b.init(f"{name}.multiplier", np.asarray(m, I64)), f"{name}.high")
    return rdbpot(b, high, np.maximum(-shift, 0), name)


def sat_mul_pot(b: _Builder, x: str, exponent: int, name: str) -> str:
    """SaturatingRoundingMultiplyByPOT: a saturating left shift (Mul, then Clip to int32:
    x > 2**(31-k) - 1 gives >= 2**31, x < -(2**(31-k) - 1) gives <= INT32_MIN) or a
    rounding right shift."""
    if exponent == 0:
        return x
    if exponent < 0:
        return rdbpot(b, x, -exponent, name)
    prod = b.node("Mul", [x, const(b, 1 << exponent)], f"{name}.prod", f"{name}_mul")
    return b.node("Clip", [prod, const(b, INT32_MIN), const(b, INT32_MAX)], name,
                  f"{name}_saturate")


def rounding_half_sum(b: _Builder, x: str, y: int, name: str) -> str:
    """gemmlowp's RoundingHalfSum: (x + y + sign) / 2 with C's truncating division."""
    s = b.node("Add", [x, const(b, y)], f"{name}.sum", f"{name}_add")
    nonneg = b.node("GreaterOrEqual", [s, const(b, 0)], f"{name}.nonneg", f"{name}_sign")
    nudge = b.node("Where", [nonneg, const(b, 1), const(b, -1)], f"{name}.nudge",
                   f"{name}_nudge")
    t = b.node("Add", [s, nudge], f"{name}.t", f"{name}_nudged")
    return b.node("Div", [t, const(b, 2)], name, f"{name}_half")


def one_over_one_plus_x(b: _Builder, a: str, name: str) -> str:
    """one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a), Q0.31 in and out, by gemmlowp's three
    Newton-Raphson steps in Q2.29 (every int32 add wrapping, every multiply an SRDHM)."""
    hd = rounding_half_sum(b, a, INT32_MAX, f"{name}.half_denominator")
    x = add32(b, const(b, 1515870810), srdhm(b, hd, const(b, -1010580540), f"{name}.x0m"),
              f"{name}.x0")
    for k in range(3):
        n = f"{name}.nr{k}"
        prod = b.node("Neg", [srdhm(b, hd, x, f"{n}.hdx")], f"{n}.neg", f"{n}_neg")
        one_minus = add32(b, const(b, 1 << 29), prod, f"{n}.one_minus")
        step = sat_mul_pot(b, srdhm(b, x, one_minus, f"{n}.xm"), 2, f"{n}.step")
        x = add32(b, x, step, f"{n}.x")
    return sat_mul_pot(b, x, 1, name)  # Rescale<0>(Q2.29 read as Q1.30)


def clz32(b: _Builder, x: str, name: str) -> tuple[str, str]:
    """(x mod 2**32, __builtin_clz of it) for x of shape [N, 1]: the count is how many of
    2**0 .. 2**31 exceed the unsigned value (32 for 0)."""
    u = b.node("Mod", [x, const(b, 1 << 32)], f"{name}.u32", f"{name}_u32", fmod=0)
    below = b.node("Less", [u, b.init("fixed.pow2_0_31", POW2[:32])], f"{name}.below",
                   f"{name}_below")
    count = b.node("Cast", [below], f"{name}.count", f"{name}_count", to=TensorProto.INT64)
    last = b.init("const.axes.-1", np.array([-1], I64))
    return u, b.node("ReduceSum", [count, last], name, f"{name}_sum", keepdims=1)


def get_reciprocal(b: _Builder, x: str, integer_digits: int, name: str) -> tuple[str, str]:
    """TFLite's GetReciprocal for x of shape [N, 1]: (1/x as Q0.31 of the normalized x,
    num_bits_over_unit), both [N, 1]. The unsigned x times 2**clz stays below 2**32."""
    u, h = clz32(b, x, f"{name}.clz")
    bits = b.node("Sub", [const(b, integer_digits), h], f"{name}.bits_over_unit",
                  f"{name}_bits_over_unit")
    pow_h = b.node("Gather", [b.init("fixed.pow2", POW2), h], f"{name}.pow_h", f"{name}_pow",
                   axis=0)
    up = b.node("Mul", [u, pow_h], f"{name}.shifted", f"{name}_shift_left")
    minus_one = wrap32(b, b.node("Sub", [up, const(b, 1 << 31)], f"{name}.minus_one_raw",
                                 f"{name}_minus_one"), f"{name}.minus_one")
    return one_over_one_plus_x(b, minus_one, name), bits


def rdbpot_tensor(b: _Builder, x: str, exponent: str, name: str) -> str:
    """RoundingDivideByPOT by a computed exponent tensor (1 <= e <= 40)."""
    table = b.init("fixed.pow2", POW2)
    div = b.node("Gather", [table, exponent], f"{name}.divisor", f"{name}_divisor", axis=0)
    e1 = b.node("Sub", [exponent, const(b, 1)], f"{name}.e_minus_1", f"{name}_e_minus_1")
    half = b.node("Gather", [table, e1], f"{name}.half", f"{name}_half", axis=0)
    return round_divide(b, x, div, half, name)
