"""Pooling: max on int8 directly; averages as a sum in int32 plus the contract's requantization."""

from __future__ import annotations

import numpy as np

from ..requant import multiplier
from .conv import requantize_channels, windowed_shape
from .numeric import windows
from .registry import ACTIVATION, PAIR, InvalidOp, OpSpec, centred_range, register


def pool_window(op, x) -> int:
    """Number of elements averaged by a pooling op."""
    if op.kind == "global_avgpool":
        return x.shape[1] * x.shape[2]
    kh, kw = op.attrs["kernel"]
    return kh * kw


def pool_weight_scale(op, x) -> np.ndarray:
    """An average pool is a depthwise all-ones conv with weight scale float32(1/N)."""
    return np.full(x.shape[0], np.float32(1.0) / np.float32(pool_window(op, x)), np.float32)


def _avg_multiplier(op, ins) -> np.ndarray:
    return multiplier(ins[0].scale, pool_weight_scale(op, ins[0]), op.output.scale)


def _avg_bound(op, ins) -> int:
    lo, hi = centred_range(ins[0])
    return pool_window(op, ins[0]) * max(hi, -lo)


def _maxpool_golden(op, xs, ins):
    return windows(xs[0], op.attrs["kernel"], op.attrs["stride"]).max(axis=(4, 5))


def _avgpool_golden(op, xs, ins):
    centred = xs[0].astype(np.int64) - ins[0].zero_point
    acc = windows(centred, op.attrs["kernel"], op.attrs["stride"]).sum(axis=(4, 5))
    return requantize_channels(acc, _avg_multiplier(op, ins), op.output.zero_point)


def _gap_shape(op, ins):
    s = ins[0].shape
    if len(s) != 3:
        raise InvalidOp(f"needs a CxHxW input, got {s}")
    return s[0], 1, 1


def _gap_golden(op, xs, ins):
    acc = (xs[0].astype(np.int64) - ins[0].zero_point).sum(axis=(2, 3), keepdims=True)
    return requantize_channels(acc, _avg_multiplier(op, ins), op.output.zero_point)


POOL_ATTRS = {"kernel": PAIR, "stride": PAIR, "activation": ACTIVATION}

register(OpSpec("maxpool2d", "max over each window, on int8 (scale kept)", 1, windowed_shape,
                _maxpool_golden, attrs=POOL_ATTRS, keeps_quant=True))
register(OpSpec("avgpool2d", "mean over each window: int32 sum, requantized by s_x/(N s_y)", 1,
                windowed_shape, _avgpool_golden, attrs=POOL_ATTRS, acc_bound=_avg_bound,
                multiplier=_avg_multiplier))
register(OpSpec("global_avgpool", "mean over all positions of each channel", 1, _gap_shape,
                _gap_golden, attrs={"activation": ACTIVATION}, acc_bound=_avg_bound,
                multiplier=_avg_multiplier))
