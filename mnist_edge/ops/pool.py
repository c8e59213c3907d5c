"""Pooling: max on int8 directly; averages as a sum in int32 plus the contract's requantization."""

from __future__ import annotations

import numpy as np

from ..requant import multiplier
from . import tflite_kernels as tfk
from .conv import requantize_channels, tflite_activation, windowed_shape
from .numeric import windows
from .registry import (
    ACTIVATION,
    PADDING,
    PAIR,
    InvalidOp,
    OpSpec,
    TfliteSemantics,
    centred_range,
    register,
)
from .tflite_prepare import activation_range, mean_params


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


def _onnx_pool_check(op, ins) -> None:
    if any(op.attrs.get("padding", [0, 0, 0, 0])):
        raise InvalidOp("padded pools (windows over fewer taps at the border) are defined in "
                        "the tflite arithmetic only")


def _tflite_pool_check(op, ins) -> None:
    """TFLM's pooling Prepare: scales within 1e-6, equal zero points (no rescale happens)."""
    if (abs(op.output.scale - ins[0].scale) > 1e-6
            or op.output.zero_point != ins[0].zero_point):
        raise InvalidOp("must keep its input's scale and zero point (TFLM's pools do not "
                        "rescale)")


def _tflite_pool_prepare(op, ins) -> dict:
    """The pool's Prepare: only the fused activation's clamp (no rescale)."""
    return {"act": activation_range(tflite_activation(op), op.output.scale,
                                    op.output.zero_point)}


def _tflite_pool(kernel):
    """AVERAGE_POOL_2D / MAX_POOL_2D over the in-image taps of each window (TFLM's padding
    is no value: a border window averages, or maxes, fewer taps)."""
    def run(op, xs, ins, c):
        pad = op.attrs.get("padding", [0, 0, 0, 0])
        out_hw = tuple(op.output.shape[1:])
        y = kernel(xs[0].transpose(0, 2, 3, 1), filt=tuple(op.attrs["kernel"]),
                   stride=tuple(op.attrs["stride"]), pad=(pad[0], pad[1]), out_hw=out_hw,
                   act=c["act"])
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    return run


POOL_ATTRS = {"kernel": PAIR, "stride": PAIR, "padding": PADDING, "activation": ACTIVATION}

register(OpSpec("maxpool2d", "max over each window, on int8 (scale kept)", 1, windowed_shape,
                _maxpool_golden, attrs=POOL_ATTRS, keeps_quant=True,
                onnx_check=_onnx_pool_check,
                tflite=TfliteSemantics(_tflite_pool_prepare, _tflite_pool(tfk.max_pool_2d))))
register(OpSpec("avgpool2d", "mean over each window: int32 sum, requantized by s_x/(N s_y)", 1,
                windowed_shape, _avgpool_golden, attrs=POOL_ATTRS, acc_bound=_avg_bound,
                multiplier=_avg_multiplier, onnx_check=_onnx_pool_check,
                tflite=TfliteSemantics(_tflite_pool_prepare, _tflite_pool(tfk.average_pool_2d),
                                       _tflite_pool_check)))
register(OpSpec("global_avgpool", "mean over all positions of each channel", 1, _gap_shape,
                _gap_golden, attrs={"activation": ACTIVATION}, acc_bound=_avg_bound,
                multiplier=_avg_multiplier))


def _tflite_mean_prepare(op, ins) -> dict:
    """PrepareMeanOrSum for a MEAN over H and W: which of TFLM's two paths, and the
    requantization with 1/(H W) folded in (`tflite_prepare.mean_params`)."""
    x = ins[0]
    return mean_params(x.scale, x.zero_point, op.output.scale, op.output.zero_point,
                       x.shape[1] * x.shape[2])


def _tflite_mean(op, xs, ins, c):
    y = tfk.mean_hw(xs[0].transpose(0, 2, 3, 1), **c)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


register(OpSpec("mean", "TFLite's MEAN over H and W of each channel (tflite arithmetic only)",
                1, _gap_shape, None,
                tflite=TfliteSemantics(_tflite_mean_prepare, _tflite_mean)))
