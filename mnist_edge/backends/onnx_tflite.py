"""The ONNX lowerings of the `tflite` arithmetic: TFLM's kernels as standard integer ops.

`backends.onnx` keeps one lowering table keyed by op kind; for a graph in the tflite
arithmetic its entries call these. Every constant comes from `QGraph.prepare(i)` (TFLM's
Prepare); the arithmetic is spelled with the int64 blocks of `onnx_fixed`, so onnxruntime
computes golden's numbers exactly, with no float anywhere:

* CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: ConvInteger (the int32 accumulator; padding
  takes the input zero point, i.e. adds nothing, as TFLM skips outside taps), plus the
  bias, then MultiplyByQuantizedMultiplier per output channel, the zero point and the
  fused activation's clamp;
* AVERAGE_POOL_2D: an all-ones depthwise ConvInteger sums the raw int8 taps inside the
  image, then the sum is divided by each position's tap count rounding half away from zero;
* MAX_POOL_2D: MaxPool with pads (onnxruntime's windows skip the padding), then the clamp;
* ADD/SUB: each input (q - z) << 20 rescaled by its own multiplier, the sum rescaled to the
  output; MUL: (q_a - z_a)(q_b - z_b) rescaled once;
* MEAN over H and W (QuantizedMeanOrSum): ReduceSum of the raw int8 values, minus z_in
  times the count, MultiplyByQuantizedMultiplier with 1/count folded into the multiplier;
* PAD / PADV2 (the `pad` kind): Pad with the int8 value; RESHAPE (the `reshape` kind,
  where the element order stays): Reshape;
* SOFTMAX: the exp of each difference to the row maximum is a function of that difference
  alone (256 values), so it is a Gather of golden's own fixed-point exp; the sum, gemmlowp's
  reciprocal (three Newton-Raphson steps) and the final rounding shift are int64 ops.

Accumulators stay below 2**31 (the QGraph refuses a larger bound), so ConvInteger's int32
sum is exact; where a left shift may take a value out of int32, it is wrapped as TFLM's C++
wraps it. Refused by name: an ADD/SUB whose rescale multiplier is not below one (TFLM's
Prepare requires it) and, in `backends.onnx`, the QDQ form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto

from ..errors import MnistEdgeError
from ..ops import gemmlowp as g
from ..ops.numeric import pad_hw, windows
from ..requant import INT8_MAX, INT8_MIN, multiply_by_quantized_multiplier_greater_than_one
from . import onnx_fixed as fx

if TYPE_CHECKING:
    from ..qgraph import QGraph
    from .onnx import _Builder, _Quant

I64 = np.int64
INT32_LIMIT = 1 << 31


def _centred(b: _Builder, q: _Quant, h: str, zero_point: int, name: str) -> str:
    """q - z as int64 from an activation tensor in the exported type."""
    wide = b.node("Cast", [h], f"{name}.int64", f"{name}_to_int64", to=TensorProto.INT64)
    if zero_point + q.offset == 0:
        return wide
    return b.node("Sub", [wide, fx.const(b, zero_point + q.offset)], f"{name}.centred",
                  f"{name}_centred")


def _to_activation(b: _Builder, q: _Quant, v: str, zero_point: int, act: tuple[int, int],
                   name: str) -> str:
    """int64 v -> clamp(v + z_y, act) in the exported activation type (uint8: + 128)."""
    moved = b.node("Add", [v, fx.const(b, zero_point + q.offset)], f"{name}.out64",
                   f"{name}_plus_zero_point") if zero_point + q.offset else v
    lo, hi = max(act[0], INT8_MIN) + q.offset, min(act[1], INT8_MAX) + q.offset
    clamped = b.node("Clip", [moved, fx.const(b, lo), fx.const(b, hi)], f"{name}.clamped",
                     f"{name}_clamp")
    return b.node("Cast", [clamped], name, f"{name}_to_{q.activations}",
                  to=TensorProto.UINT8 if q.activations == "uint8" else TensorProto.INT8)


def _channels(values, ndim: int = 4) -> np.ndarray:
    """Per-channel constants shaped to broadcast on [N, C, H, W]."""
    return np.asarray(values, I64).reshape(-1, *([1] * (ndim - 2)))


def _conv_integer(b: _Builder, q: _Quant, op, h: str, weight: np.ndarray, x_zero: int,
                  attrs: dict) -> str:
    """ConvInteger -> int64 accumulator; `x_zero` (int8 domain) pads and is subtracted."""
    from .onnx import _weights

    w, w_zero = _weights(q, weight)
    xz = b.init(f"{op.name}.x_zero_point", np.array(x_zero + q.offset, q.dtype))
    inputs = [h, b.init(f"{op.name}.weight", w), xz]
    if q.activations == "uint8":
        inputs.append(b.init(f"{op.name}.w_zero_point", np.array(w_zero[0], np.uint8)))
    acc = b.node("ConvInteger", inputs, f"{op.name}.acc32", f"{op.name}_conv_integer", **attrs)
    return b.node("Cast", [acc], f"{op.name}.acc", f"{op.name}_acc_to_int64",
                  to=TensorProto.INT64)


def lower_weighted(b: _Builder, q: _Quant, graph: QGraph, i: int, h: str) -> str:
    """conv2d / linear: TFLM's ConvPerChannel / DepthwiseConvPerChannel / FullyConnected."""
    from .onnx import _conv_like

    op, x, c = graph.ops[i], graph.input_of(i), graph.prepare(i)
    bound = graph.max_accumulator(i)  # < 2**31: the QGraph refuses more on load
    spec = _conv_like(op, x)
    attrs = dict(spec["attrs"])
    dilation = list(op.spec.attr(op, "dilation")) if op.kind == "conv2d" else [1, 1]
    if dilation != [1, 1]:
        attrs["dilations"] = dilation
    acc = _conv_integer(b, q, op, h, spec["weight"], x.zero_point, attrs)
    acc = b.node("Add", [acc, b.init(f"{op.name}.bias", _channels(spec["bias"]))],
                 f"{op.name}.acc_bias", f"{op.name}_plus_bias")
    shift = _channels(c["shift"])
    wrap = bound * (1 << int(max(shift.max(), 0))) >= INT32_LIMIT
    y = fx.mbqm(b, acc, _channels(c["mult"]), shift, f"{op.name}.scaled", wrap)
    return _to_activation(b, q, y, op.output.zero_point, c["act"], op.name)


def pool_counts(op, x) -> np.ndarray:
    """[OH, OW] number of in-image taps of each window (TFLM's filter_count)."""
    pad = list(op.spec.attr(op, "padding"))
    ones = pad_hw(np.ones((1, 1, *x.shape[1:]), I64), pad)
    counts = windows(ones, op.attrs["kernel"], op.attrs["stride"]).sum(axis=(4, 5))[0, 0]
    return counts[: op.output.shape[1], : op.output.shape[2]].astype(I64)


def lower_avgpool(b: _Builder, q: _Quant, graph: QGraph, i: int, h: str) -> str:
    """AVERAGE_POOL_2D: Σ q over the in-image taps (ConvInteger with all-ones weights and
    x_zero_point = q 0, so padding adds nothing), / count rounded half away from zero."""
    op, x, c = graph.ops[i], graph.input_of(i), graph.prepare(i)
    channels = x.shape[0]
    attrs = {"kernel_shape": list(op.attrs["kernel"]), "strides": list(op.attrs["stride"]),
             "group": channels}
    pad = list(op.spec.attr(op, "padding"))
    if any(pad):
        attrs["pads"] = pad
    acc = _conv_integer(b, q, op, h, np.ones((channels, 1, *op.attrs["kernel"]), np.int8), 0,
                        attrs)
    counts = pool_counts(op, x)
    mean = fx.round_divide(b, acc, b.init(f"{op.name}.count", counts),
                           b.init(f"{op.name}.half_count", counts // 2), f"{op.name}.mean")
    return _to_activation(b, q, mean, 0, c["act"], op.name)


def pool_clamp(graph: QGraph, i: int) -> tuple[int, int] | None:
    """The fused activation's clamp of a pool, or None where it clamps nothing."""
    lo, hi = graph.prepare(i)["act"]
    return None if (lo, hi) == (INT8_MIN, INT8_MAX) else (lo, hi)


def lower_add_sub(b: _Builder, q: _Quant, graph: QGraph, i: int, ins: list[str]) -> str:
    """ADD / SUB (AddFunc / SubFunc): ((q_i - z_i) << 20) rescaled by each input's
    multiplier, summed (no int32 wrap: |term| < 2**28), rescaled to the output."""
    op, tensors, c = graph.ops[i], graph.inputs_of(i), graph.prepare(i)
    if max(c["input1_shift"], c["input2_shift"], c["output_shift"]) > 0:
        raise MnistEdgeError(f"op {op.name} ({op.kind}): a rescale multiplier is not below "
                             "one, which TFLM's ADD/SUB does not allow")
    terms = []
    for k, (h, t) in enumerate(zip(ins, tensors, strict=True), start=1):
        n = f"{op.name}.in{k}"
        wide = b.node("Mul", [_centred(b, q, h, t.zero_point, n),
                              fx.const(b, 1 << c["left_shift"])], f"{n}.shifted",
                      f"{n}_shift_left")
        high = fx.srdhm(b, wide, fx.const(b, c[f"input{k}_multiplier"]), f"{n}.high")
        terms.append(fx.rdbpot(b, high, -c[f"input{k}_shift"], f"{n}.scaled"))
    raw = b.node("Add" if op.kind == "add" else "Sub", terms, f"{op.name}.raw",
                 f"{op.name}_{op.kind}")
    high = fx.srdhm(b, raw, fx.const(b, c["output_multiplier"]), f"{op.name}.high")
    y = fx.rdbpot(b, high, -c["output_shift"], f"{op.name}.scaled")
    return _to_activation(b, q, y, c["output_offset"], c["act"], op.name)


def lower_mul(b: _Builder, q: _Quant, graph: QGraph, i: int, ins: list[str]) -> str:
    """MUL (MulElementwise): (q_a - z_a)(q_b - z_b), MultiplyByQuantizedMultiplier once."""
    op, tensors, c = graph.ops[i], graph.inputs_of(i), graph.prepare(i)
    a, bb = (_centred(b, q, h, t.zero_point, f"{op.name}.in{k}")
             for k, (h, t) in enumerate(zip(ins, tensors, strict=True), start=1))
    prod = b.node("Mul", [a, bb], f"{op.name}.prod", f"{op.name}_product")
    wrap = graph.max_accumulator(i) * (1 << max(c["shift"], 0)) >= INT32_LIMIT
    y = fx.mbqm(b, prod, np.array(c["mult"], I64), np.array(c["shift"], I64),
                f"{op.name}.scaled", wrap)
    return _to_activation(b, q, y, c["output_zp"], c["act"], op.name)


def lower_mean(b: _Builder, q: _Quant, graph: QGraph, i: int, h: str) -> str:
    """MEAN over H and W (reference_ops::QuantizedMeanOrSum, `tflite_kernels.mean_hw`):
    the int32 sum of the raw values minus z_in * count, rescaled, plus z_out, saturated."""
    op, c = graph.ops[i], graph.prepare(i)
    raw = _centred(b, q, h, 0, f"{op.name}.in")
    total = b.node("ReduceSum", [raw, b.const([2, 3], I64)], f"{op.name}.total",
                   f"{op.name}_sum", keepdims=1)
    shifted = fx.wrap32(b, b.node("Sub", [fx.wrap32(b, total, f"{op.name}.total32"),
                                          fx.const(b, c["input_zp"] * c["count"])],
                                  f"{op.name}.minus_zero", f"{op.name}_minus_zero_point"),
                        f"{op.name}.shifted")
    y = fx.mbqm(b, shifted, np.array(c["mult"], I64), np.array(c["shift"], I64),
                f"{op.name}.scaled", wrap=True)
    return _to_activation(b, q, y, c["output_zp"], (INT8_MIN, INT8_MAX), op.name)


def lower_pad(b: _Builder, q: _Quant, graph: QGraph, i: int, h: str) -> str:
    """PAD / PADV2 of H and W: the input's bytes inside a border of the op's int8 value."""
    op = graph.ops[i]
    top, left, bottom, right = (int(p) for p in op.attrs.get("padding", [0, 0, 0, 0]))
    pads = b.init(f"{op.name}.pads", np.array([0, 0, top, left, 0, 0, bottom, right], I64))
    value = b.init(f"{op.name}.value", np.array(op.attrs["value"] + q.offset, q.dtype))
    return b.node("Pad", [h, pads, value], op.name, f"{op.name}_pad", mode="constant")


def lower_reshape(b: _Builder, graph: QGraph, i: int, h: str) -> str:
    """RESHAPE where the element order stays: the same bytes, 4-D ([N, D, 1, 1] for a
    vector, as the exporter keeps every vector)."""
    op = graph.ops[i]
    shape = list(op.output.shape) if len(op.output.shape) == 3 else [op.output.shape[0], 1, 1]
    return b.node("Reshape", [h, b.init(f"{op.name}.shape", np.array([0, *shape], I64))],
                  op.name, f"{op.name}_reshape")


def softmax_tables(c: dict) -> tuple[np.ndarray, np.ndarray]:
    """(exp, term) of every difference d = x - max(x) in 0, -1, ..., -255, indexed by -d:
    gemmlowp's exp_on_negative_values of the scaled difference (Q0.31) and its Q12.19
    rescale for the sum; both 0 where d < diff_min (TFLM leaves those out and outputs
    -128, which a zero exp also gives)."""
    d = -np.arange(256, dtype=I64)
    keep = d >= c["diff_min"]
    scaled = multiply_by_quantized_multiplier_greater_than_one(
        np.where(keep, d, 0), c["input_multiplier"], c["input_left_shift"])
    exp = g.exp_on_negative_values(scaled, 5)
    return (np.where(keep, exp, 0).astype(I64),
            np.where(keep, g.rescale(exp, 0, 12), 0).astype(I64))


def lower_softmax(b: _Builder, q: _Quant, graph: QGraph, i: int, h: str) -> str:
    """SOFTMAX int8 -> int8 (reference_ops::Softmax) over the [N, K, 1, 1] vector."""
    op, c = graph.ops[i], graph.prepare(i)
    n = op.name
    flat = b.node("Flatten", [h], f"{n}.flat", f"{n}_flatten", axis=1)
    x = _centred(b, q, flat, 0, f"{n}.x")  # the int8 values themselves
    axis = b.init("const.axes.1", np.array([1], I64))
    top = b.node("ReduceMax", [x, axis], f"{n}.max", f"{n}_max", keepdims=1)
    neg_diff = b.node("Sub", [top, x], f"{n}.neg_diff", f"{n}_neg_diff")
    exp_table, term_table = softmax_tables(c)
    exp = b.node("Gather", [b.init(f"{n}.exp_table", exp_table), neg_diff], f"{n}.exp",
                 f"{n}_exp", axis=0)
    terms = b.node("Gather", [b.init(f"{n}.term_table", term_table), neg_diff], f"{n}.terms",
                   f"{n}_terms", axis=0)
    total = fx.wrap32(b, b.node("ReduceSum", [terms, axis], f"{n}.sum_raw", f"{n}_sum",
                                keepdims=1), f"{n}.sum")
    scale, bits = fx.get_reciprocal(b, total, 12, f"{n}.reciprocal")
    exponent = b.node("Add", [bits, fx.const(b, 31 - 8)], f"{n}.exponent", f"{n}_exponent")
    y = fx.rdbpot_tensor(b, fx.srdhm(b, scale, exp, f"{n}.high"), exponent, f"{n}.scaled")
    out = _to_activation(b, q, y, INT8_MIN, (INT8_MIN, INT8_MAX), f"{n}.flat_out")
    return b.node("Unsqueeze", [out, b.const([2, 3], I64)], n, f"{n}_unsqueeze")
