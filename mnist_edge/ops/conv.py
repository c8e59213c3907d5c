"""conv2d (grouped and depthwise included) and linear: int8 x int8 -> int32 -> requantized int8."""

from __future__ import annotations

import numpy as np

from ..requant import multiplier, requantize_float, requantize_tflite
from .numeric import accumulator_dtype, conv_sum, pad_hw
from .registry import (
    ACTIVATION,
    DILATION,
    GROUPS,
    PADDING,
    PAIR,
    STRIDE,
    InvalidOp,
    OpSpec,
    TfliteSemantics,
    centred_range,
    register,
)
from .tflite_prepare import activation_range, conv_multipliers

WEIGHTS = {"weight": "int8", "bias": "int32", "w_scale": "float32"}


def conv_output_hw(h: int, w: int, attrs: dict) -> tuple[int, int]:
    kh, kw = attrs["kernel"]
    sh, sw = attrs.get("stride", [1, 1])
    dh, dw = attrs.get("dilation", [1, 1])
    pt, pl, pb, pr = attrs.get("padding", [0, 0, 0, 0])
    return ((h + pt + pb - (kh - 1) * dh - 1) // sh + 1,
            (w + pl + pr - (kw - 1) * dw - 1) // sw + 1)


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
    return requantize_channels(_conv_accumulator(op, xs, ins), _weighted_multiplier(op, ins),
                               op.output.zero_point)


def _linear_golden(op, xs, ins):
    return requantize_channels(_linear_accumulator(op, xs, ins),
                               _weighted_multiplier(op, ins), op.output.zero_point)


def _onnx_conv_check(op, ins) -> None:
    if list(op.attrs.get("dilation", [1, 1])) != [1, 1]:
        raise InvalidOp("dilation is defined in the tflite arithmetic only")


def tflite_activation(op) -> str:
    """The fused activation of an op in TFLite's naming (the `activation` attribute)."""
    return str(op.attrs.get("activation") or "none").upper()


def _tflite_weighted_check(op, ins) -> None:
    groups = op.attrs.get("groups", 1)
    if groups not in (1, ins[0].shape[0]):
        raise InvalidOp(f"groups {groups}: TFLite convolves with groups 1 (CONV_2D) or one "
                        "group per input channel (DEPTHWISE_CONV_2D)")


def _tflite_weighted_prepare(op, ins) -> dict:
    """CalculateOpDataConv / FULLY_CONNECTED's Prepare: per output channel a Q31 multiplier
    and shift of s_x * s_w[c] / s_y, and the fused activation's clamp."""
    ws = op.arrays["w_scale"]
    mult, shift = conv_multipliers(ins[0].scale, ws, op.output.scale, ws.size)
    act = activation_range(tflite_activation(op), op.output.scale, op.output.zero_point)
    return {"mult": mult, "shift": shift, "act": act}


def _on_channels(values: np.ndarray, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[1] = -1
    return np.asarray(values).reshape(shape)


def _tflite_requant(acc: np.ndarray, op, c: dict) -> np.ndarray:
    return requantize_tflite(acc, _on_channels(c["mult"], acc.ndim),
                             _on_channels(c["shift"], acc.ndim), op.output.zero_point, c["act"])


def _conv_accumulator(op, xs, ins) -> np.ndarray:
    """Σ (q_x - z_x) w + bias, exact; out-of-image taps are z_x (TFLM skips them: the same)."""
    dt = accumulator_dtype(weighted_bound(op, ins))
    centred = pad_hw(xs[0].astype(dt) - dt(ins[0].zero_point), op.attrs.get("padding",
                                                                          [0, 0, 0, 0]))
    acc = conv_sum(centred, op.arrays["weight"], op.attrs).astype(np.int64)
    return acc + op.arrays["bias"].astype(np.int64)[None, :, None, None]


def _linear_accumulator(op, xs, ins) -> np.ndarray:
    dt = accumulator_dtype(weighted_bound(op, ins))
    centred = xs[0].astype(dt) - dt(ins[0].zero_point)
    acc = (centred @ op.arrays["weight"].astype(dt).T).astype(np.int64)
    return acc + op.arrays["bias"].astype(np.int64)[None, :]


def _conv_tflite(op, xs, ins, c):
    return _tflite_requant(_conv_accumulator(op, xs, ins), op, c)


def _linear_tflite(op, xs, ins, c):
    return _tflite_requant(_linear_accumulator(op, xs, ins), op, c)


register(OpSpec(
    "conv2d", "2-D convolution (groups = channels: depthwise), zero-point padding", 1,
    _conv_shape, _conv_golden,
    attrs={"kernel": PAIR, "stride": STRIDE, "padding": PADDING, "groups": GROUPS,
           "dilation": DILATION, "activation": ACTIVATION},
    arrays=WEIGHTS, check=_check_weights, acc_bound=weighted_bound,
    multiplier=_weighted_multiplier, onnx_check=_onnx_conv_check,
    tflite=TfliteSemantics(_tflite_weighted_prepare, _conv_tflite, _tflite_weighted_check)))

register(OpSpec(
    "linear", "fully connected layer over a flat input", 1, _linear_shape, _linear_golden,
    attrs={"activation": ACTIVATION}, arrays=WEIGHTS, check=_check_weights,
    acc_bound=weighted_bound, multiplier=_weighted_multiplier,
    tflite=TfliteSemantics(_tflite_weighted_prepare, _linear_tflite)))
