"""Ops that move values: `flatten` (no arithmetic) and `concat` along channels.

`concat` requantizes each input whose scale or zero point differs from the output's
as an identity depthwise convolution would (weight 1, weight scale 1):
`y = sat8(rne(float32(q - z_i) * M_i) + z_y)`, `M_i = float32(float32(s_i) / s_y)`;
an input already at the output's quantization is copied unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from ..requant import multiplier, requantize_float
from .registry import (
    InvalidOp,
    OpSpec,
    TfliteSemantics,
    centred_range,
    no_constants,
    register,
    same_golden,
)


def _flatten_shape(op, ins):
    return (math.prod(ins[0].shape),)


def _flatten_golden(op, xs, ins):
    return xs[0].reshape(xs[0].shape[0], -1)


def concat_multipliers(ins, out) -> list[np.float32 | None]:
    """Per input: its requantization multiplier, or None where it is copied as it is."""
    return [None if (t.scale, t.zero_point) == (out.scale, out.zero_point)
            else multiplier(t.scale, 1.0, out.scale)[0] for t in ins]


def _concat_shape(op, ins):
    if any(len(t.shape) != 3 for t in ins) or len({tuple(t.shape[1:]) for t in ins}) != 1:
        raise InvalidOp(f"inputs must be CxHxW with one HxW, got {[t.shape for t in ins]}")
    return sum(t.shape[0] for t in ins), ins[0].shape[1], ins[0].shape[2]


def _concat_bound(op, ins) -> int:
    return max(max(hi, -lo) for lo, hi in map(centred_range, ins))


def _concat_multiplier(op, ins) -> np.ndarray:
    return np.array([1.0 if m is None else m for m in concat_multipliers(ins, op.output)],
                    np.float32)


def _concat_golden(op, xs, ins):
    parts = []
    for x, t, mult in zip(xs, ins, concat_multipliers(ins, op.output), strict=True):
        if mult is None:
            parts.append(x)
        else:
            parts.append(requantize_float(x.astype(np.int64) - t.zero_point, mult,
                                          op.output.zero_point))
    return np.concatenate(parts, axis=1)


def _tflite_concat_check(op, ins) -> None:
    if any((t.scale, t.zero_point) != (op.output.scale, op.output.zero_point) for t in ins):
        raise InvalidOp("every input must have the output's scale and zero point (TFLM's "
                        "CONCATENATION copies bytes)")


register(OpSpec("flatten", "CxHxW -> C*H*W in C order (no arithmetic)", 1, _flatten_shape,
                _flatten_golden, keeps_quant=True,
                tflite=TfliteSemantics(no_constants, same_golden(_flatten_golden))))
register(OpSpec("concat", "inputs side by side along channels, requantized to the output", 0,
                _concat_shape, _concat_golden, acc_bound=_concat_bound,
                multiplier=_concat_multiplier,
                tflite=TfliteSemantics(no_constants, same_golden(_concat_golden),
                                       _tflite_concat_check)))
