"""ONNX export: the float model, and the int8 model written straight from the QGraph.

`model.int8.onnx` is operator-oriented: every conv, linear layer and average pool is a
QLinearConv, so onnxruntime computes exactly the integer contract of ARCHITECTURE.md
(int32 accumulator, float32 M = (x_scale * w_scale) / y_scale, round half to even,
saturate). A linear layer is a 1x1 QLinearConv on the flat vector laid out as [N, K, 1, 1];
an average pool is a depthwise all-ones QLinearConv with w_scale = float32(1/N), which is
how golden defines it; a LUT is an integer Gather. Nothing is re-quantized.

Activations are uint8 by default (``u = q + 128``, zero points shifted by +128): the same
numbers, and onnxruntime's uint8 kernels are faster on x86 than its int8 x int8 ones. The
weights then go as uint8 too (w + 128, zero point 128: see `_weights`). The uint8 input
is the raw pixel itself (p = q + 128, zero point 0).
`model.int8.qdq.onnx` (optional) is the same QGraph as QuantizeLinear/DequantizeLinear
pairs around float ops (LUTs stay integer Gathers), for runtimes that only take QDQ. It is
bit-exact only where the runtime fuses DequantizeLinear -> Conv -> QuantizeLinear back into
QLinearConv (onnxruntime does for uint8 by default, for int8 only with the session option
`session.qdqisint8allowed=1`); unfused, Conv sums float32 products with rounding and
QuantizeLinear divides by y_scale instead of multiplying by M, so rare logits are off by 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from .. import fgraph as fgraph_mod
from ..errors import MnistEdgeError
from ..ops.elementwise import add_weights
from ..ops.layout import concat_multipliers
from ..paths import atomic_write
from ..qgraph import INPUT_NAME as QGRAPH_INPUT
from ..qgraph import QGraph, QOp, QTensor, load_run, pool_weight_scale
from . import onnx_tflite as tfl
from .inputs import require_arithmetic

OPSET = 21  # Gelu (20) and every quantized op we use; fully supported by onnxruntime 1.31
IR_VERSION = 10  # the IR version that goes with opset 21
BATCH = "N"
ACTIVATION_TYPES = ("uint8", "int8")
FLOAT_FILE, INT8_FILE, QDQ_FILE = "model.onnx", "model.int8.onnx", "model.int8.qdq.onnx"
INPUT_NAME, FLOAT_INPUT_NAME = "pixels", "images"
LOGITS_NAME, PROBS_NAME = "logits", "probabilities"

ARITHMETICS = ("onnx", "tflite")  # both: tflite through `onnx_tflite`'s integer ops
INT8_FORMATS = ("qoperator", "qdq", "integer")
QDQ_REFUSAL = ("the QDQ form cannot express the tflite arithmetic: QuantizeLinear rounds a "
               "float32 product half to even, TFLM rescales with a Q31 integer multiply and "
               "two roundings half away from zero; export the default form (exact integer "
               "ops) instead")

_ONNX_TYPE = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8}
_NP_TYPE = {"uint8": np.uint8, "int8": np.int8}


class _Builder:
    """Collects nodes and initializers under deterministic, readable names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._named: dict[str, np.ndarray] = {}

    def init(self, name: str, value: np.ndarray) -> str:
        """Add an initializer; asking again for the same name and value reuses it."""
        value = np.array(value, order="C")  # a copy; keeps 0-d scalars 0-d
        if name in self._named:
            if not np.array_equal(self._named[name], value):
                raise ValueError(f"initializer {name} defined twice with different values")
            return name
        self._named[name] = value
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def const(self, value: Any, dtype: type) -> str:
        """A shared constant (axes, offsets), named after its type and value."""
        arr = np.asarray(value, dtype=dtype)
        return self.init(f"const.{arr.dtype}.{'_'.join(str(v) for v in arr.ravel().tolist())}",
                         arr)

    def node(self, op_type: str, inputs: list[str], output: str, name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        return output


# ------------------------------------------------------------------ int8 (QOperator / QDQ)
class _Quant:
    """Per-tensor quantization in the exported activation type (zero point shifted for uint8)."""

    def __init__(self, b: _Builder, activations: str) -> None:
        if activations not in ACTIVATION_TYPES:
            raise MnistEdgeError(f"activations must be one of {ACTIVATION_TYPES}, "
                                 f"got {activations!r}")
        self.b = b
        self.activations = activations
        self.offset = 128 if activations == "uint8" else 0
        self.dtype = _NP_TYPE[activations]

    def params(self, t: QTensor, tensor: str) -> tuple[str, str]:
        """Scale and zero point initializers of activation `tensor` (shared by its users)."""
        scale = self.b.init(f"{tensor}.scale", np.array(t.scale, np.float32))
        zp = self.b.init(f"{tensor}.zero_point", np.array(t.zero_point + self.offset, self.dtype))
        return scale, zp

    def input(self, graph: QGraph) -> str:
        """The model input in the activation type, 4-D: uint8 bytes p (q = p - 128) or int8 q,
        each kept or shifted by 128 to the other type; a vector becomes [N, K, 1, 1]."""
        b = self.b
        h = INPUT_NAME
        if graph.input_encoding != self.activations:
            shift = -128 if graph.input_encoding == "uint8" else 128
            wide = b.node("Cast", [h], "input.int32", "input_to_int32", to=TensorProto.INT32)
            moved = b.node("Add", [wide, b.const(shift, np.int32)], "input.shifted",
                           f"input_{'minus' if shift < 0 else 'plus'}_128")
            h = b.node("Cast", [moved], "input.q", f"input_to_{self.activations}",
                       to=_ONNX_TYPE[self.activations])
        if len(graph.input.shape) == 1:
            h = b.node("Unsqueeze", [h, b.const([2, 3], np.int64)], "input.4d",
                       "input_unsqueeze")
        return h

    def to_int8(self, x: str, name: str) -> str:
        """uint8 u -> int8 q = u - 128, exactly (int8 passes through)."""
        if self.activations == "int8":
            return self.b.node("Identity", [x], name, f"{name}_identity")
        b = self.b
        wide = b.node("Cast", [x], f"{name}.int32", f"{name}_to_int32", to=TensorProto.INT32)
        centred = b.node("Sub", [wide, b.const(128, np.int32)], f"{name}.centred",
                         f"{name}_minus_128")
        return b.node("Cast", [centred], name, f"{name}_to_int8", to=TensorProto.INT8)


def _conv_like(op: QOp, x: QTensor) -> dict[str, Any]:
    """Weight, bias, w_scale and ONNX attributes of the QLinearConv standing for `op`."""
    if op.kind == "conv2d":
        a = op.attrs
        return {"weight": op.arrays["weight"], "bias": op.arrays["bias"],
                "w_scale": op.arrays["w_scale"],
                "attrs": {"kernel_shape": list(a["kernel"]),
                          "strides": list(a.get("stride", [1, 1])),
                          "pads": list(a.get("padding", [0, 0, 0, 0])),
                          "group": int(a.get("groups", 1))}}
    if op.kind == "linear":
        w = op.arrays["weight"]
        return {"weight": w.reshape(*w.shape, 1, 1), "bias": op.arrays["bias"],
                "w_scale": op.arrays["w_scale"], "attrs": {"kernel_shape": [1, 1]}}
    # avgpool2d / global_avgpool: depthwise all-ones kernel, w_scale = float32(1/N), zero bias
    c = x.shape[0]
    kernel = list(op.attrs["kernel"]) if op.kind == "avgpool2d" else list(x.shape[1:])
    stride = list(op.attrs["stride"]) if op.kind == "avgpool2d" else [1, 1]
    return {"weight": np.ones((c, 1, *kernel), np.int8), "bias": np.zeros(c, np.int32),
            "w_scale": pool_weight_scale(op, x),
            "attrs": {"kernel_shape": kernel, "strides": stride, "group": c}}


def _lut_table(op: QOp, q: _Quant) -> np.ndarray:
    """The table indexed by the activation value itself (uint8) or by q + 128 (int8)."""
    table = op.arrays["table"]
    if q.activations == "uint8":
        return (table.astype(np.int16) + 128).astype(np.uint8)  # u_out = table[u] + 128
    return table


def _lut(b: _Builder, q: _Quant, op: QOp, h: str) -> str:
    table = b.init(f"{op.name}.table", _lut_table(op, q))
    index = b.node("Cast", [h], f"{op.name}.index", f"{op.name}_index", to=TensorProto.INT32)
    if q.activations == "int8":
        index = b.node("Add", [index, b.const(128, np.int32)], f"{op.name}.index_plus_128",
                       f"{op.name}_index_plus_128")
    return b.node("Gather", [table, index], op.name, op.name, axis=0)


def _flatten(b: _Builder, op: QOp, h: str) -> str:
    """CHW flatten, kept 4-D as [N, K, 1, 1] so the next linear layer is a 1x1 QLinearConv."""
    flat = b.node("Flatten", [h], f"{op.name}.flat", f"{op.name}_flatten", axis=1)
    return b.node("Unsqueeze", [flat, b.const([2, 3], np.int64)], op.name, f"{op.name}_unsqueeze")


def _weights(q: _Quant, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights and per-channel zero points in the type that keeps onnxruntime exact.

    With uint8 activations the weights go as uint8 (w + 128, zero point 128): on x86
    without VNNI, onnxruntime's uint8 x int8 kernels pair products in int16 with
    saturation (VPMADDUBSW) and miss the exact sum; uint8 x uint8 widens first.
    """
    cout = weight.shape[0]
    if q.activations == "uint8":
        return ((weight.astype(np.int16) + 128).astype(np.uint8),
                np.full(cout, 128, np.uint8))
    return weight.astype(np.int8), np.zeros(cout, np.int8)


def _qlinear_conv(b: _Builder, q: _Quant, graph: QGraph, i: int, h: str) -> str:
    op, x = graph.ops[i], graph.input_of(i)
    spec = _conv_like(op, x)
    xs, xz = q.params(x, h)
    ys, yz = q.params(op.output, op.name)
    weight, w_zero = _weights(q, spec["weight"])
    inputs = [h, xs, xz,
              b.init(f"{op.name}.weight", weight),
              b.init(f"{op.name}.w_scale", np.asarray(spec["w_scale"], np.float32)),
              b.init(f"{op.name}.w_zero_point", w_zero),
              ys, yz,
              b.init(f"{op.name}.bias", np.asarray(spec["bias"], np.int32))]
    return b.node("QLinearConv", inputs, op.name, op.name, **spec["attrs"])


def _qdq_conv(b: _Builder, q: _Quant, graph: QGraph, i: int, h: str) -> str:
    """DequantizeLinear -> float Conv -> QuantizeLinear, with the QGraph's exact integers."""
    op, x = graph.ops[i], graph.input_of(i)
    spec = _conv_like(op, x)
    xs, xz = q.params(x, h)
    ys, yz = q.params(op.output, op.name)
    w_scale = np.asarray(spec["w_scale"], np.float32)
    weight, w_zero = _weights(q, spec["weight"])
    xf = b.node("DequantizeLinear", [h, xs, xz], f"{op.name}.x_float", f"{op.name}_dq_x")
    wf = b.node("DequantizeLinear",
                [b.init(f"{op.name}.weight", weight),
                 b.init(f"{op.name}.w_scale", w_scale),
                 b.init(f"{op.name}.w_zero_point", w_zero)],
                f"{op.name}.weight_float", f"{op.name}_dq_weight", axis=0)
    bias_scale = (np.float32(x.scale) * w_scale).astype(np.float32)
    bf = b.node("DequantizeLinear",
                [b.init(f"{op.name}.bias", np.asarray(spec["bias"], np.int32)),
                 b.init(f"{op.name}.bias_scale", bias_scale),
                 b.init(f"{op.name}.bias_zero_point", np.zeros(w_scale.shape[0], np.int32))],
                f"{op.name}.bias_float", f"{op.name}_dq_bias", axis=0)
    yf = b.node("Conv", [xf, wf, bf], f"{op.name}.float", f"{op.name}_conv", **spec["attrs"])
    return b.node("QuantizeLinear", [yf, ys, yz], op.name, f"{op.name}_q")


def _scaled(b: _Builder, q: _Quant, h: str, t: QTensor, weight: int, name: str) -> str:
    """weight * (q - z) as float32: exact, every value is an integer below 2^24."""
    real = b.node("Cast", [h], f"{name}.float", f"{name}_to_float", to=TensorProto.FLOAT)
    centred = b.node("Sub", [real, b.const(t.zero_point + q.offset, np.float32)],
                     f"{name}.centred", f"{name}_centred")
    if weight == 1:
        return centred
    return b.node("Mul", [centred, b.const(weight, np.float32)], f"{name}.weighted",
                  f"{name}_weighted")


def _requantize(b: _Builder, q: _Quant, acc: str, mult: np.float32, out: QTensor,
                name: str) -> str:
    """sat8(rne(float32(acc) * M) + z_y): one float32 multiply, then QuantizeLinear with
    scale 1, which rounds half to even, adds the zero point and saturates, all exactly."""
    prod = b.node("Mul", [acc, b.init(f"{name}.multiplier", np.array(mult, np.float32))],
                  f"{name}.scaled", f"{name}_times_m")
    unit = b.const(1.0, np.float32)
    zp = b.init(f"{name}.zero_point", np.array(out.zero_point + q.offset, q.dtype))
    return b.node("QuantizeLinear", [prod, unit, zp], name, f"{name}_requantize")


def _lower_conv_like(b: _Builder, q: _Quant, graph: QGraph, i: int, ins: list[str],
                     qdq: bool) -> str:
    if graph.arithmetic == "tflite":
        lower = tfl.lower_avgpool if graph.ops[i].kind == "avgpool2d" else tfl.lower_weighted
        return lower(b, q, graph, i, ins[0])
    return (_qdq_conv if qdq else _qlinear_conv)(b, q, graph, i, ins[0])


def _lower_maxpool(b: _Builder, q: _Quant, graph: QGraph, i: int, ins: list[str],
                   qdq: bool) -> str:
    """MaxPool; padded windows (tflite only) max over their in-image taps, as onnxruntime's
    do, and a tflite pool then clamps to its fused activation."""
    op = graph.ops[i]
    pad = {"pads": list(op.attrs["padding"])} if any(op.spec.attr(op, "padding")) else {}
    clamp = tfl.pool_clamp(graph, i) if graph.arithmetic == "tflite" else None
    name = op.name if clamp is None else f"{op.name}.max"
    h = b.node("MaxPool", ins, name, op.name if clamp is None else f"{op.name}_max",
               kernel_shape=list(op.attrs["kernel"]), strides=list(op.attrs["stride"]), **pad)
    if clamp is None:
        return h
    return b.node("Clip", [h, b.const(clamp[0] + q.offset, q.dtype),
                           b.const(clamp[1] + q.offset, q.dtype)], op.name, f"{op.name}_clamp")


def _lower_add(b: _Builder, q: _Quant, graph: QGraph, i: int, ins: list[str],
               qdq: bool) -> str:
    """The registry's add: k_a (q_a - z_a) + k_b (q_b - z_b), requantized by M (tflite:
    TFLM's ADD)."""
    if graph.arithmetic == "tflite":
        return tfl.lower_add_sub(b, q, graph, i, ins)
    op, tensors = graph.ops[i], graph.inputs_of(i)
    weights, mult = add_weights(tensors, op.output)
    terms = [_scaled(b, q, h, t, k, f"{op.name}.in{j}")
             for j, (h, t, k) in enumerate(zip(ins, tensors, weights, strict=True))]
    acc = b.node("Add", terms, f"{op.name}.acc", f"{op.name}_sum")
    return _requantize(b, q, acc, mult, op.output, op.name)


def _lower_concat(b: _Builder, q: _Quant, graph: QGraph, i: int, ins: list[str],
                  qdq: bool) -> str:
    """Inputs at another quantization are requantized to the output's first."""
    op, tensors = graph.ops[i], graph.inputs_of(i)
    parts = []
    for j, (h, t, mult) in enumerate(zip(ins, tensors, concat_multipliers(tensors, op.output),
                                         strict=True)):
        if mult is None:
            parts.append(h)
            continue
        name = f"{op.name}.in{j}"
        parts.append(_requantize(b, q, _scaled(b, q, h, t, 1, name), mult, op.output,
                                 f"{name}.q"))
    return b.node("Concat", parts, op.name, op.name, axis=1)


Lowering = Callable[[_Builder, _Quant, QGraph, int, list[str], bool], str]
# One entry per registered op kind (tests/test_op_registry.py checks that none is missing).
LOWERING: dict[str, Lowering] = {
    "conv2d": _lower_conv_like,
    "linear": _lower_conv_like,
    "avgpool2d": _lower_conv_like,
    "global_avgpool": _lower_conv_like,
    "maxpool2d": _lower_maxpool,
    "lut": lambda b, q, graph, i, ins, qdq: _lut(b, q, graph.ops[i], ins[0]),
    "flatten": lambda b, q, graph, i, ins, qdq: _flatten(b, graph.ops[i], ins[0]),
    "add": _lower_add,
    "concat": _lower_concat,  # tflite: every input at the output's quantization, a copy
    # tflite-only kinds
    "sub": lambda b, q, graph, i, ins, qdq: tfl.lower_add_sub(b, q, graph, i, ins),
    "mul": lambda b, q, graph, i, ins, qdq: tfl.lower_mul(b, q, graph, i, ins),
    "softmax": lambda b, q, graph, i, ins, qdq: tfl.lower_softmax(b, q, graph, i, ins[0]),
    "mean": lambda b, q, graph, i, ins, qdq: tfl.lower_mean(b, q, graph, i, ins[0]),
    "pad": lambda b, q, graph, i, ins, qdq: tfl.lower_pad(b, q, graph, i, ins[0]),
    "reshape": lambda b, q, graph, i, ins, qdq: tfl.lower_reshape(b, graph, i, ins[0]),
}


def _int8_graph(graph: QGraph, activations: str, qdq: bool) -> onnx.GraphProto:
    b = _Builder()
    q = _Quant(b, activations)
    names = {QGRAPH_INPUT: q.input(graph)}
    for i, op in enumerate(graph.ops):
        if op.kind not in LOWERING:
            raise MnistEdgeError(f"op {op.name}: ONNX export does not support {op.kind!r}")
        names[op.name] = LOWERING[op.kind](b, q, graph, i, [names[n] for n in op.inputs], qdq)
    h = names[graph.ops[-1].name]
    flat = b.node("Squeeze", [h, b.const([2, 3], np.int64)], "logits.q", "logits_squeeze")
    logits = q.to_int8(flat, LOGITS_NAME)
    out = graph.output
    real = b.node("DequantizeLinear",
                  [logits, b.init("logits.scale", np.array(out.scale, np.float32)),
                   b.init("logits.zero_point", np.array(out.zero_point, np.int8))],
                  "logits.float", "logits_dequantize")
    b.node("Softmax", [real], PROBS_NAME, "softmax", axis=1)
    classes = out.shape[0]
    return helper.make_graph(
        b.nodes, graph.name,
        [helper.make_tensor_value_info(INPUT_NAME, _ONNX_TYPE[graph.input_encoding],
                                       [BATCH, *graph.input.shape])],
        [helper.make_tensor_value_info(LOGITS_NAME, TensorProto.INT8, [BATCH, classes]),
         helper.make_tensor_value_info(PROBS_NAME, TensorProto.FLOAT, [BATCH, classes])],
        b.inits,
    )


def _metadata(graph_name: str, qgraph_hash: str | None, **extra: str) -> dict[str, str]:
    meta = {"mnist_edge_version": __version__, "model_name": graph_name}
    if qgraph_hash is not None:
        meta["qgraph_hash"] = qgraph_hash
    meta.update(extra)
    return meta


def _finish(g: onnx.GraphProto, meta: dict[str, str], doc: str) -> onnx.ModelProto:
    """Wrap, check fully, and store the inferred shape of every intermediate tensor."""
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mnist-edge", producer_version=__version__,
                              doc_string=doc)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, meta)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def build_int8(graph: QGraph, activations: str = "uint8", qdq: bool = False) -> onnx.ModelProto:
    """The int8 ONNX model of `graph` (QOperator format, or QDQ with `qdq=True`); a graph
    in the tflite arithmetic becomes its exact integer decomposition (format `integer`)."""
    graph.validate()
    require_arithmetic(graph, "ONNX-export", ARITHMETICS)
    if qdq and graph.arithmetic == "tflite":
        raise MnistEdgeError(QDQ_REFUSAL)
    fmt = "qdq" if qdq else ("integer" if graph.arithmetic == "tflite" else "qoperator")
    what = ("raw uint8 bytes p, q = p - 128" if graph.input_encoding == "uint8"
            else "int8 q")
    how = (" TFLite Micro's integer arithmetic as standard integer ONNX ops"
           if graph.arithmetic == "tflite" else "")
    doc = (f"mnist-edge int8 model {graph.name} ({fmt}, {activations} activations).{how} "
           f"Input: {what}, scale {graph.input.scale!r}, zero point {graph.input.zero_point}. "
           "Outputs: int8 logits, softmax probabilities.")
    extra = {"arithmetic": graph.arithmetic} if graph.arithmetic == "tflite" else {}
    meta = _metadata(graph.name, graph.content_hash(), format=fmt, activations=activations,
                     logits_scale=repr(graph.output.scale),
                     logits_zero_point=str(graph.output.zero_point), **extra)
    return _finish(_int8_graph(graph, activations, qdq), meta, doc)


# ------------------------------------------------------------------------------ float
def _float_node(b: _Builder, op: fgraph_mod.FOp, ins: list[str]) -> str:
    a, n, h = op.attrs, op.name, ins[0]
    if op.kind == "add":
        return b.node("Add", ins, n, n)
    if op.kind == "concat":
        return b.node("Concat", ins, n, n, axis=1)
    if op.kind == "conv2d":
        w = b.init(f"{n}.weight", op.arrays["weight"].astype(np.float32))
        bias = b.init(f"{n}.bias", op.arrays["bias"].astype(np.float32))
        return b.node("Conv", [h, w, bias], n, n, kernel_shape=list(a["kernel"]),
                      strides=list(a.get("stride", [1, 1])), pads=list(a.get("padding", [0] * 4)),
                      group=int(a.get("groups", 1)))
    if op.kind == "linear":
        w = b.init(f"{n}.weight", op.arrays["weight"].astype(np.float32))
        bias = b.init(f"{n}.bias", op.arrays["bias"].astype(np.float32))
        return b.node("Gemm", [h, w, bias], n, n, transB=1)
    if op.kind in ("maxpool2d", "avgpool2d"):
        kind = "MaxPool" if op.kind == "maxpool2d" else "AveragePool"
        return b.node(kind, [h], n, n, kernel_shape=list(a["kernel"]), strides=list(a["stride"]))
    if op.kind == "global_avgpool":
        return b.node("GlobalAveragePool", [h], n, n)
    if op.kind == "flatten":
        return b.node("Flatten", [h], n, n, axis=1)
    simple = {"relu": "Relu", "selu": "Selu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
    if op.kind in simple:
        return b.node(simple[op.kind], [h], n, n)
    if op.kind == "gelu":
        return b.node("Gelu", [h], n, n, approximate="none")
    with_attrs = {"leaky_relu": ("LeakyRelu", ("alpha",)), "elu": ("Elu", ("alpha",)),
                  "hardsigmoid": ("HardSigmoid", ("alpha", "beta")),
                  "hardswish": ("HardSwish", ())}
    if op.kind in with_attrs:
        onnx_op, keys = with_attrs[op.kind]
        return b.node(onnx_op, [h], n, n, **{k: float(a[k]) for k in keys if k in a})
    if op.kind == "silu":
        gate = b.node("Sigmoid", [h], f"{n}.gate", f"{n}_sigmoid")
        return b.node("Mul", [h, gate], n, n)
    if op.kind == "clip":
        return b.node("Clip", [h, b.const(a["min"], np.float32), b.const(a["max"], np.float32)],
                      n, n)
    raise MnistEdgeError(f"float graph op {n}: ONNX export does not support {op.kind!r}")


def build_float(fg: fgraph_mod.FloatGraph, qgraph_hash: str | None = None) -> onnx.ModelProto:
    """The float model (BatchNorm folded): float32 [N, *input_shape] (pixels in 0..1, or
    features) -> logits [N,classes]."""
    b = _Builder()
    names = {QGRAPH_INPUT: FLOAT_INPUT_NAME}
    if fg.input_norm:
        mean, std = fgraph_mod.norm_arrays(fg)
        centred = b.node("Sub", [FLOAT_INPUT_NAME, b.const(mean, np.float32)], "images.centred",
                         "normalize_sub_mean")
        names[QGRAPH_INPUT] = b.node("Div", [centred, b.const(std, np.float32)],
                                     "images.normalized", "normalize_div_std")
    for op in fg.ops:
        names[op.name] = _float_node(b, op, [names[n] for n in op.inputs])
    b.node("Identity", [names[fg.ops[-1].name]], LOGITS_NAME, "logits")
    # The output's size, whatever the last op is (a fully convolutional head too): one
    # zero input through the float graph gives it.
    zero = np.zeros((1, *fg.input_shape), np.float32)
    classes = int(np.asarray(fgraph_mod.run_float(fg, zero)).reshape(1, -1).shape[1])
    g = helper.make_graph(
        b.nodes, fg.name,
        [helper.make_tensor_value_info(FLOAT_INPUT_NAME, TensorProto.FLOAT,
                                       [BATCH, *fg.input_shape])],
        [helper.make_tensor_value_info(LOGITS_NAME, TensorProto.FLOAT, [BATCH, classes])],
        b.inits,
    )
    what = "pixels / 255" if fg.input_kind == "pixels" else "features"
    doc = (f"mnist-edge float model {fg.name} (BatchNorm folded). "
           f"Input: {what} as float32. Output: logits.")
    return _finish(g, _metadata(fg.name, qgraph_hash, format="float"), doc)


# ------------------------------------------------------------------------------ files
def _save(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    with atomic_write(path) as f:
        f.write(model.SerializeToString(deterministic=True))
    return path


def export_int8(graph: QGraph, path: str | Path, activations: str = "uint8") -> Path:
    """Write the QOperator int8 model of `graph` to `path` (atomically)."""
    return _save(build_int8(graph, activations), path)


def export_qdq(graph: QGraph, path: str | Path, activations: str = "uint8") -> Path:
    """Write the QDQ int8 model of `graph` to `path` (atomically)."""
    return _save(build_int8(graph, activations, qdq=True), path)


def export_float(fg: fgraph_mod.FloatGraph, path: str | Path,
                 qgraph_hash: str | None = None) -> Path:
    """Write the float model to `path` (atomically)."""
    return _save(build_float(fg, qgraph_hash), path)


def export_run(run_dir: str | Path, fmt: str = "qoperator",
               activations: str = "uint8") -> list[Path]:
    """Export a run's float model and int8 model(s) into the run folder; return the paths.
    A run imported from an int8 `.tflite` has no float model: only its int8 model(s)."""
    from ..importers import is_tflite_run

    run_dir = Path(run_dir)
    graph = load_run(run_dir)
    if fmt == "qdq" and graph.arithmetic == "tflite":
        raise MnistEdgeError(QDQ_REFUSAL)  # before anything is written
    written = []
    if not is_tflite_run(run_dir):
        fg = fgraph_mod.load(fgraph_mod.find_in_run(run_dir))
        written.append(export_float(fg, run_dir / FLOAT_FILE, graph.content_hash()))
    written.append(export_int8(graph, run_dir / INT8_FILE, activations))
    if fmt == "qdq":
        written.append(export_qdq(graph, run_dir / QDQ_FILE, activations))
    return written
