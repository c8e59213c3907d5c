"""Graph-level checks of a parsed `.tflite`: what TFLite Micro's int8 path can run.

Run after parsing so that every later step (kernels, QGraph mapping) may assume: tensors
are read only after they are written, activations are int8 (float only at QUANTIZE /
DEQUANTIZE edges, or a whole float model), each operator has the inputs, ranks and
output shape its kernel expects. Every refusal names the operator.
"""

from __future__ import annotations

import numpy as np

from .tflite_reader import Operator, Tensor, TFLiteModel, _Refused

EDGE_OPS = ("QUANTIZE", "DEQUANTIZE")
_ARITY = {"CONV_2D": (2, 3), "DEPTHWISE_CONV_2D": (2, 3), "FULLY_CONNECTED": (2, 3),
          "ADD": (2, 2), "SUB": (2, 2), "MUL": (2, 2), "PAD": (2, 2), "PADV2": (2, 3),
          "RESHAPE": (1, 2), "MEAN": (2, 2), "CONCATENATION": (1, 1 << 16)}
_UNARY = ("SQUEEZE", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "LOGISTIC", "TANH",
          "HARD_SWISH", "LEAKY_RELU", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE")


def check_model(model: TFLiteModel) -> None:
    _check_dataflow(model)
    for op in model.operators:
        _check_types(op, model.tensors)
        _check_shapes(op, model.tensors)


def _name(t: Tensor) -> str:
    return f"tensor {t.index} '{t.name}'"


def _check_dataflow(model: TFLiteModel) -> None:
    """Each tensor an operator reads is a subgraph input, a constant or written before."""
    ready = set(model.inputs) | {t.index for t in model.tensors if t.is_constant}
    for op in model.operators:
        for i in op.inputs:
            if i >= 0 and i not in ready:
                raise _Refused(f"{op.label()} reads {_name(model.tensors[i])} before any "
                               "operator writes it")
        for o in op.outputs:
            if model.tensors[o].is_constant or o in model.inputs:
                raise _Refused(f"{op.label()} writes {_name(model.tensors[o])}, which is a "
                               "constant or a subgraph input")
            ready.add(o)
    for o in model.outputs:
        if o not in ready:
            raise _Refused(f"subgraph output {_name(model.tensors[o])} is never written")
    if not model.inputs or not model.outputs:
        raise _Refused("the subgraph declares no inputs or no outputs")


def _check_types(op: Operator, tensors: tuple[Tensor, ...]) -> None:
    used = [tensors[i] for i in (*op.inputs, *op.outputs) if i >= 0]
    for t in used:
        if t.dtype == "int16":
            raise _Refused(f"{op.label()} uses int16 {_name(t)}; int16 activations "
                           "(16x8 quantization) are not supported")
        if t.dtype not in ("int8", "int32", "int64", "float32"):
            raise _Refused(f"{op.label()} uses {_name(t)} of type {t.dtype}, which is not "
                           "supported (int8 activations, int8 weights, int32 biases)")
    acts = [tensors[i] for i in op.inputs[:1]] + [tensors[i] for i in op.outputs]
    if op.op in ("ADD", "SUB", "MUL", "CONCATENATION"):
        acts += [tensors[i] for i in op.inputs[1:] if i >= 0]
    if op.op in EDGE_OPS:
        return
    kinds = {t.dtype for t in acts}
    weights = [tensors[i] for i in op.inputs[1:] if i >= 0 and tensors[i].dtype == "int8"]
    if "float32" in kinds and ("int8" in kinds or weights):
        raise _Refused(f"{op.label()} is a hybrid float/int8 layer (float activations with "
                       "int8 weights or outputs); quantize the model fully to int8")
    for t in acts:
        if t.dtype == "int8" and t.quantization is None:
            raise _Refused(f"{op.label()}: int8 {_name(t)} has no quantization parameters")
        if t.dtype == "int8" and t.quantization.per_channel:
            raise _Refused(f"{op.label()}: activation {_name(t)} is quantized per channel")
        if t.dtype not in ("int8", "float32"):
            raise _Refused(f"{op.label()}: activation {_name(t)} is {t.dtype}; only int8 "
                           "(or float32 at QUANTIZE/DEQUANTIZE) is supported")


def _shape_error(op: Operator, detail: str) -> _Refused:
    return _Refused(f"{op.label()}: {detail}")


def _out_size(padding: str, size: int, k: int, stride: int, dilation: int) -> int:
    """TFLM's ComputeOutSize."""
    eff = (k - 1) * dilation + 1
    return (size + stride - 1) // stride if padding == "SAME" else (size + stride - eff) // stride


def _check_shapes(op: Operator, tensors: tuple[Tensor, ...]) -> None:
    n_in = len(op.inputs)
    lo, hi = _ARITY.get(op.op, (1, 1))
    if not lo <= n_in <= hi or any(i < 0 for i in op.inputs[:lo]):
        raise _shape_error(op, f"has {n_in} inputs; expected {lo}..{hi}")
    if len(op.outputs) != 1:
        raise _shape_error(op, f"has {len(op.outputs)} outputs; expected 1")
    x = tensors[op.inputs[0]]
    y = tensors[op.outputs[0]]
    o = op.options
    for key in ("stride_w", "stride_h", "dilation_w", "dilation_h", "filter_w", "filter_h"):
        if key in o and not 1 <= o[key] <= 1 << 16:
            raise _shape_error(op, f"{key} = {o[key]} is out of range")
    if o.get("fused_activation") in ("TANH", "SIGN_BIT"):
        raise _shape_error(op, f"fused activation {o['fused_activation']} is not supported")
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        _check_conv(op, x, tensors[op.inputs[1]], y, tensors)
    elif op.op == "FULLY_CONNECTED":
        _check_fc(op, x, tensors[op.inputs[1]], y, tensors)
    elif op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        _need_rank(op, x, 4)
        want = (x.shape[0], _out_size(o["padding"], x.shape[1], o["filter_h"], o["stride_h"], 1),
                _out_size(o["padding"], x.shape[2], o["filter_w"], o["stride_w"], 1), x.shape[3])
        _need_shape(op, y, want)
        if x.dtype == "int8" and not _same_quant(x, y):
            raise _shape_error(op, "input and output quantization differ (TFLM requires equal)")
    elif op.op in ("ADD", "SUB", "MUL"):
        a, b = x, tensors[op.inputs[1]]
        try:
            want = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise _shape_error(op, f"shapes {list(a.shape)} and {list(b.shape)} do not "
                                   "broadcast") from None
        _need_shape(op, y, tuple(want))
    elif op.op in ("RESHAPE", "SQUEEZE"):
        if int(np.prod(x.shape)) != int(np.prod(y.shape)):
            raise _shape_error(op, f"reshapes {list(x.shape)} into {list(y.shape)}")
    elif op.op == "CONCATENATION":
        _check_concat(op, tensors, y)
    elif op.op in ("PAD", "PADV2"):
        _check_pad(op, x, tensors[op.inputs[1]], y)
    elif op.op == "MEAN":
        _check_mean(op, x, tensors[op.inputs[1]], y)
    elif op.op in _UNARY and x.shape != y.shape:
        raise _shape_error(op, f"output shape {list(y.shape)} differs from input "
                               f"{list(x.shape)}")


def _same_quant(a: Tensor, b: Tensor) -> bool:
    """TFLM's pooling Prepare: scales within 1e-6 (in double), equal zero points."""
    qa, qb = a.quantization, b.quantization
    return (qa is not None and qb is not None
            and abs(float(qa.scale[0]) - float(qb.scale[0])) <= 1e-6
            and int(qa.zero_point[0]) == int(qb.zero_point[0]))


def _need_rank(op: Operator, t: Tensor, rank: int) -> None:
    if len(t.shape) != rank:
        raise _shape_error(op, f"{_name(t)} has rank {len(t.shape)}; expected {rank}")


def _need_shape(op: Operator, t: Tensor, want: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(want):
        raise _shape_error(op, f"output shape {list(t.shape)}; the inputs give {list(want)}")


def _need_const(op: Operator, t: Tensor, what: str) -> None:
    if not t.is_constant:
        raise _shape_error(op, f"{what} {_name(t)} must be a constant")


def _check_bias(op: Operator, tensors: tuple[Tensor, ...], channels: int) -> None:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = tensors[op.inputs[2]]
        _need_const(op, b, "bias")
        if b.dtype not in ("int32", "float32") or int(np.prod(b.shape)) != channels:
            raise _shape_error(op, f"bias {_name(b)} must hold {channels} int32 values")


def _check_weights_quant(op: Operator, w: Tensor, channels: int, axis: int) -> None:
    q = w.quantization
    if w.dtype != "int8":
        return
    if q is None:
        raise _shape_error(op, f"weights {_name(w)} have no quantization parameters")
    if q.per_channel and (q.axis != axis or q.scale.size != channels):
        raise _shape_error(op, f"weights {_name(w)}: per-channel scales must run along "
                               f"dimension {axis} ({channels} channels)")


def _check_conv(op: Operator, x: Tensor, w: Tensor, y: Tensor,
                tensors: tuple[Tensor, ...]) -> None:
    o = op.options
    for t in (x, w, y):
        _need_rank(op, t, 4)
    _need_const(op, w, "filter")
    depthwise = op.op == "DEPTHWISE_CONV_2D"
    out_c = w.shape[3] if depthwise else w.shape[0]
    if depthwise:
        if w.shape[0] != 1 or x.shape[3] == 0 or out_c % x.shape[3]:
            raise _shape_error(op, f"filter {list(w.shape)} does not fit input {list(x.shape)}")
        if o["depth_multiplier"] not in (0, out_c // x.shape[3]):
            raise _shape_error(op, f"depth_multiplier {o['depth_multiplier']} disagrees with "
                                   f"the filter {list(w.shape)} and input {list(x.shape)}")
    elif w.shape[3] != x.shape[3]:
        raise _shape_error(op, f"filter {list(w.shape)} does not fit input {list(x.shape)} "
                               "(grouped convolutions are not supported)")
    want = (x.shape[0],
            _out_size(o["padding"], x.shape[1], w.shape[1], o["stride_h"], o["dilation_h"]),
            _out_size(o["padding"], x.shape[2], w.shape[2], o["stride_w"], o["dilation_w"]),
            out_c)
    _need_shape(op, y, want)
    _check_bias(op, tensors, out_c)
    _check_weights_quant(op, w, out_c, 3 if depthwise else 0)


def _check_fc(op: Operator, x: Tensor, w: Tensor, y: Tensor,
              tensors: tuple[Tensor, ...]) -> None:
    _need_rank(op, w, 2)
    _need_const(op, w, "weights")
    units, depth = w.shape
    size = int(np.prod(x.shape))
    if depth == 0 or size % depth:
        raise _shape_error(op, f"input {list(x.shape)} does not split into rows of {depth}")
    if op.options["keep_num_dims"]:
        want = (*x.shape[:-1], units)
    else:
        want = (size // depth, units)
    _need_shape(op, y, want)
    if op.options["weights_format"] != 0:
        raise _shape_error(op, "shuffled weights formats are not supported")
    _check_bias(op, tensors, units)
    _check_weights_quant(op, w, units, 0)


def _check_concat(op: Operator, tensors: tuple[Tensor, ...], y: Tensor) -> None:
    ins = [tensors[i] for i in op.inputs]
    rank = len(y.shape)
    axis = op.options["axis"]
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise _shape_error(op, f"axis {op.options['axis']} is out of range for rank {rank}")
    for t in ins:
        if len(t.shape) != rank or any(t.shape[d] != y.shape[d] for d in range(rank)
                                       if d != axis):
            raise _shape_error(op, f"input {_name(t)} {list(t.shape)} does not concatenate "
                                   f"into {list(y.shape)}")
    if sum(t.shape[axis] for t in ins) != y.shape[axis]:
        raise _shape_error(op, f"inputs do not add up to output {list(y.shape)}")


def _check_pad(op: Operator, x: Tensor, p: Tensor, y: Tensor) -> None:
    _need_const(op, p, "paddings")
    if p.shape != (len(x.shape), 2) or p.dtype not in ("int32", "int64"):
        raise _shape_error(op, f"paddings {_name(p)} must be int32 [{len(x.shape)}, 2]")
    pads = p.data.astype(np.int64)
    if np.any(pads < 0):
        raise _shape_error(op, "negative paddings")
    want = tuple(int(d + a + b) for d, (a, b) in zip(x.shape, pads, strict=True))
    _need_shape(op, y, want)


def _check_mean(op: Operator, x: Tensor, axes: Tensor, y: Tensor) -> None:
    _need_const(op, axes, "axes")
    rank = len(x.shape)
    ax = sorted({int(a) + rank if int(a) < 0 else int(a) for a in axes.data.ravel()})
    if any(not 0 <= a < rank for a in ax):
        raise _shape_error(op, f"axes {axes.data.ravel().tolist()} out of range")
    keep = op.options["keep_dims"]
    want = tuple(1 if d in ax else s for d, s in enumerate(x.shape)) if keep else tuple(
        s for d, s in enumerate(x.shape) if d not in ax)
    _need_shape(op, y, want)
