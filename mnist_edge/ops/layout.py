"""Ops that move values: `flatten` (no arithmetic) and `concat` along channels; in the
tflite arithmetic only, `pad` (TFLite's PAD / PADV2 of H and W with one int8 value, where it
does not fold into the convolution reading it) and `reshape` (a RESHAPE that keeps the
elements' order in both CHW and HWC: the same channels, or a single position).

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
    PADDING,
    REQUIRED,
    Attr,
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


PAD_VALUE = Attr(lambda v: isinstance(v, int) and not isinstance(v, bool) and -128 <= v <= 127,
                 "an int8 value", REQUIRED)


def _pad_shape(op, ins):
    s = ins[0].shape
    if len(s) != 3:
        raise InvalidOp(f"needs a CxHxW input, got {s}")
    top, left, bottom, right = op.attrs.get("padding", [0, 0, 0, 0])
    return s[0], s[1] + top + bottom, s[2] + left + right


def _pad_golden(op, xs, ins, c):
    """TFLM's PAD / PADV2 (int8): the input's bytes inside a border of `value`."""
    top, left, bottom, right = op.attrs.get("padding", [0, 0, 0, 0])
    return np.pad(xs[0], ((0, 0), (0, 0), (top, bottom), (left, right)),
                  constant_values=op.attrs["value"])


def _reshape_shape(op, ins):
    shape = tuple(op.attrs["shape"])
    src = tuple(ins[0].shape)
    if math.prod(shape) != math.prod(src):
        raise InvalidOp(f"cannot reshape {list(src)} into {list(shape)}")
    if not pure_layout(src, shape):
        raise InvalidOp(f"reshaping {list(src)} into {list(shape)} moves elements between the "
                        "CHW and HWC orders (only the same channels, or one position, keep it)")
    return shape


def pure_layout(src: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    """Whether the IR's reshape (which keeps the CHW order) is TFLite's (which keeps the HWC
    order): both CxHxW with the same C (each position keeps its C values), or both tensors
    flat, of one channel or of one position (CHW and HWC orders are then the same)."""
    def single(s):
        return len(s) == 1 or s[0] == 1 or s[1] * s[2] == 1
    if len(src) == len(dst) == 3 and src[0] == dst[0]:
        return True
    return single(src) and single(dst)


def _reshape_golden(op, xs, ins, c):
    return xs[0].reshape(xs[0].shape[0], *op.attrs["shape"])


SHAPE = Attr(lambda v: isinstance(v, list) and len(v) in (1, 3)
             and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in v),
             "a list of 1 or 3 integers >= 1 (D or C, H, W)", REQUIRED)

register(OpSpec("pad", "TFLite's PAD / PADV2 of H and W with one int8 value (no rescale)", 1,
                _pad_shape, None, attrs={"padding": PADDING, "value": PAD_VALUE},
                keeps_quant=True, tflite=TfliteSemantics(no_constants, _pad_golden)))
register(OpSpec("reshape", "TFLite's RESHAPE where the element order stays (no arithmetic)", 1,
                _reshape_shape, None, attrs={"shape": SHAPE}, keeps_quant=True,
                tflite=TfliteSemantics(no_constants, _reshape_golden)))
