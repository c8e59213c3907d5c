"""`softmax`, in the tflite arithmetic only: TFLM's int8 SOFTMAX over a vector.

It is no function of one element (each output depends on the row's maximum and the sum of
exponentials), so it cannot be a `lut`. The output quantization is TFLM's: scale 1/256,
zero point -128.
"""

from __future__ import annotations

import math

import numpy as np

from . import tflite_kernels as tfk
from .registry import Attr, InvalidOp, OpSpec, TfliteSemantics, register
from .tflite_prepare import softmax_params

OUTPUT_SCALE, OUTPUT_ZERO_POINT = 1.0 / 256, -128
BETA = Attr(lambda v: isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v) and v > 0, "a positive finite number", 1.0)


def _shape(op, ins):
    if len(ins[0].shape) != 1:
        raise InvalidOp(f"needs a flat input, got {ins[0].shape}")
    return tuple(ins[0].shape)


def _check(op, ins) -> None:
    """SoftmaxPrepare's int8 rule: output zero point -128, scale 1/256 within 0.1 %."""
    if op.output.zero_point != OUTPUT_ZERO_POINT or abs(
            op.output.scale - OUTPUT_SCALE) > 0.001 * OUTPUT_SCALE:
        raise InvalidOp(f"output quantization ({op.output.scale}, {op.output.zero_point}) must "
                        "be (1/256, -128)")


def _prepare(op, ins) -> dict:
    """CalculateSoftmaxParams: the Q31 input multiplier, its left shift and diff_min."""
    m, left_shift, diff_min = softmax_params(op.attrs.get("beta", 1.0), ins[0].scale)
    return {"input_multiplier": m, "input_left_shift": left_shift, "diff_min": diff_min}


def _golden(op, xs, ins, c) -> np.ndarray:
    return tfk.softmax(xs[0], **c)


register(OpSpec("softmax", "TFLite's int8 softmax over a vector (fixed-point exp, reciprocal)",
                1, _shape, None, attrs={"beta": BETA}, tflite=TfliteSemantics(_prepare, _golden,
                                                                                _check)))
