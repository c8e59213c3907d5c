"""A float `.tflite` -> a FloatGraph, which our quantizer then takes like an ONNX import.

A file whose activations and weights are all float32 (no int8 anywhere) carries no
quantization to keep, so it becomes the same float graph an ONNX import gives:
TFLite's NHWC activations become CxHxW tensors, OHWI / 1HW(C*M) filters become OIHW,
a flatten of an NHWC tensor before FULLY_CONNECTED permutes that layer's weight columns
(`layout.flatten_order`, shared with the ONNX and int8 TFLite importers), fused
activations become activation ops, a trailing SOFTMAX is dropped (the argmax is
unchanged, as for ONNX). Anything else is refused by operator index and builtin name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MnistEdgeError
from ..fgraph import INPUT, FloatGraph, FOp
from .layout import flatten_order, is_identity, permute_columns
from .tflite_qgraph import CONV_OPS, HWC, ir_shape, same_padding
from .tflite_reader import Operator, Tensor, TFLiteModel

FUSED = {"NONE": None, "RELU": ("relu", {}), "RELU6": ("clip", {"min": 0.0, "max": 6.0}),
         "RELU_N1_TO_1": ("clip", {"min": -1.0, "max": 1.0})}
UNARY = {"RELU": ("relu", {}), "RELU6": ("clip", {"min": 0.0, "max": 6.0}),
         "LOGISTIC": ("sigmoid", {}), "TANH": ("tanh", {}), "HARD_SWISH": ("hardswish", {})}
SUPPORTED = ("CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, MAX_POOL_2D, "
             "MEAN, RESHAPE, SQUEEZE, RELU, RELU6, LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, "
             "SOFTMAX (last)")


def is_float_model(model: TFLiteModel) -> bool:
    """Every tensor is float32 or an integer shape/axes operand: nothing is quantized."""
    return (model.tensors[model.inputs[0]].dtype == "float32"
            and not any(t.dtype == "int8" for t in model.tensors))


def _ir_shape(t: Tensor) -> tuple[int, ...]:
    return ir_shape(t, "float graph")


class _Converter:
    """Walks the operators in order; `views` maps a TFLite tensor to (FloatGraph tensor,
    its IR shape, the HWC order of a flattened CxHxW tensor or None)."""

    def __init__(self, model: TFLiteModel, name: str) -> None:
        self.model = model
        self.name = name
        self.ops: list[FOp] = []
        self.views: dict[int, tuple[str, tuple[int, ...], np.ndarray | None]] = {}
        self.mapped: list[dict[str, Any]] = []
        self.dropped: list[str] = []

    def t(self, i: int) -> Tensor:
        return self.model.tensors[i]

    def refuse(self, op: Operator, why: str) -> MnistEdgeError:
        return MnistEdgeError(f"{op.label()}: {why}")

    def emit(self, op: Operator, kind: str, inputs: list[str], shape: tuple[int, ...],
             attrs: dict | None = None, arrays: dict | None = None, bind: bool = True,
             order: np.ndarray | None = None) -> str:
        name = f"{kind}_{op.index}"
        while any(o.name == name for o in self.ops):
            name += "_"
        self.ops.append(FOp(name, kind, dict(attrs or {}), dict(arrays or {}), inputs))
        self.mapped[-1]["fgraph"].append(name)
        if bind:
            self.views[op.outputs[0]] = (name, shape, order)
        return name

    def activation(self, op: Operator, src: str, shape: tuple[int, ...]) -> None:
        act = op.options.get("fused_activation", "NONE")
        if act not in FUSED:
            raise self.refuse(op, f"fused activation {act} is not supported")
        if FUSED[act] is not None:
            kind, attrs = FUSED[act]
            self.emit(op, kind, [src], shape, attrs)

    def read(self, op: Operator, k: int = 0, feature_map: bool | None = None):
        i = op.inputs[k]
        if i not in self.views:
            raise self.refuse(op, "reads a constant tensor as an activation, which is not "
                              "supported")
        name, shape, order = self.views[i]
        if feature_map is not None and (len(shape) == 3) != feature_map:
            raise self.refuse(op, f"needs a {'[1,H,W,C]' if feature_map else '[1,D]'} input")
        return name, shape, order

    def run(self) -> FloatGraph:
        m = self.model
        if len(m.inputs) != 1 or len(m.outputs) != 1:
            raise MnistEdgeError(f"the model has {len(m.inputs)} inputs and {len(m.outputs)} "
                                 "outputs; the float graph takes one input and one output")
        shape = _ir_shape(self.t(m.inputs[0]))
        self.views[m.inputs[0]] = (INPUT, shape, None)
        for op in m.operators:
            self.mapped.append({"operator": op.index, "builtin": op.op, "fgraph": []})
            handler = getattr(self, f"_op_{op.op}", None)
            if handler is None:
                raise self.refuse(op, f"has no float-graph mapping (supported: {SUPPORTED})")
            handler(op)
        name, out_shape, order = self.views.get(m.outputs[0], (None, (), None))
        if name is None or name == INPUT:
            raise MnistEdgeError("the model's output is not computed by a mapped operator")
        if len(out_shape) == 3:
            self.mapped.append({"operator": None, "builtin": "(output)", "fgraph": []})
            flat = FOp(f"flatten_{name}", "flatten", {}, {}, [name])
            self.ops.append(flat)
            name = flat.name
        elif order is not None:
            raise MnistEdgeError("the model's output is a flat vector in a permuted order, "
                                 "which the float graph cannot give back")
        if self.ops[-1].name != name:
            raise MnistEdgeError("the model's output is not written by its last operator")
        return FloatGraph(self.name, self.ops, None, shape, "features")

    # ------------------------------------------------------------ operators
    def _op_CONV_2D(self, op: Operator) -> None:
        src, shape, _ = self.read(op, 0, feature_map=True)
        x, w, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        o = op.options
        if (o["dilation_h"], o["dilation_w"]) != (1, 1):
            raise self.refuse(op, "dilated convolutions are not supported in float graphs")
        depthwise = op.op == "DEPTHWISE_CONV_2D"
        weight = w.data.transpose(3, 0, 1, 2) if depthwise else w.data.transpose(0, 3, 1, 2)
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        kh, kw = weight.shape[2:]
        top, bottom = same_padding(o["padding"], x.shape[1], kh, o["stride_h"], 1)
        left, right = same_padding(o["padding"], x.shape[2], kw, o["stride_w"], 1)
        bias = self._bias(op, weight.shape[0])
        attrs = {"kernel": [int(kh), int(kw)], "stride": [o["stride_h"], o["stride_w"]],
                 "padding": [top, left, bottom, right]}
        if depthwise:
            attrs["groups"] = int(x.shape[3])
        y_shape = _ir_shape(out)
        y = self.emit(op, "conv2d", [src], y_shape, attrs, {"weight": weight, "bias": bias})
        self.activation(op, y, y_shape)

    _op_DEPTHWISE_CONV_2D = _op_CONV_2D

    def _bias(self, op: Operator, channels: int) -> np.ndarray:
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            return self.t(op.inputs[2]).data.reshape(channels).astype(np.float32)
        return np.zeros(channels, np.float32)

    def _flat(self, op: Operator, src: str, shape: tuple[int, ...], order) -> tuple[str, Any]:
        if len(shape) == 1:
            return src, order
        flat = self.emit(op, "flatten", [src], (int(np.prod(shape)),), bind=False)
        o = flatten_order(shape, HWC)
        return flat, None if is_identity(o) else o

    def _op_FULLY_CONNECTED(self, op: Operator) -> None:
        w, out = self.t(op.inputs[1]), self.t(op.outputs[0])
        units, depth = w.shape
        if int(np.prod(self.t(op.inputs[0]).shape)) != depth or len(out.shape) != 2:
            raise self.refuse(op, "only one row (a [1,D] input) to a [1,U] output is supported")
        src, shape, order = self.read(op, 0)
        src, order = self._flat(op, src, shape, order)
        weight = permute_columns(w.data.astype(np.float32), order)
        y = self.emit(op, "linear", [src], (units,), {},
                      {"weight": np.ascontiguousarray(weight), "bias": self._bias(op, units)})
        self.activation(op, y, (units,))

    def _op_ADD(self, op: Operator) -> None:
        a, b = self.read(op, 0), self.read(op, 1)
        if a[1] != b[1] or not _same(a[2], b[2]):
            raise self.refuse(op, "only inputs of one shape and layout add in a float graph")
        y = self.emit(op, "add", [a[0], b[0]], a[1], order=a[2])
        self.activation(op, y, a[1])

    def _op_AVERAGE_POOL_2D(self, op: Operator) -> None:
        src, shape, _ = self.read(op, 0, feature_map=True)
        o, x = op.options, self.t(op.inputs[0])
        pads = (same_padding(o["padding"], x.shape[1], o["filter_h"], o["stride_h"], 1)
                + same_padding(o["padding"], x.shape[2], o["filter_w"], o["stride_w"], 1))
        if any(pads):
            raise self.refuse(op, "padded pools are not supported in float graphs")
        kind = "avgpool2d" if op.op == "AVERAGE_POOL_2D" else "maxpool2d"
        y_shape = _ir_shape(self.t(op.outputs[0]))
        y = self.emit(op, kind, [src], y_shape, {"kernel": [o["filter_h"], o["filter_w"]],
                                                 "stride": [o["stride_h"], o["stride_w"]]})
        self.activation(op, y, y_shape)

    _op_MAX_POOL_2D = _op_AVERAGE_POOL_2D

    def _op_MEAN(self, op: Operator) -> None:
        src, shape, _ = self.read(op, 0, feature_map=True)
        if {int(a) % 4 for a in self.t(op.inputs[1]).data.ravel()} != {1, 2}:
            raise self.refuse(op, "only a MEAN over H and W is supported")
        keep = bool(op.options["keep_dims"])
        gap = self.emit(op, "global_avgpool", [src], (shape[0], 1, 1), bind=keep)
        if not keep:
            self.emit(op, "flatten", [gap], (shape[0],))

    def _op_RESHAPE(self, op: Operator) -> None:
        src, shape, order = self.read(op, 0)
        x, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if len(out.shape) == 2 and out.shape[0] == 1:
            flat, order = self._flat(op, src, shape, order)
            self.views[op.outputs[0]] = (flat, (int(np.prod(shape)),), order)
        elif len(out.shape) == 4 and len(x.shape) == 4 and _ir_shape(out) == shape:
            self.views[op.outputs[0]] = (src, shape, order)
        else:
            raise self.refuse(op, f"reshapes {list(x.shape)} into {list(out.shape)}; only "
                              "flattening to [1,D] is supported in float graphs")
        self.mapped[-1]["fgraph"] = self.mapped[-1]["fgraph"] or ["(no op: a view)"]

    _op_SQUEEZE = _op_RESHAPE

    def _unary(self, op: Operator) -> None:
        src, shape, order = self.read(op, 0)
        kind, attrs = (("leaky_relu", {"alpha": float(np.float32(op.options["alpha"]))})
                       if op.op == "LEAKY_RELU" else UNARY[op.op])
        self.emit(op, kind, [src], shape, attrs, order=order)

    _op_RELU = _op_RELU6 = _op_LOGISTIC = _op_TANH = _op_HARD_SWISH = _op_LEAKY_RELU = _unary

    def _op_SOFTMAX(self, op: Operator) -> None:
        if op.outputs[0] != self.model.outputs[0]:
            raise self.refuse(op, "a SOFTMAX is supported only as the model's last operator "
                              "(dropped: the argmax is unchanged)")
        self.views[op.outputs[0]] = self.read(op, 0)
        self.dropped.append(op.label())
        self.mapped[-1]["fgraph"] = ["(dropped: the argmax is unchanged)"]


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None
                                         and bool(np.array_equal(a, b)))


def tflite_to_fgraph(model: TFLiteModel, name: str
                     ) -> tuple[FloatGraph, list[dict[str, Any]], list[str]]:
    """The FloatGraph of a parsed float model, per operator what it became, and the
    operators dropped (a trailing SOFTMAX)."""
    conv = _Converter(model, name)
    graph = conv.run()
    return graph, conv.mapped, conv.dropped


__all__ = ["CONV_OPS", "is_float_model", "tflite_to_fgraph"]
