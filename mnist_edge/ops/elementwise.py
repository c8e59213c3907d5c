"""Elementwise ops: `lut` (any unary activation as a 256-entry table), `add` (two tensors),
and, in the tflite arithmetic only, `sub` and `mul`. In the tflite arithmetic the two
inputs of add, sub and mul may differ in shape where TFLM broadcasts them (CxHxW tensors
whose dimensions are the output's or 1, e.g. a per-channel C x 1 x 1): each output element
is computed from its two inputs exactly as in the one-shape case (`broadcasts` tells a
backend which it meets).

A `lut` means the same in both arithmetics: the table is the op. A TFLite activation whose
int8 result is a function of the int8 input alone (LOGISTIC, TANH, RELU, RELU6,
LEAKY_RELU...) is imported as the table of TFLM's kernel over all 256 inputs, exact by
construction.

`add` has its own integer semantics, chosen so that every backend, with or without an
FPU, and onnxruntime through standard ops compute it exactly: each input is scaled by an
integer weight proportional to its scale, the int32 sum is requantized as any
accumulator is. With `u = max(s_a, s_b) / 2^14` (exact: a power-of-two step of a
float32), `k_i = rne(s_i / u)` (so the larger input gets 2^14) and

    acc = k_a (q_a - z_a) + k_b (q_b - z_b),   y = sat8(rne(float32(acc) * M) + z_y),
    M = float32(float32(u) / s_y).

The weights approximate the scale ratio to 2^-15, far below one int8 step, and
|acc| < 2^23 keeps float32(acc) exact.
"""

from __future__ import annotations

import numpy as np

from ..requant import multiplier, requantize_float
from . import tflite_kernels as tfk
from .conv import tflite_activation
from .registry import (
    ACTIVATION,
    PARAMS,
    InvalidOp,
    OpSpec,
    TfliteSemantics,
    centred_range,
    no_constants,
    register,
    same_golden,
)
from .tflite_prepare import activation_range, add_sub_params, mul_params

ADD_WEIGHT_BITS = 14


def add_weights(ins, out) -> tuple[list[int], np.float32]:
    """The integer weight of each input and the one requantization multiplier of an add."""
    unit = float(np.float32(max(t.scale for t in ins))) * 2.0 ** -ADD_WEIGHT_BITS
    weights = [int(np.rint(np.float64(t.scale) / unit)) for t in ins]
    return weights, multiplier(unit, 1.0, out.scale)[0]


def _same_shape(op, ins):
    shapes = {tuple(t.shape) for t in ins}
    if len(shapes) != 1:
        raise InvalidOp(f"inputs must have one shape, got {[t.shape for t in ins]}")
    return tuple(ins[0].shape)


def _broadcast_shape(op, ins):
    """One shape, or (tflite arithmetic: TFLM's ADD, SUB and MUL broadcast) CxHxW inputs
    whose every dimension is the output's or 1, such as a per-channel C x 1 x 1."""
    shapes = [tuple(t.shape) for t in ins]
    if len(set(shapes)) == 1:
        return shapes[0]
    if any(len(s) != 3 for s in shapes):
        raise InvalidOp(f"inputs of different shapes {[t.shape for t in ins]} broadcast only "
                        "as CxHxW tensors")
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise InvalidOp(f"input shapes {[t.shape for t in ins]} do not broadcast") from None


def broadcasts(ins) -> bool:
    """Whether a two-input elementwise op broadcasts one input (tflite arithmetic only):
    every backend that lowers add, sub or mul must handle or refuse this."""
    return len({tuple(t.shape) for t in ins}) > 1


def _onnx_add_check(op, ins) -> None:
    if broadcasts(ins):
        raise InvalidOp("broadcasting inputs of different shapes is defined in the tflite "
                        "arithmetic only")


def _lut_check(op, ins) -> None:
    if op.arrays["table"].shape != (256,):
        raise InvalidOp("table must have 256 entries")


def _lut_golden(op, xs, ins):
    return op.arrays["table"][xs[0].astype(np.int16) + 128]


def _add_bound(op, ins) -> int:
    weights, _ = add_weights(ins, op.output)
    return sum(k * max(hi, -lo) for k, (lo, hi) in zip(weights, map(centred_range, ins),
                                                      strict=True))


def _add_multiplier(op, ins) -> np.ndarray:
    return np.atleast_1d(add_weights(ins, op.output)[1])


def _add_golden(op, xs, ins):
    weights, mult = add_weights(ins, op.output)
    acc = sum(np.int64(k) * (x.astype(np.int64) - t.zero_point)
              for k, x, t in zip(weights, xs, ins, strict=True))
    return requantize_float(acc, mult, op.output.zero_point)


def _act(op) -> tuple[int, int]:
    return activation_range(tflite_activation(op), op.output.scale, op.output.zero_point)


def _tflite_add_prepare(op, ins) -> dict:
    """CalculateOpDataAdd / Sub (int8): both inputs shifted left by 20 and rescaled to twice
    the larger input scale, the sum rescaled to the output; offsets and the clamp."""
    p = add_sub_params(ins[0].scale, ins[1].scale, op.output.scale)
    p.update(input1_offset=-ins[0].zero_point, input2_offset=-ins[1].zero_point,
             output_offset=op.output.zero_point, act=_act(op))
    return p


def _tflite_mul_prepare(op, ins) -> dict:
    """CalculateOpDataMul: one multiplier s_a * s_b / s_y, the zero points and the clamp."""
    m, shift = mul_params(ins[0].scale, ins[1].scale, op.output.scale)
    return {"mult": m, "shift": shift, "input1_zp": ins[0].zero_point,
            "input2_zp": ins[1].zero_point, "output_zp": op.output.zero_point, "act": _act(op)}


def _mul_bound(op, ins) -> int:
    (lo_a, hi_a), (lo_b, hi_b) = centred_range(ins[0]), centred_range(ins[1])
    return max(abs(a * b) for a in (lo_a, hi_a) for b in (lo_b, hi_b))


register(OpSpec("lut", "unary activation as LUT[q + 128], built in float64 at quantization", 1,
                _same_shape, _lut_golden, attrs={"activation": ACTIVATION, "params": PARAMS},
                arrays={"table": "int8"}, check=_lut_check,
                tflite=TfliteSemantics(no_constants, same_golden(_lut_golden))))
register(OpSpec("add", "sum of two tensors, each weighted by its scale (tflite: broadcasting)",
                2, _broadcast_shape, _add_golden, attrs={"activation": ACTIVATION},
                acc_bound=_add_bound, multiplier=_add_multiplier, onnx_check=_onnx_add_check,
                tflite=TfliteSemantics(_tflite_add_prepare,
                                       lambda op, xs, ins, c: tfk.add(xs[0], xs[1], c))))
register(OpSpec("sub", "difference of two tensors (TFLite's SUB, broadcasting)", 2,
                _broadcast_shape,
                None, attrs={"activation": ACTIVATION},
                tflite=TfliteSemantics(_tflite_add_prepare,
                                       lambda op, xs, ins, c: tfk.sub(xs[0], xs[1], c))))
register(OpSpec("mul", "product of two tensors (TFLite's MUL, broadcasting)", 2,
                _broadcast_shape,
                None, attrs={"activation": ACTIVATION}, acc_bound=_mul_bound,
                tflite=TfliteSemantics(_tflite_mul_prepare,
                                       lambda op, xs, ins, c: tfk.mul(xs[0], xs[1], **c))))
