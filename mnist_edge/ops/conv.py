"""conv2d (grouped and depthwise included) and linear: int8 x int8 -> int32 -> requantized int8."""

from __future__ import annotations

import numpy as np

from ..requant import multiplier, requantize_float
from .numeric import accumulator_dtype, conv_sum, pad_hw
from .registry import (
    ACTIVATION,
    GROUPS,
    PADDING,
    PAIR,
    STRIDE,
    InvalidOp,
    OpSpec,
    centred_range,
    register,
)

WEIGHTS = {"weight": "int8", "bias": "int32", "w_scale": "float32"}


def conv_output_hw(h: int, w: int, attrs: dict) -> tuple[int, int]:
    kh, kw = attrs["kernel"]
    sh, sw = attrs.get("stride", [1, 1])
    pt, pl, pb, pr = attrs.get("padding", [0, 0, 0, 0])
    return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


def windowed_shape(op, ins) -> tuple[int, int, int]:
    """Output CxHxW of a conv or pooling window over a CxHxW input."""
    s = ins[0].shape
    if len(s) != 3:
        raise InvalidOp(f"needs a CxHxW input, got {s}")
    oh, ow = conv_output_hw(s[1], s[2], op.attrs)
    if oh <= 0 or ow <= 0:
        raise InvalidOp(f"window larger than its {s} input")
    return s[0], oh, ow


def _conv_shape(op, ins):
    _, oh, ow = windowed_shape(op, ins)
    return op.arrays["weight"].shape[0], oh, ow


def _linear_shape(op, ins):
    if len(ins[0].shape) != 1:
        raise InvalidOp(f"needs a flat input, got {ins[0].shape}")
    return (op.arrays["weight"].shape[0],)


def _check_weights(op, ins) -> None:
    x = ins[0]
    w, b, ws = op.arrays["weight"], op.arrays["bias"], op.arrays["w_scale"]
    cout = w.shape[0] if w.ndim else 0
    if op.kind == "conv2d":
        groups = op.attrs.get("groups", 1)
        if w.ndim != 4 or w.shape[1] * groups != x.shape[0] or cout % groups:
            raise InvalidOp(f"weight {w.shape} does not fit input {x.shape} in {groups} group(s)")
        if list(w.shape[2:]) != list(op.attrs["kernel"]):
            raise InvalidOp(f"weight {w.shape} does not match kernel {op.attrs['kernel']}")
    elif w.ndim != 2 or w.shape[1] != x.shape[0]:
        raise InvalidOp(f"weight {w.shape} does not fit input {x.shape}")
    if cout == 0:
        raise InvalidOp("has no output channels")
    if b.shape != (cout,) or ws.shape != (cout,):
        raise InvalidOp(f"bias/w_scale must have {cout} entries")
    if int(w.min(initial=0)) < -127:
        raise InvalidOp("weights must be symmetric int8 (-127..127)")
    if not (np.all(np.isfinite(ws)) and np.all(ws > 0)):
        raise InvalidOp("weight scales must be positive and finite")


def weighted_bound(op, ins) -> int:
    """The exact worst-case |acc| over every int8 input, per the integer contract.

    Each centred input lies in [lo, hi] with lo <= 0 <= hi, so the largest sum picks hi
    for positive weights and lo for negative ones. Every term of that extreme is >= 0,
    so no partial sum (in any order) exceeds it either.
    """
    lo, hi = centred_range(ins[0])
    w = op.arrays["weight"].astype(np.int64).reshape(op.arrays["weight"].shape[0], -1)
    pos, neg = np.maximum(w, 0).sum(axis=1), np.minimum(w, 0).sum(axis=1)
    bias = op.arrays["bias"].astype(np.int64)
    top, bottom = hi * pos + lo * neg, lo * pos + hi * neg
    return int(max(np.abs(top + bias).max(), np.abs(bottom + bias).max(),
                   top.max(), -bottom.min()))


def _weighted_multiplier(op, ins) -> np.ndarray:
    return multiplier(ins[0].scale, op.arrays["w_scale"], op.output.scale)


def requantize_channels(acc: np.ndarray, mult: np.ndarray, zero_point: int) -> np.ndarray:
    """The contract's requantization of [N, C, ...] accumulators with one M per channel."""
    shape = [1] * acc.ndim
    shape[1] = -1
    return requantize_float(acc, mult.reshape(shape), zero_point)


def _conv_golden(op, xs, ins):
    dt = accumulator_dtype(weighted_bound(op, ins))
    centred = pad_hw(xs[0].astype(dt) - dt(ins[0].zero_point), op.attrs.get("padding",
                                                                          [0, 0, 0, 0]))
    acc = conv_sum(centred, op.arrays["weight"], op.attrs).astype(np.int64)
    acc += op.arrays["bias"].astype(np.int64)[None, :, None, None]
    return requantize_channels(acc, _weighted_multiplier(op, ins), op.output.zero_point)


def _linear_golden(op, xs, ins):
    dt = accumulator_dtype(weighted_bound(op, ins))
    centred = xs[0].astype(dt) - dt(ins[0].zero_point)
    acc = (centred @ op.arrays["weight"].astype(dt).T).astype(np.int64)
    acc += op.arrays["bias"].astype(np.int64)[None, :]
    return requantize_channels(acc, _weighted_multiplier(op, ins), op.output.zero_point)


register(OpSpec(
    "conv2d", "2-D convolution (groups = channels: depthwise), zero-point padding", 1,
    _conv_shape, _conv_golden,
    attrs={"kernel": PAIR, "stride": STRIDE, "padding": PADDING, "groups": GROUPS,
           "activation": ACTIVATION},
    arrays=WEIGHTS, check=_check_weights, acc_bound=weighted_bound,
    multiplier=_weighted_multiplier))

register(OpSpec(
    "linear", "fully connected layer over a flat input", 1, _linear_shape, _linear_golden,
    attrs={"activation": ACTIVATION}, arrays=WEIGHTS, check=_check_weights,
    acc_bound=weighted_bound, multiplier=_weighted_multiplier))
