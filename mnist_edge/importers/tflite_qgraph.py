"""An int8 `.tflite` -> a QGraph in the `tflite` arithmetic, keeping the file's numbers.

The file is already quantized, so there is no float graph and no calibration: every int8
weight, int32 bias, scale and zero point is taken as it is, and the graph declares
`arithmetic: tflite` so that golden (and every backend that implements it) computes what
TensorFlow Lite Micro computes. Layouts are converted here, once: TFLite's NHWC
activations become CxHxW tensors, OHWI / 1HW(C*M) filters become OIHW (a depthwise conv
with channel multiplier M is a conv with one group per input channel), and a flatten of
an NHWC tensor before FULLY_CONNECTED permutes that layer's weight columns
(`layout.flatten_order`, shared with the ONNX importer). Elementwise activations whose
result is a function of the int8 input alone become 256-entry tables computed by TFLM's
own kernel (HARD_SWISH, and an int8 -> int8 QUANTIZE, TFLM's Requantize, too); a PAD that
fills with the input zero point folds into the convolutions reading it, any other PAD /
PADV2 of H and W becomes a `pad` op; MEAN over H and W becomes a `mean` op; ADD, SUB and
MUL broadcast [1,H,W,C] tensors; a RESHAPE becomes a view (a flatten, or a `reshape`
where TFLite's HWC order and the IR's CHW order agree); QUANTIZE / DEQUANTIZE at a float
model's edges are dropped and their scales recorded in the graph's meta. Anything else is
refused by operator index and builtin name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MnistEdgeError
from ..ops import tflite_kernels as K
from ..ops import tflite_prepare as P
from ..ops.layout import pure_layout
from ..qgraph import INPUT_NAME, QGraph, QOp, QTensor
from .layout import flatten_order, is_identity, permute_columns
from .tflite_reader import Operator, Tensor, TFLiteModel

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
LUT_OPS = ("LOGISTIC", "TANH", "RELU", "RELU6", "LEAKY_RELU")
HWC = (1, 2, 0)  # TFLite flattens a CxHxW tensor in H, W, C order
MIXED = ("a .tflite mixing float and int8 is not supported: quantize the model fully to "
         "int8 (int8 activations and weights), or keep it all float")


@dataclass
class View:
    """How the IR holds one TFLite tensor: the QGraph tensor `name`; for a flat tensor the
    order of its elements (TFLite's flat element j is the IR's element order[j]); for the
    output of a folded PAD, the padding (top, left, bottom, right) its reader adds."""

    name: str
    order: np.ndarray | None = None
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)


def ir_shape(t: Tensor, graph: str = "QGraph") -> tuple[int, ...]:
    """[1, H, W, C] -> (C, H, W); [1, D] -> (D,), for the QGraph or the float graph."""
    s = t.shape
    if len(s) == 4 and s[0] == 1:
        return s[3], s[1], s[2]
    if len(s) == 2 and s[0] == 1:
        return (s[1],)
    raise MnistEdgeError(f"tensor {t.index} '{t.name}' has shape {list(s)}; the {graph} takes "
                         "batch-1 tensors [1,H,W,C] or [1,D]")


def qtensor(t: Tensor, shape: tuple[int, ...] | None = None) -> QTensor:
    q = t.quantization
    return QTensor(shape or ir_shape(t), float(q.scale[0]), int(q.zero_point[0]))


def _activation(op: Operator) -> dict[str, Any]:
    act = op.options.get("fused_activation", "NONE")
    return {} if act == "NONE" else {"activation": act.lower()}


def same_padding(padding: str, size: int, k: int, stride: int, dilation: int
                 ) -> tuple[int, int]:
    """(leading, trailing) padding of one axis as TFLM computes it (the odd pixel trails)."""
    lead, out = P.window_padding(padding, size, k, stride, dilation)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return lead, total - lead


class _Mapper:
    """Walks the operators in order, emitting QGraph ops and tracking each tensor's view."""

    def __init__(self, model: TFLiteModel, name: str) -> None:
        self.model = model
        self.name = name
        self.ops: list[QOp] = []
        self.views: dict[int, View] = {}
        self.mapped: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers
    def t(self, index: int) -> Tensor:
        return self.model.tensors[index]

    def readers(self, index: int) -> list[Operator]:
        return [o for o in self.model.operators if index in o.inputs]

    def view(self, op: Operator, k: int = 0, feature_map: bool | None = None) -> View:
        v = self.views[op.inputs[k]]
        if any(v.pad) and op.op not in CONV_OPS:
            raise self.refuse(op, "reads a PAD output; a PAD folds only into a convolution")
        if feature_map is not None and (len(self.shape_of(v.name)) == 3) != feature_map:
            raise self.refuse(op, f"needs a {'[1,H,W,C]' if feature_map else '[1,D]'} input")
        return v

    def tensor_of(self, name: str) -> QTensor:
        if name == INPUT_NAME:
            return self.input
        return next(o.output for o in self.ops if o.name == name)

    def shape_of(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensor_of(name).shape)

    def refuse(self, op: Operator, why: str) -> MnistEdgeError:
        return MnistEdgeError(f"{op.label()}: {why}")

    def emit(self, op: Operator | None, kind: str, inputs: list[str], out: QTensor,
             attrs: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None,
             order: np.ndarray | None = None, bind: bool = True) -> View:
        """Append a QGraph op; with `bind`, it holds the TFLite operator's output."""
        name = f"{kind}_{'out' if op is None else op.index}"
        while any(o.name == name for o in self.ops):
            name += "_"
        self.ops.append(QOp(name, kind, out, dict(attrs or {}), dict(arrays or {}),
                            list(inputs)))
        self.mapped[-1]["qgraph"].append(name)
        view = View(name, None if is_identity(order) else order)
        if bind and op is not None:
            self.views[op.outputs[0]] = view
        return view

    def flat(self, op: Operator | None, v: View) -> View:
        """A CxHxW tensor read as TFLite's flat vector: a `flatten`, whose elements are the
        IR's C-order ones, and the HWC `order` in which TFLite reads them."""
        shape = self.shape_of(v.name)
        if len(shape) == 1:
            return v
        x = self.tensor_of(v.name)
        flat = self.emit(op, "flatten", [v.name], QTensor((x.size,), x.scale, x.zero_point),
                         bind=False)
        return View(flat.name, None if is_identity(o := flatten_order(shape, HWC)) else o)

    # --------------------------------------------------------------- the walk
    def run(self) -> QGraph:
        m = self.model
        if len(m.inputs) != 1 or len(m.outputs) != 1:
            raise MnistEdgeError(f"the model has {len(m.inputs)} inputs and {len(m.outputs)} "
                                 "outputs; the QGraph takes one input and one output")
        skip = self._edges()
        t_in = self.t(self.input_index)
        self.input = qtensor(t_in)
        self.views[self.input_index] = View(INPUT_NAME)
        self._refuse_float(skip)
        for op in m.operators:
            if op.index in skip:
                self.mapped.append({"operator": op.index, "builtin": op.op,
                                    "qgraph": ["(float edge, recorded in meta)"]})
                continue
            self.mapped.append({"operator": op.index, "builtin": op.op, "qgraph": []})
            handler = getattr(self, f"_op_{op.op}", None)
            if handler is None:
                raise self.refuse(op, "has no QGraph mapping yet (supported: CONV_2D, "
                                  "DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, SUB, MUL, "
                                  "AVERAGE_POOL_2D, MAX_POOL_2D, RESHAPE, SQUEEZE, SOFTMAX, "
                                  "CONCATENATION, PAD, PADV2, MEAN, LOGISTIC, TANH, RELU, "
                                  "RELU6, LEAKY_RELU, HARD_SWISH, QUANTIZE int8 -> int8, "
                                  "QUANTIZE/DEQUANTIZE at float edges)")
            handler(op)
        self._output()
        graph = QGraph(self.name, self.input, self.ops, self.meta, "int8", "tflite")
        graph.validate()
        return graph

    def _edges(self) -> set[int]:
        """Float input / output: the QUANTIZE and DEQUANTIZE at the edges are skipped and
        their int8 sides become the graph's input and output."""
        m = self.model
        skip: set[int] = set()
        self.input_index, self.output_index = m.inputs[0], m.outputs[0]
        if self.t(self.input_index).dtype == "float32":
            readers = self.readers(self.input_index)
            if len(readers) != 1 or readers[0].op != "QUANTIZE":
                raise MnistEdgeError(MIXED)
            skip.add(readers[0].index)
            self.input_index = readers[0].outputs[0]
            self.meta.setdefault("float_edges", {})["input"] = _edge(self.t(self.input_index))
        if self.t(self.output_index).dtype == "float32":
            writer = next(o for o in m.operators if self.output_index in o.outputs)
            if writer.op != "DEQUANTIZE":
                raise MnistEdgeError(MIXED)
            skip.add(writer.index)
            self.output_index = writer.inputs[0]
            self.meta.setdefault("float_edges", {})["output"] = _edge(self.t(self.output_index))
        return skip

    def _refuse_float(self, skip: set[int]) -> None:
        for op in self.model.operators:
            if op.index in skip:
                continue
            if op.op == "DEQUANTIZE" or (op.op == "QUANTIZE"
                                         and self.t(op.inputs[0]).dtype != "int8"):
                raise self.refuse(op, "QUANTIZE/DEQUANTIZE to or from float inside the model "
                                  "(only at a float model's input and output) is not "
                                  "supported")
            if any(self.t(i).dtype == "float32" for i in (*op.inputs[:1], *op.outputs)):
                raise MnistEdgeError("a .tflite mixing float and int8 is not supported: "
                                     "quantize the model fully to int8 "
                                     f"({op.label()} computes in float)")

    def _output(self) -> None:
        v = self.views.get(self.output_index)
        if v is None or any(v.pad):
            raise MnistEdgeError("the model's output is not computed by a mapped operator")
        if len(self.shape_of(v.name)) == 3:
            # TFLite's [1,H,W,C] output is given in the IR's C,H,W order (the tflm backend
            # reorders TFLM's output the same way).
            self.mapped.append({"operator": None, "builtin": "(output)", "qgraph": []})
            v = View(self.flat(None, v).name)
            self.meta["output_order"] = "CHW (TFLite's [1,H,W,C] output transposed)"
        elif v.order is not None:
            raise MnistEdgeError("the model's output is a flat vector in a permuted order, "
                                 "which the QGraph cannot give back")
        if not self.ops or self.ops[-1].name != v.name:
            raise MnistEdgeError("the model's output is not written by its last operator")

    # ------------------------------------------------------------ operators
    def _op_CONV_2D(self, op: Operator) -> None:
        v = self.view(op, 0, feature_map=True)
        x, w, out = self.t(op.inputs[0]), self.t(op.inputs[1]), self.t(op.outputs[0])
        o = op.options
        depthwise = op.op == "DEPTHWISE_CONV_2D"
        if depthwise:
            weight = np.ascontiguousarray(w.data.transpose(3, 0, 1, 2))  # [C*M, 1, KH, KW]
        else:
            weight = np.ascontiguousarray(w.data.transpose(0, 3, 1, 2))  # OHWI -> OIHW
        kh, kw = weight.shape[2:]
        top, bottom = same_padding(o["padding"], x.shape[1], kh, o["stride_h"], o["dilation_h"])
        left, right = same_padding(o["padding"], x.shape[2], kw, o["stride_w"],
                                    o["dilation_w"])
        pad = [top + v.pad[0], left + v.pad[1], bottom + v.pad[2], right + v.pad[3]]
        attrs: dict[str, Any] = {"kernel": [kh, kw], "stride": [o["stride_h"], o["stride_w"]],
                                 "padding": pad, **_activation(op)}
        if depthwise and x.shape[3] > 1:  # over one channel a depthwise conv is a conv
            attrs["groups"] = x.shape[3]
        if (o["dilation_h"], o["dilation_w"]) != (1, 1):
            attrs["dilation"] = [o["dilation_h"], o["dilation_w"]]
        self.emit(op, "conv2d", [v.name], qtensor(out), attrs,
                  self._weights(op, w, weight, weight.shape[0]))

    _op_DEPTHWISE_CONV_2D = _op_CONV_2D

    def _weights(self, op: Operator, w: Tensor, weight: np.ndarray, channels: int
                 ) -> dict[str, np.ndarray]:
        q = w.quantization
        if w.dtype != "int8" or q is None:
            raise self.refuse(op, f"weights are {w.dtype}, not quantized int8")
        if np.any(q.zero_point != 0):
            raise self.refuse(op, "weights with a nonzero zero point are not supported "
                              "(TFLite's int8 weights are symmetric)")
        scales = np.broadcast_to(q.scale.astype(np.float32), (channels,)).copy()
        bias = np.zeros(channels, np.int32)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            b = self.t(op.inputs[2])
            if b.dtype != "int32":
                raise self.refuse(op, f"bias is {b.dtype}, not int32")
            bias = b.data.reshape(channels).astype(np.int32)
        return {"weight": weight.astype(np.int8), "bias": bias, "w_scale": scales}

    def _op_FULLY_CONNECTED(self, op: Operator) -> None:
        w, out = self.t(op.inputs[1]), self.t(op.outputs[0])
        units, depth = w.shape
        if int(np.prod(self.t(op.inputs[0]).shape)) != depth or len(out.shape) != 2:
            raise self.refuse(op, "only one row (a [1,D] input or a tensor of D elements) to "
                              "a [1,U] output is supported")
        v = self.flat(op, self.view(op, 0))
        weight = permute_columns(w.data, v.order)
        self.emit(op, "linear", [v.name], qtensor(out), _activation(op),
                  self._weights(op, w, weight, units))

    def _binary(self, op: Operator, kind: str) -> None:
        consts = [k for k in (0, 1) if self.t(op.inputs[k]).is_constant]
        if consts:
            self._constant_operand(op, kind, consts)
            return
        a, b = self.view(op, 0), self.view(op, 1)
        sa, sb = self.t(op.inputs[0]).shape, self.t(op.inputs[1]).shape
        if sa != sb and not (len(sa) == len(sb) == 4 and sa[0] == sb[0] == 1):
            raise self.refuse(op, f"broadcasts {list(sa)} with {list(sb)}; only [1,H,W,C] "
                              "tensors broadcast against each other")
        if not _same_order(a.order, b.order):
            raise self.refuse(op, "its inputs are flattened in different orders")
        self.emit(op, kind, [a.name, b.name], qtensor(self.t(op.outputs[0])),
                  _activation(op), order=a.order)

    def _constant_operand(self, op: Operator, kind: str, consts: list[int]) -> None:
        """ADD / SUB / MUL of a tensor and a constant of one value: a function of the
        tensor's int8 value alone, so a table, computed by the registry's own tflite
        semantics of `kind` over all 256 inputs (exact by construction)."""
        if len(consts) == 2:
            raise self.refuse(op, "both operands are constants")
        k = consts[0]
        c, x, out = (self.t(op.inputs[k]), self.t(op.inputs[1 - k]), self.t(op.outputs[0]))
        q = c.quantization
        values = np.asarray(c.data).ravel()
        if c.dtype != "int8" or q is None or q.per_channel or values.size == 0:
            raise self.refuse(op, "a constant operand must be int8 with per-tensor "
                              "quantization")
        if np.any(values != values[0]) or out.shape != x.shape:
            raise self.refuse(op, "a constant operand of more than one value (e.g. per "
                              "channel) is not supported; one value becomes a table")
        v = self.view(op, 1 - k)
        table = constant_table(kind, k, qtensor(x, (1,)), qtensor(c, (1,)),
                               qtensor(out, (1,)), int(values[0]),
                               op.options.get("fused_activation", "NONE"))
        real = float(q.scale[0]) * (int(values[0]) - int(q.zero_point[0]))
        self.emit(op, "lut", [v.name], qtensor(out),
                  {"activation": f"{kind} constant", "params": {"constant": real}},
                  {"table": table}, order=v.order)

    def _op_ADD(self, op: Operator) -> None:
        self._binary(op, "add")

    def _op_SUB(self, op: Operator) -> None:
        self._binary(op, "sub")

    def _op_MUL(self, op: Operator) -> None:
        self._binary(op, "mul")

    def _op_AVERAGE_POOL_2D(self, op: Operator) -> None:
        v = self.view(op, 0, feature_map=True)
        x, o = self.t(op.inputs[0]), op.options
        top, bottom = same_padding(o["padding"], x.shape[1], o["filter_h"], o["stride_h"], 1)
        left, right = same_padding(o["padding"], x.shape[2], o["filter_w"], o["stride_w"], 1)
        attrs = {"kernel": [o["filter_h"], o["filter_w"]],
                 "stride": [o["stride_h"], o["stride_w"]], **_activation(op)}
        if any((top, left, bottom, right)):
            attrs["padding"] = [top, left, bottom, right]
        kind = "avgpool2d" if op.op == "AVERAGE_POOL_2D" else "maxpool2d"
        self.emit(op, kind, [v.name], qtensor(self.t(op.outputs[0])), attrs)

    _op_MAX_POOL_2D = _op_AVERAGE_POOL_2D

    def _op_RESHAPE(self, op: Operator) -> None:
        v = self.view(op, 0)
        x, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        if len(out.shape) == 2 and out.shape[0] == 1:
            self.views[op.outputs[0]] = self.flat(op, v)
            self.mapped[-1]["qgraph"] = self.mapped[-1]["qgraph"] or ["(no op: a view)"]
        elif len(out.shape) == 4 and len(x.shape) == 4 and ir_shape(out) == ir_shape(x):
            self.views[op.outputs[0]] = v
            self.mapped[-1]["qgraph"] = ["(no op: a view)"]
        else:
            try:
                src, dst = self.shape_of(v.name), ir_shape(out)
            except MnistEdgeError:
                raise self.refuse(op, f"reshapes {list(x.shape)} into {list(out.shape)}; "
                                  "only [1,H,W,C] and [1,D] tensors are supported") from None
            if v.order is not None or not pure_layout(src, dst):
                raise self.refuse(op, f"reshapes {list(x.shape)} into {list(out.shape)}, "
                                  "which moves elements between TFLite's HWC order and the "
                                  "QGraph's CHW order (only a flatten, a reshape keeping the "
                                  "channels, or one of a single channel or position maps)")
            self.emit(op, "reshape", [v.name], qtensor(out), {"shape": list(dst)})

    _op_SQUEEZE = _op_RESHAPE

    def _op_SOFTMAX(self, op: Operator) -> None:
        v = self.view(op, 0, feature_map=False)
        self.emit(op, "softmax", [v.name], qtensor(self.t(op.outputs[0])),
                  {"beta": float(np.float32(op.options["beta"]))}, order=v.order)

    def _lut(self, op: Operator) -> None:
        v = self.view(op, 0)
        x, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        table, params = tflm_table(op, qtensor(x, (1,)), qtensor(out, (1,)))
        attrs: dict[str, Any] = {"activation": op.op.lower()}
        if params:
            attrs["params"] = params
        self.emit(op, "lut", [v.name], qtensor(out), attrs, {"table": table}, order=v.order)

    _op_LOGISTIC = _op_TANH = _op_RELU = _op_RELU6 = _op_LEAKY_RELU = _lut
    _op_HARD_SWISH = _lut

    def _op_QUANTIZE(self, op: Operator) -> None:
        """An int8 -> int8 QUANTIZE inside the model (a requantization) is a table."""
        if any(self.t(i).quantization is None or self.t(i).quantization.per_channel
               or self.t(i).dtype != "int8" for i in (op.inputs[0], op.outputs[0])):
            raise self.refuse(op, "only an int8 -> int8 QUANTIZE with per-tensor "
                              "quantization is supported inside the model")
        self._lut(op)

    def _op_MEAN(self, op: Operator) -> None:
        v = self.view(op, 0, feature_map=True)
        x, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        axes = {int(a) % 4 for a in self.t(op.inputs[1]).data.ravel()}
        if axes != {1, 2}:
            raise self.refuse(op, f"reduces axes {sorted(axes)}; only a MEAN over H and W "
                              "(axes 1 and 2) of a [1,H,W,C] tensor is supported")
        c = x.shape[3]
        mean = self.emit(op, "mean", [v.name], qtensor(out, (c, 1, 1)),
                         bind=bool(op.options["keep_dims"]))
        if not op.options["keep_dims"]:  # [1,C]: the same bytes, flat
            self.emit(op, "flatten", [mean.name], qtensor(out, (c,)))

    def _op_CONCATENATION(self, op: Operator) -> None:
        out = self.t(op.outputs[0])
        axis = op.options["axis"] % len(out.shape)
        if len(out.shape) != 4 or axis != 3:
            raise self.refuse(op, "only concatenation along the channels of [1,H,W,C] "
                              "tensors is supported")
        names = [self.view(op, k, feature_map=True).name for k in range(len(op.inputs))]
        self.emit(op, "concat", names, qtensor(out), _activation(op))

    def _op_PAD(self, op: Operator) -> None:
        v = self.view(op, 0, feature_map=True)
        x, out = self.t(op.inputs[0]), self.t(op.outputs[0])
        pads = self.t(op.inputs[1]).data.astype(np.int64)
        value = qtensor(out).zero_point
        if op.op == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(self.t(op.inputs[2]).data.ravel()[0])
        readers = self.readers(op.outputs[0])
        if pads[0].any() or pads[3].any():
            raise self.refuse(op, "pads the batch or the channels; only H and W are supported")
        if (qtensor(x).scale, qtensor(x).zero_point) != (qtensor(out).scale,
                                                         qtensor(out).zero_point):
            raise self.refuse(op, "input and output quantization differ (TFLM's PAD copies "
                              "the bytes)")
        pad = (int(pads[1, 0]), int(pads[2, 0]), int(pads[1, 1]), int(pads[2, 1]))
        if (value == qtensor(x).zero_point and readers and op.outputs[0] != self.output_index
                and all(r.op in CONV_OPS and r.inputs[0] == op.outputs[0] for r in readers)):
            # padding with real 0 before convolutions only: it folds into their padding
            self.views[op.outputs[0]] = View(v.name, None, tuple(
                a + b for a, b in zip(v.pad, pad, strict=True)))
            self.mapped[-1]["qgraph"] = ["(folded into the convolutions reading it)"]
            return
        self.emit(op, "pad", [v.name], qtensor(out), {"padding": list(pad), "value": value})

    _op_PADV2 = _op_PAD


def tflm_table(op: Operator, x: QTensor, y: QTensor) -> tuple[np.ndarray, dict[str, float]]:
    """The 256-entry table of a TFLite activation operator, and the attributes that name
    it."""
    alpha = float(np.float32(op.options["alpha"])) if op.op == "LEAKY_RELU" else None
    try:
        table = activation_table(op.op, x, y, alpha)
    except MnistEdgeError as exc:
        raise MnistEdgeError(f"{op.label()}: {exc}") from None
    return table, ({"alpha": alpha} if alpha is not None else {})


def activation_table(builtin: str, x: QTensor, y: QTensor, alpha: float | None = None
                     ) -> np.ndarray:
    """TFLM's int8 kernel of `builtin` (LOGISTIC, TANH, RELU, RELU6, LEAKY_RELU) run on
    every input from x's quantization to y's: exact by construction. The importer, the
    quantizer's tflite arithmetic and the exporter's check all take tables from here."""
    q = np.arange(-128, 128, dtype=np.int8)[None]
    s_in, z_in, s_out, z_out = x.scale, x.zero_point, y.scale, y.zero_point
    if builtin in ("LOGISTIC", "TANH"):
        m, ls, radius = P.sigmoid_tanh_params(s_in)
        fn = K.logistic if builtin == "LOGISTIC" else K.tanh
        table = fn(q, input_zp=z_in, input_range_radius=radius, input_multiplier=m,
                   input_left_shift=ls)
    elif builtin == "RELU":
        m, sh = P.relu_params(s_in, s_out)
        table = K.relu(q, input_zp=z_in, output_zp=z_out, mult=m, shift=sh,
                       act=P.activation_range("RELU", s_out, z_out))
    elif builtin == "RELU6":
        if (s_in, z_in) != (s_out, z_out):
            raise MnistEdgeError("RELU6: input and output quantization differ (TFLM requires "
                                 "them equal)")
        table = K.relu6(q, zero=z_in, six=P.quantize_value(6.0, s_in, z_in))
    elif builtin == "LEAKY_RELU":
        if alpha is None:
            raise MnistEdgeError("LEAKY_RELU needs its alpha")
        mi, si, ma, sa = P.leaky_relu_params(s_in, s_out, alpha)
        table = K.leaky_relu(q, input_zp=z_in, output_zp=z_out, mult_identity=mi,
                            shift_identity=si, mult_alpha=ma, shift_alpha=sa)
    elif builtin == "HARD_SWISH":
        try:
            hs = P.hard_swish_params(s_in, s_out)
        except ValueError as exc:  # what TFLM's Prepare refuses
            raise MnistEdgeError(str(exc)) from None
        table = K.hard_swish(q, input_zp=z_in, output_zp=z_out, **hs)
    elif builtin == "QUANTIZE":  # int8 -> int8: TFLM's Requantize
        m, sh = P.requantize_params(s_in, s_out)
        table = K.requantize(q, input_zp=z_in, output_zp=z_out, mult=m, shift=sh)
    else:
        raise MnistEdgeError(f"{builtin} has no table")
    return np.ascontiguousarray(table.reshape(256)).astype(np.int8)


def constant_table(kind: str, position: int, x: QTensor, c: QTensor, y: QTensor, value: int,
                   activation: str) -> np.ndarray:
    """The 256-entry table of `kind` (add, sub, mul) between every int8 x and the constant
    int8 `value` (operand `position` 0 or 1), as the registry's tflite semantics compute
    it: the same Prepare and Eval as for two tensors."""
    from ..ops import REGISTRY

    ins = [c, x] if position == 0 else [x, c]
    attrs = {} if activation == "NONE" else {"activation": activation.lower()}
    qop = QOp("table", kind, y, attrs, {}, ["a", "b"])
    sem = REGISTRY[kind].tflite
    xs = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)
    k = np.full((256, 1), value, np.int8)
    out = sem.golden(qop, [k, xs] if position == 0 else [xs, k], ins, sem.prepare(qop, ins))
    return np.ascontiguousarray(out.reshape(256)).astype(np.int8)


def _prepared(op: Operator, prepare, *args):
    """A Prepare step's constants; what TFLM's Prepare refuses, refused by operator."""
    try:
        return prepare(*args)
    except ValueError as exc:
        raise MnistEdgeError(f"{op.label()}: {exc}") from None


def _same_order(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def _edge(t: Tensor) -> dict[str, Any]:
    q = qtensor(t)
    return {"tensor": t.name, "scale": q.scale, "zero_point": q.zero_point}


def tflite_to_qgraph(model: TFLiteModel, name: str) -> tuple[QGraph, list[dict[str, Any]]]:
    """The QGraph of a parsed, checked model, and per TFLite operator the QGraph ops it
    became (for import.json)."""
    mapper = _Mapper(model, name)
    graph = mapper.run()
    return graph, mapper.mapped
