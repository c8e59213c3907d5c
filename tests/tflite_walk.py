"""Test-only executor: a parsed `.tflite` run through `tflite_kernels`, op by op.

Not the golden model (the lead maps TFLite operators into QGraph ops); this is the
smallest walker that proves the kernels and their prepared constants equal TFLite Micro
on whole models. Activations carry the batch in axis 0 where the file has 1.
"""

from __future__ import annotations

import numpy as np

from mnist_edge.importers.tflite_reader import Operator, Tensor, TFLiteModel
from mnist_edge.ops import tflite_kernels as K
from mnist_edge.ops import tflite_prepare as P


def _q(t: Tensor) -> tuple[float, int]:
    return float(t.quantization.scale[0]), int(t.quantization.zero_point[0])


def _act(op: Operator, out: Tensor) -> tuple[int, int]:
    s, z = _q(out)
    return P.activation_range(op.options.get("fused_activation", "NONE"), s, z)


def _bias(model: TFLiteModel, op: Operator) -> np.ndarray | None:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        return model.tensors[op.inputs[2]].data
    return None


def _conv(model: TFLiteModel, op: Operator, x: np.ndarray) -> np.ndarray:
    t_in, w, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    o = op.options
    depthwise = op.op == "DEPTHWISE_CONV_2D"
    channels = w.shape[3] if depthwise else w.shape[0]
    mult, shift = P.conv_multipliers(_q(t_in)[0], w.quantization.scale, _q(out)[0], channels)
    ph, oh = P.window_padding(o["padding"], t_in.shape[1], w.shape[1], o["stride_h"],
                              o["dilation_h"])
    pw, ow = P.window_padding(o["padding"], t_in.shape[2], w.shape[2], o["stride_w"],
                              o["dilation_w"])
    kw = dict(input_zp=_q(t_in)[1], output_zp=_q(out)[1], mult=mult, shift=shift,
              stride=(o["stride_h"], o["stride_w"]), dilation=(o["dilation_h"], o["dilation_w"]),
              pad=(ph, pw), out_hw=(oh, ow), act=_act(op, out))
    if depthwise:
        return K.depthwise_conv_2d(x, w.data, _bias(model, op),
                                   depth_multiplier=channels // t_in.shape[3], **kw)
    return K.conv_2d(x, w.data, _bias(model, op), **kw)


def _fc(model: TFLiteModel, op: Operator, x: np.ndarray) -> np.ndarray:
    t_in, w, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    s_in, z_in = _q(t_in)
    if w.quantization.per_channel:
        mult, shift = P.conv_multipliers(s_in, w.quantization.scale, _q(out)[0], w.shape[0])
    else:
        m, s = P.fc_multiplier(s_in, float(w.quantization.scale[0]), _q(out)[0])
        mult, shift = np.array([m]), np.array([s])
    y = K.fully_connected(x, w.data, _bias(model, op), input_zp=z_in,
                          filter_zp=int(w.quantization.zero_point[0]), output_zp=_q(out)[1],
                          mult=mult, shift=shift, act=_act(op, out))
    return y.reshape(len(x), *out.shape[1:])


def _add_sub(model: TFLiteModel, op: Operator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ta, tb, out = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    p = P.add_sub_params(_q(ta)[0], _q(tb)[0], _q(out)[0])
    p.update(input1_offset=-_q(ta)[1], input2_offset=-_q(tb)[1], output_offset=_q(out)[1],
             act=_act(op, out))
    return (K.add if op.op == "ADD" else K.sub)(a, b, p)


def _pool(model: TFLiteModel, op: Operator, x: np.ndarray) -> np.ndarray:
    t_in, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    o = op.options
    ph, oh = P.window_padding(o["padding"], t_in.shape[1], o["filter_h"], o["stride_h"])
    pw, ow = P.window_padding(o["padding"], t_in.shape[2], o["filter_w"], o["stride_w"])
    fn = K.average_pool_2d if op.op == "AVERAGE_POOL_2D" else K.max_pool_2d
    return fn(x, filt=(o["filter_h"], o["filter_w"]), stride=(o["stride_h"], o["stride_w"]),
              pad=(ph, pw), out_hw=(oh, ow), act=_act(op, out))


def _softmax(model: TFLiteModel, op: Operator, x: np.ndarray) -> np.ndarray:
    m, ls, dmin = P.softmax_params(op.options["beta"], _q(model.tensors[op.inputs[0]])[0])
    return K.softmax(x, input_multiplier=m, input_left_shift=ls, diff_min=dmin)


def run_op(model: TFLiteModel, op: Operator, args: list[np.ndarray | None]) -> np.ndarray:
    """One operator on batched activations (constants come from the model)."""
    x = args[0]
    out = model.tensors[op.outputs[0]]
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return _conv(model, op, x)
    if op.op == "FULLY_CONNECTED":
        return _fc(model, op, x)
    if op.op in ("ADD", "SUB"):
        return _add_sub(model, op, x, args[1])
    if op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return _pool(model, op, x)
    if op.op == "SOFTMAX":
        return _softmax(model, op, x)
    if op.op in ("RESHAPE", "SQUEEZE"):
        return K.reshape(x, out.shape)
    return _elementwise(model, op, args)


def _elementwise(model: TFLiteModel, op: Operator, args: list) -> np.ndarray:
    t_in, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    x = args[0]
    if op.op == "QUANTIZE":
        s, z = _q(out)
        return K.quantize(x, scale=s, zero_point=z)
    if op.op == "DEQUANTIZE":
        s, z = _q(t_in)
        return K.dequantize(x, scale=s, zero_point=z)
    s_in, z_in = _q(t_in)
    if op.op in ("LOGISTIC", "TANH"):
        m, ls, radius = P.sigmoid_tanh_params(s_in)
        fn = K.logistic if op.op == "LOGISTIC" else K.tanh
        return fn(x, input_zp=z_in, input_range_radius=radius, input_multiplier=m,
                  input_left_shift=ls)
    if op.op == "RELU":
        m, sh = P.relu_params(s_in, _q(out)[0])
        return K.relu(x, input_zp=z_in, output_zp=_q(out)[1], mult=m, shift=sh,
                      act=P.activation_range("RELU", *_q(out)))
    if op.op == "LEAKY_RELU":
        mi, si, ma, sa = P.leaky_relu_params(s_in, _q(out)[0], op.options["alpha"])
        return K.leaky_relu(x, input_zp=z_in, output_zp=_q(out)[1], mult_identity=mi,
                            shift_identity=si, mult_alpha=ma, shift_alpha=sa)
    if op.op == "RELU6":
        return K.relu6(x, zero=z_in, six=P.quantize_value(6.0, s_in, z_in))
    if op.op == "MUL":
        t2 = model.tensors[op.inputs[1]]
        m, sh = P.mul_params(s_in, _q(t2)[0], _q(out)[0])
        return K.mul(x, args[1], input1_zp=z_in, input2_zp=_q(t2)[1], output_zp=_q(out)[1],
                     mult=m, shift=sh, act=_act(op, out))
    if op.op == "CONCATENATION":
        axis = op.options["axis"] % len(out.shape)
        if axis == 0:
            raise NotImplementedError("concatenation along the batch axis")
        return K.concatenation(args, axis)
    if op.op in ("PAD", "PADV2"):
        pads = model.tensors[op.inputs[1]].data
        if np.any(pads[0] != 0):
            raise NotImplementedError("padding of the batch axis")
        value = _q(out)[1] if op.op == "PAD" or len(op.inputs) < 3 or op.inputs[2] < 0 \
            else int(model.tensors[op.inputs[2]].data.ravel()[0])
        return K.pad(x, pads, value)
    raise NotImplementedError(f"{op.label()} has no walker entry")


def run(model: TFLiteModel, x: np.ndarray) -> np.ndarray:
    """The model's first output for a batch of inputs shaped (N, *input_shape[1:])."""
    values: dict[int, np.ndarray] = {model.inputs[0]: x}
    for op in model.operators:
        args = []
        for i in op.inputs:
            if i < 0:
                args.append(None)
            elif i in values:
                args.append(values[i])
            else:
                data = model.tensors[i].data
                args.append(None if data is None else data[None] if data.shape[:1] != (1,)
                            else data)
        values[op.outputs[0]] = run_op(model, op, args)
    return values[model.outputs[0]]
