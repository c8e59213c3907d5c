"""ONNX graph -> FloatGraph: the op mapping, with layout and pattern handling.

The converter walks the nodes in order and keeps, for every ONNX tensor, either a constant
(initializers, `Constant`, shape arithmetic folded with the ONNX reference evaluator) or a
`Value`: a view of one float-graph tensor. A view carries

- a permutation: Keras and tf2onnx wrap every Conv/MaxPool in Transposes to and from NHWC;
  a Transpose only changes the view, so they cancel without any op in the graph;
- a feature order for 2-D tensors: an NHWC flatten before a Dense layer reads the features
  in H,W,C order, so the Dense weight's input columns are permuted to keep the IR NCHW;
- a pending elementwise function: Sub/Div/Mul/Add by scalars, Erf, Sigmoid... compose until
  a layer reads the tensor, and the composition is then named by comparing it with each
  activation of the IR on a grid (this is how `x*0.5*(1+erf(x/√2))` becomes one `gelu` and
  `x*sigmoid(x)` one `silu`). At the graph input an affine composition becomes the
  model's input normalization.

Constants added to or multiplying a Conv/Gemm/MatMul output fold into its bias and weights;
BatchNormalization folds the same way. Where nothing precedes to fold into (a BatchNormalization
after a ReLU or a pool, tf2onnx's per-channel Mul/Add), the per-channel affine stays pending on
the view and folds forward into the next Conv or Gemm/MatMul when that is exact (no padding
between: padded zeros would enter after the affine); otherwise it becomes an op of its own,
a depthwise 1x1 conv or a diagonal linear. Anything else is refused by node name and op type;
operators that no pattern can make supported (LayerNormalization, recurrent layers, Resize,
ai.onnx.ml) are refused before the walk, so the message names them whatever comes first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import MnistEdgeError
from ..fgraph import INPUT, SELU_ALPHA, SELU_SCALE, FloatGraph, FOp
from ..fgraph import activation_fn as _act
from .layout import flatten_order, is_identity, permute_columns

BATCH = 987_654_321  # stands for the batch dimension inside folded shape arithmetic
SUPPORTED = ("Conv, Gemm, MatMul, Add, Sub, Mul, Div, BatchNormalization, Relu, Clip, LeakyRelu, "
             "Sigmoid, Tanh, Elu, Selu, Gelu, Erf (GELU pattern), HardSigmoid, HardSwish, "
             "MaxPool, AveragePool, GlobalAveragePool, ReduceMean (spatial), Flatten, Reshape, "
             "Squeeze, Transpose, Pad (zeros, before a Conv or AveragePool), Concat (channels), "
             "Softmax/LogSoftmax (last node), Dropout, Identity, Cast (to float), Constant and "
             "shape arithmetic on constants")
OP_PREFIX = {"conv2d": "conv", "linear": "fc", "maxpool2d": "maxpool", "avgpool2d": "avgpool",
             "global_avgpool": "gap", "flatten": "flatten", "add": "add", "concat": "concat"}
# Pending functions are named by comparing them with these on a grid.
CANDIDATES: list[tuple[str, dict[str, float]]] = [
    ("relu", {}), ("gelu", {}), ("silu", {}), ("hardswish", {}), ("sigmoid", {}), ("tanh", {}),
    ("selu", {}), ("elu", {"alpha": 1.0}), ("hardsigmoid", {"alpha": 1 / 6, "beta": 0.5}),
    ("hardsigmoid", {"alpha": 0.2, "beta": 0.5}), ("clip", {"min": 0.0, "max": 6.0}),
]
# Operators refused before the walk, whatever their place in the graph, with the reason.
REFUSED = {
    "LayerNormalization": "it normalizes by the mean and variance of each input, statistics "
                          "computed from the data at run time, which no fixed int8 scale can "
                          "follow (BatchNormalization, with stored statistics, folds)",
    "MeanVarianceNormalization": "it normalizes by the mean and variance of each input, "
                                 "statistics computed from the data at run time, which no "
                                 "fixed int8 scale can follow",
    "LSTM": "recurrent layers are not supported (the targets run feed-forward CNNs and MLPs)",
    "GRU": "recurrent layers are not supported (the targets run feed-forward CNNs and MLPs)",
    "RNN": "recurrent layers are not supported (the targets run feed-forward CNNs and MLPs)",
    "Resize": "resizing inside the model is not supported; resize the images before the model",
    "Upsample": "resizing inside the model is not supported; resize the images before the "
                "model",
}
GRID = np.concatenate([np.linspace(-12.0, 12.0, 4801), [-1e3, -50.0, 50.0, 1e3]])
F32_MAX = float(np.finfo(np.float32).max)


def _erf(v: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(v)


@dataclass
class Value:
    """An ONNX tensor that is a view of float-graph tensor `tensor` (shape without batch)."""

    tensor: str
    shape: tuple[int, ...]
    perm: tuple[int, ...]  # the ONNX tensor is ir.transpose(perm) (axis 0 = batch)
    fperm: np.ndarray | None = None  # 2-D: onnx[:, j] = ir[:, fperm[j]]
    fn: Callable[[np.ndarray], np.ndarray] | None = None  # pending elementwise function
    act: tuple[str, dict[str, float]] | None = None  # fn is exactly this one activation
    trail: list[str] = field(default_factory=list)  # node types composed into fn (messages)
    sole: bool = True  # no other path reads the tensor: folding into its producer is safe
    softmax: bool = False
    pad: tuple[int, int, int, int] | None = None  # a zero Pad waiting for the Conv that reads it
    units: tuple[int, ...] | None = None  # a vector seen as [N,K,1] or [N,1,K]: the ONNX shape
    # a pending per-channel affine x*k + b (IR channel order), from a BatchNormalization or a
    # per-channel Mul/Add that no producer could absorb; the next Conv/Gemm takes it into its
    # weights where that is exact, anything else gets it as an op of its own
    affine: tuple[np.ndarray, np.ndarray] | None = None
    affine_nodes: list[dict[str, str]] = field(default_factory=list)  # where it came from

    @property
    def onnx_shape(self) -> tuple[int, ...]:
        if self.units is not None:
            return self.units
        full = (0, *self.shape)
        return tuple(full[p] for p in self.perm[1:])

    def same_view(self, other: Value) -> bool:
        return (self.tensor == other.tensor and self.perm == other.perm
                and _same_fperm(self.fperm, other.fperm))


def _same_fperm(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def _fold_forward_conv(w: np.ndarray, bias: np.ndarray, groups: int, k: np.ndarray,
                       b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """conv(x*k + b) = conv'(x) for an unpadded conv: each weight w[o, j] reads input
    channel g(o)*Cg + j, so it scales by that channel's k, and the b of the channels it
    reads adds a constant to the bias."""
    out, per_group = w.shape[0], w.shape[1]
    channel = (np.arange(out)[:, None] // (out // groups)) * per_group + np.arange(per_group)
    bias = bias + (w * b[channel][:, :, None, None]).sum(axis=(1, 2, 3))
    return w * k[channel][:, :, None, None], bias


def _axis_move(shape: tuple[int, ...], target: list[int]) -> tuple[int, ...] | None:
    """The transpose perm (batch axis included) that a reshape of `shape` to `target`
    (both without the batch) is, when it only moves size-1 axes: the other sizes keep their
    order, so the data does not move ([N,28,28,1] -> [N,1,28,28] is NHWC -> NCHW); None
    otherwise."""
    if len(shape) != len(target) or [d for d in shape if d != 1] != [d for d in target
                                                                      if d != 1]:
        return None
    ones = [i for i, d in enumerate(shape) if d == 1]
    rest = [i for i, d in enumerate(shape) if d != 1]
    order = [(ones if d == 1 else rest).pop(0) for d in target]
    return (0, *(i + 1 for i in order))


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Converter:
    """One pass over the nodes; `run()` returns the FloatGraph and what was dropped/folded."""

    def __init__(self, model, name: str, layout: str = "auto",
                 normalize: tuple[Any, Any] | None = None,
                 input_kind: str = "pixels") -> None:
        from .load import opset_of

        self.model = model
        self.graph = model.graph
        self.name = name
        self.layout_option = layout
        self.input_kind = input_kind
        self.opset = opset_of(model)
        self.consts: dict[str, np.ndarray] = {}
        self.values: dict[str, Value] = {}
        self.ops: list[FOp] = []
        self.shapes: dict[str, tuple[int, ...]] = {INPUT: (1, 28, 28)}
        self.read: set[str] = set()  # IR tensors some op reads
        self.dropped: list[dict[str, str]] = []
        self.folded: list[dict[str, str]] = []
        # model input = a*(p/255) + b; a and b become per-channel arrays when the model
        # normalizes each channel of an image differently
        self.norm_scale: float | np.ndarray = 1.0
        self.norm_shift: float | np.ndarray = 0.0
        if normalize is not None:  # floats, or one per channel
            mean, std = (np.asarray(v, np.float64) for v in normalize)
            self.norm_scale, self.norm_shift = 1.0 / std, -mean / std
        self.presoftmax: str | None = None
        self.batch: int | None = None
        self.layout = ""
        self.input_name = ""
        self.values_input_shape: tuple[int, ...] = ()  # the input's ONNX shape without batch
        self.consumers: Counter[str] = Counter(t for n in self.graph.node for t in n.input if t)
        for out in self.graph.output:
            self.consumers[out.name] += 1

    # ------------------------------------------------------------------ the walk
    def run(self) -> FloatGraph:
        from onnx import numpy_helper

        self._refuse_early()
        for init in self.graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        self._input()
        for node in self.graph.node:
            self._node(node)
        if len(self.graph.output) != 1:
            raise MnistEdgeError(f"the model has {len(self.graph.output)} outputs; expected one "
                                 "(the logits [N, classes])")
        out_name = self.graph.output[0].name
        if out_name in self.consts:
            raise MnistEdgeError(f"output {out_name!r} is a constant")
        v = self._materialize(self.values[out_name], "the output")
        if len(v.shape) != 1 or v.fperm is not None or v.units is not None:
            shape = "x".join(str(d) for d in v.onnx_shape)
            raise MnistEdgeError(f"output {out_name!r} has shape [N,{shape}]; expected "
                                 "a vector [N, K] (logits, probabilities, any values)")
        if v.tensor == INPUT:
            raise MnistEdgeError("the model computes nothing: its output is its input")
        self._prune(v.tensor)
        for op in self.ops:
            for key, arr in op.arrays.items():
                if not np.all(np.isfinite(arr)):
                    raise MnistEdgeError(f"op {op.name}: {key} contains NaN or infinity")
                op.arrays[key] = np.asarray(arr, np.float64).astype(np.float32)
        return FloatGraph(self.name, self.ops, self._norm(), self.shapes[INPUT], self.input_kind)

    def _refuse_early(self) -> None:
        """Operators no later node can make supported are refused before anything else is
        looked at (an LSTM's [T,N,F] input would otherwise be refused as an input shape,
        without naming the node that is the reason)."""
        for node in self.graph.node:
            where = f"node {node.name or node.output[0]!r} ({node.op_type})"
            if node.domain == "ai.onnx.ml":
                raise MnistEdgeError(f"{where}: ai.onnx.ml operators (classical machine "
                                     "learning: trees, scalers, classifiers) are not supported; "
                                     "supported: neural network operators of the default domain")
            if node.domain in ("", "ai.onnx") and node.op_type in REFUSED:
                raise MnistEdgeError(f"{where} is not supported: {REFUSED[node.op_type]}")

    def _norm(self) -> tuple[Any, Any] | None:
        """(mean, std) of the model's input normalization (floats or per channel), or None."""
        a = np.asarray(self.norm_scale, np.float64)
        b = np.asarray(self.norm_shift, np.float64)
        if np.all(a == 1.0) and np.all(b == 0.0):
            return None
        if self.input_kind != "pixels":
            raise MnistEdgeError("the model normalizes its feature input (an affine map before "
                                 "the first layer); supported for pixel inputs only: normalize "
                                 "the features before the model, or import without --input "
                                 "features")
        a, b = np.broadcast_arrays(a, b)
        return tuple(float(v) for v in (-b / a).reshape(-1)), tuple(
            float(v) for v in (1.0 / a).reshape(-1))

    def _prune(self, out: str) -> None:
        """Drop ops the output does not depend on, and make the output the last op."""
        live = {out}
        for op in reversed(self.ops):
            if op.name in live:
                live.update(op.inputs or [])
        self.ops = [op for op in self.ops if op.name in live]
        if self.ops[-1].name != out:
            raise MnistEdgeError("internal: the output op is not last")

    def _input(self) -> None:
        """The one float input: [N,C,H,W] or [N,H,W,C] (an image) or [N,K], [N,K,1], [N,1,K]
        (a vector); every size static except the batch."""
        from onnx import TensorProto

        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise MnistEdgeError(f"the model has {len(inputs)} inputs "
                                 f"({', '.join(i.name for i in inputs)}); expected one input")
        inp = inputs[0]
        self.input_name = inp.name
        tt = inp.type.tensor_type
        if tt.elem_type != TensorProto.FLOAT:
            raise MnistEdgeError(f"input {inp.name!r} is not float32 (elem_type {tt.elem_type})")
        dims: list[int | None] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                                  else None for d in tt.shape.dim]
        text = ",".join("?" if d is None else str(d) for d in dims)
        self.batch = dims[0] if dims and dims[0] else None
        rest = dims[1:]
        if not 1 <= len(rest) <= 3:
            raise MnistEdgeError(f"input {inp.name!r} has shape [{text}]; supported: a vector "
                                 "[N,K] ([N,K,1], [N,1,K]) or an image [N,C,H,W] / [N,H,W,C] "
                                 f"(not a rank-{len(dims)} tensor)")
        if None in rest:
            raise MnistEdgeError(f"input {inp.name!r} has shape [{text}]: dynamic sizes other "
                                 "than the batch are not supported; export with a fixed input "
                                 "size")
        sizes = [int(d) for d in rest if d is not None]
        if len(sizes) == 2 and 1 not in sizes:
            raise MnistEdgeError(f"input {inp.name!r} has shape [{text}]: neither a vector "
                                 "([N,K], [N,K,1], [N,1,K]) nor an image with channels "
                                 "([N,C,H,W], [N,H,W,C])")
        vector = len(sizes) == 1 or len(sizes) == 2
        option = self.layout_option
        if vector:
            if option in ("nchw", "nhwc"):
                raise MnistEdgeError(f"--layout {option}: but input {inp.name!r} is a vector "
                                     f"([{text}])")
            k = int(np.prod(sizes))
            self.layout = "flat"
            self.shapes[INPUT] = (k,)
            self.values[inp.name] = Value(INPUT, (k,), (0, 1),
                                          units=tuple(sizes) if len(sizes) == 2 else None)
            self.values_input_shape = tuple(sizes)
            return
        layout = self._image_layout(inp.name, sizes, option)
        c, h, w = sizes if layout == "nchw" else (sizes[2], sizes[0], sizes[1])
        self.layout = layout
        self.shapes[INPUT] = (c, h, w)
        perm = (0, 1, 2, 3) if layout == "nchw" else (0, 2, 3, 1)
        self.values[inp.name] = Value(INPUT, (c, h, w), perm)
        self.values_input_shape = tuple(sizes)

    def _image_layout(self, name: str, sizes: list[int], option: str) -> str:
        """NCHW or NHWC. The first node that reads the input decides when it can: an NCHW op
        (Conv, pooling) reads NCHW; a Transpose to NCHW (Keras, tf2onnx) reads NHWC. Otherwise
        --layout, else NHWC when only the last dim looks like a channel count (1 or 3)."""
        readers = [n for n in self.graph.node if name in n.input]
        said = None
        if readers and readers[0].op_type in ("Conv", "MaxPool", "AveragePool",
                                              "GlobalAveragePool", "BatchNormalization"):
            said = "nchw"
        elif readers and readers[0].op_type == "Transpose":
            perm = [int(p) for p in _attrs(readers[0]).get("perm", [])]
            said = {(0, 3, 1, 2): "nhwc", (0, 1, 2, 3): "nchw"}.get(tuple(perm))
        if option in ("nchw", "nhwc"):
            if said is not None and said != option:
                raise MnistEdgeError(f"--layout {option}: but input {name!r} is "
                                     f"{said.upper()} ([N,{','.join(map(str, sizes))}]; its "
                                     f"first node, {readers[0].op_type}, reads it so)")
            return option
        if said is not None:
            return said
        return "nhwc" if sizes[2] in (1, 3) and sizes[0] not in (1, 3) else "nchw"

    def _node(self, node) -> None:
        where = f"node {node.name or node.output[0]!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            raise MnistEdgeError(f"{where}: domain {node.domain!r} is not supported; "
                                 f"supported (default domain): {SUPPORTED}")
        ins = list(node.input)
        if node.op_type == "Constant":
            self._constant(node, where)
            return
        known = [t for t in ins if t]
        for t in known:
            if t not in self.consts and t not in self.values:
                raise MnistEdgeError(f"{where}: reads {t!r}, which no initializer or earlier "
                                     "node provides (a truncated file?)")
        if known and all(t in self.consts for t in known):
            self._fold_constant(node, where)
            return
        for t in known:
            if t in self.values and self.values[t].softmax:
                raise MnistEdgeError(f"{where}: reads the output of a Softmax/LogSoftmax; "
                                     "supported: Softmax/LogSoftmax only as the last node")
        handler = getattr(self, f"_op_{node.op_type}", None)
        if handler is None:
            raise MnistEdgeError(f"{where} is not supported; supported: {SUPPORTED}")
        used = [o for o in node.output[1:] if o and self.consumers[o]]
        if used:
            raise MnistEdgeError(f"{where}: its extra output {used[0]!r} is used; only the "
                                 "first output is supported")
        result = handler(node, where, _attrs(node))
        if isinstance(result, Value):
            self.values[node.output[0]] = result
        elif result is not None:
            self.consts[node.output[0]] = result

    # ------------------------------------------------------------------ helpers
    def _fresh(self, prefix: str) -> str:
        return f"{prefix}{len(self.ops)}"

    def _append(self, op: FOp, shape: tuple[int, ...]) -> None:
        self.ops.append(op)
        self.read.update(op.inputs or [])
        self.shapes[op.name] = shape

    def _value(self, node, where: str, i: int = 0, allow_pad: bool = False) -> Value:
        name = node.input[i]
        if name not in self.values:
            raise MnistEdgeError(f"{where}: input {i} ({name!r}) must be a tensor computed from "
                                 "the image, not a constant")
        v = self.values[name]
        if v.pad is not None and not allow_pad:
            raise MnistEdgeError(f"{where}: reads a zero-padded tensor; supported: Pad only "
                                 "right before a Conv or an AveragePool (it becomes their "
                                 "padding)")
        return getattr(v, "_done", None) or v  # once emitted, later readers see the op

    def _const(self, node, where: str, i: int, what: str) -> np.ndarray | None:
        if len(node.input) <= i or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.consts:
            raise MnistEdgeError(f"{where}: {what} ({name!r}) must be a constant")
        return self.consts[name]

    def _constant(self, node, where: str) -> None:
        from onnx import numpy_helper

        a = _attrs(node)
        if "value" in a:
            arr = numpy_helper.to_array(a["value"])
        elif "value_float" in a:
            arr = np.array(a["value_float"], np.float32)
        elif "value_floats" in a:
            arr = np.array(a["value_floats"], np.float32)
        elif "value_int" in a:
            arr = np.array(a["value_int"], np.int64)
        elif "value_ints" in a:
            arr = np.array(a["value_ints"], np.int64)
        else:
            raise MnistEdgeError(f"{where}: only tensor, float(s) and int(s) constants are "
                                 "supported")
        self.consts[node.output[0]] = arr

    def _fold_constant(self, node, where: str) -> None:
        """Shape arithmetic and weight preprocessing on constants: the ONNX reference runs it,
        as a one-node model of the file's opset (given a bare node, the evaluator picks each
        operator's newest version: opset 11's Unsqueeze with an `axes` attribute failed)."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        try:
            feeds = {t: self.consts[t] for t in node.input if t}
            graph = helper.make_graph(
                [node], "fold",
                [helper.make_tensor_value_info(t, helper.np_dtype_to_tensor_dtype(a.dtype), None)
                 for t, a in feeds.items()],
                [helper.make_empty_tensor_value_info(t) for t in node.output if t])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
            ev = ReferenceEvaluator(model)
            outs = ev.run(None, feeds)
        except Exception as exc:  # the reference evaluator raises many types
            raise MnistEdgeError(f"{where}: cannot evaluate this constant subgraph "
                                 f"({type(exc).__name__}: {exc})") from None
        for name, arr in zip(node.output, outs, strict=False):
            if name:
                self.consts[name] = np.asarray(arr)

    def _emit(self, kind: str, attrs: dict[str, Any], arrays: dict[str, np.ndarray],
              inputs: list[Value], shape: tuple[int, ...], perm: tuple[int, ...] | None = None
              ) -> Value:
        prefix = OP_PREFIX.get(kind, kind)
        op = FOp(self._fresh(prefix), kind, attrs, arrays, [v.tensor for v in inputs])
        self._append(op, shape)
        return Value(op.name, shape, perm or tuple(range(len(shape) + 1)))

    def _materialize(self, v: Value, what: str) -> Value:
        """A view with no pending function: emit the activation (or fold the normalization)."""
        if v.affine is not None:
            return self._flush_affine(v)
        if v.fn is None:
            return v
        cached = getattr(v, "_done", None)
        if cached is not None:
            return cached
        plain = replace(v, fn=None, act=None, trail=[], softmax=False)
        with np.errstate(all="ignore"):
            y = v.fn(GRID)
        if np.allclose(y, GRID, rtol=1e-7, atol=1e-9):
            result = plain
        elif v.tensor == INPUT and self._affine(v.fn):
            if INPUT in self.read:
                raise MnistEdgeError(f"{what}: the input is normalized after a layer read it raw")
            a, b = float(v.fn(np.array(1.0)) - v.fn(np.array(0.0))), float(v.fn(np.array(0.0)))
            self.norm_scale, self.norm_shift = a * self.norm_scale, a * self.norm_shift + b
            result = plain
        else:
            kind, attrs = v.act or self._identify(v, what)
            result = self._emit(kind, dict(attrs), {}, [plain], v.shape, v.perm)
            result.fperm = v.fperm
        v._done = result  # type: ignore[attr-defined]
        return result

    def _flush_affine(self, v: Value) -> Value:
        """A pending per-channel affine that no layer absorbs, as an op of its own: on an
        image a depthwise 1x1 conv (weight k, bias b per channel), on a vector a linear
        with the diagonal weight diag(k). Both are exact and every backend runs them."""
        if v.affine is None:
            return v
        cached = getattr(v, "_done", None)
        if cached is not None:
            return cached
        k, b = v.affine
        plain = replace(v, affine=None, affine_nodes=[])
        if len(v.shape) == 3:
            c = v.shape[0]
            out = self._emit("conv2d", {"kernel": [1, 1], "stride": [1, 1],
                                        "padding": [0, 0, 0, 0], "groups": c},
                             {"weight": k.reshape(c, 1, 1, 1), "bias": b}, [plain], v.shape,
                             v.perm)
        else:
            out = self._emit("linear", {}, {"weight": np.diag(k), "bias": b}, [plain],
                             v.shape, v.perm)
        out.fperm = v.fperm
        self._absorbed(v, out.tensor, "kept as a per-channel affine op")
        v._done = out  # type: ignore[attr-defined]
        return out

    def _absorbed(self, v: Value, into: str, how: str) -> None:
        for entry in v.affine_nodes:
            self.folded.append({**entry, "into": into, "how": how})

    def _pending_affine(self, node, v: Value, k: np.ndarray, b: np.ndarray,
                        where: str) -> Value:
        """v*k + b per IR channel, left pending: composed with an affine already pending."""
        if v.units is not None or len(v.shape) not in (1, 3):
            raise MnistEdgeError(f"{where}: a per-channel {node.op_type} is supported on "
                                 "[N,C,H,W] and [N,K] tensors only")
        if v.pad is not None:
            raise MnistEdgeError(f"{where}: reads a zero-padded tensor; supported: Pad only "
                                 "right before a Conv or an AveragePool")
        v = self._materialize(v, where) if v.fn is not None else v
        if v.affine is not None:
            k0, b0 = v.affine
            k, b = k * k0, k * b0 + b
        entry = {"node": node.name or node.output[0], "op_type": node.op_type}
        return self._alias(node, v, affine=(k, b), affine_nodes=[*v.affine_nodes, entry])

    @staticmethod
    def _affine(fn: Callable[[np.ndarray], np.ndarray]) -> bool:
        with np.errstate(all="ignore"):
            b = float(fn(np.array(0.0)))
            a = float(fn(np.array(1.0))) - b
            return a != 0 and bool(np.allclose(fn(GRID), a * GRID + b, rtol=1e-7, atol=1e-9))

    def _settled(self, v: Value) -> bool:
        """Whether v's pending function is already a whole activation (or normalization)."""
        if v.act is not None or (v.tensor == INPUT and v.fn is not None and self._affine(v.fn)):
            return True
        try:
            self._identify(v, "")
        except MnistEdgeError:
            return False
        return True

    def _identify(self, v: Value, what: str) -> tuple[str, dict[str, float]]:
        assert v.fn is not None
        with np.errstate(all="ignore"):
            y = v.fn(GRID)
        for kind, attrs in CANDIDATES:
            want = _act(kind, attrs)(GRID)
            if np.allclose(y, want, rtol=1e-5, atol=1e-6):
                return kind, attrs
        chain = " -> ".join(v.trail) or "elementwise ops"
        raise MnistEdgeError(f"{what}: the elementwise pattern {chain} on tensor {v.tensor!r} is "
                             "no supported activation (relu, gelu, silu, hardswish, sigmoid, "
                             "tanh, selu, elu, hardsigmoid, clip) nor an input normalization")

    def _layer_input(self, node, where: str, rank: int, i: int = 0,
                     allow_pad: bool = False, keep_affine: bool = False) -> Value:
        """The input of a layer, materialized; with keep_affine a pending affine stays on the
        view, for the layer to absorb (or flush)."""
        v = self._value(node, where, i, allow_pad)
        if not (keep_affine and v.affine is not None):
            v = self._materialize(v, where)
        if v.units is not None:
            raise MnistEdgeError(f"{where}: reads the input as [N,{','.join(map(str, v.units))}]"
                                 "; supported: a vector input flattened (Flatten, Reshape, "
                                 "Squeeze) before its first layer")
        if len(v.shape) + 1 != rank:
            raise MnistEdgeError(f"{where}: expects a {rank}-D input, got "
                                 f"[N,{','.join(str(d) for d in v.onnx_shape)}]")
        if rank == 4 and v.perm != (0, 1, 2, 3):
            raise MnistEdgeError(f"{where}: its input is not in NCHW order (an NHWC tensor with "
                                 "no Transpose before this node); supported: NCHW Conv/Pool")
        return v

    def _alias(self, node, v: Value, **changes: Any) -> Value:
        """The same tensor under another ONNX name (Identity, Cast, Dropout, Transpose...)."""
        sole = v.sole and self.consumers[node.input[0]] == 1
        return replace(v, sole=sole, **changes)

    def _drop(self, node, why: str) -> None:
        self.dropped.append({"node": node.name or node.output[0], "op_type": node.op_type,
                             "why": why})

    def _producer(self, v: Value, onnx_name: str) -> FOp | None:
        """The Conv/Gemm op that made v, when a constant may fold into it."""
        if (v.fn is not None or v.affine is not None or not v.sole
                or self.consumers[onnx_name] != 1
                or v.tensor in self.read or v.tensor == INPUT):
            return None
        op = next(o for o in self.ops if o.name == v.tensor)
        return op if op.kind in ("conv2d", "linear") else None

    def _per_channel(self, c: np.ndarray, v: Value, where: str) -> np.ndarray | None:
        """A constant broadcast against v -> one value per IR channel, or None."""
        rank = len(v.perm)
        if c.ndim > rank:
            return None
        c = c.reshape((1,) * (rank - c.ndim) + c.shape).astype(np.float64)
        if c.shape[0] != 1:
            return None
        c = np.transpose(c, np.argsort(v.perm))
        if any(d != 1 for d in c.shape[2:]):
            return None
        vec = c.reshape(-1)
        channels = v.shape[0]
        if vec.size == 1:
            return np.full(channels, vec[0])
        if vec.size != channels:
            return None
        if v.fperm is not None:
            out = np.empty(channels)
            out[v.fperm] = vec
            return out
        return vec

    # ------------------------------------------------------------------ layers
    def _op_Conv(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._layer_input(node, where, 4, allow_pad=True, keep_affine=True)
        w = self._const(node, where, 1, "the weight")
        b = self._const(node, where, 2, "the bias")
        if w is None or w.ndim != 4:
            raise MnistEdgeError(f"{where}: only 2-D convolutions are supported")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise MnistEdgeError(f"{where}: dilations {a['dilations']} are not supported "
                                 "(supported: 1)")
        kh, kw = (int(k) for k in a.get("kernel_shape", w.shape[2:]))
        if (kh, kw) != tuple(w.shape[2:]):
            raise MnistEdgeError(f"{where}: kernel_shape does not match the weight")
        stride = [int(s) for s in a.get("strides", [1, 1])]
        groups = int(a.get("group", 1))
        c, h, wd = v.shape
        if w.shape[1] * groups != c or w.shape[0] % groups:
            raise MnistEdgeError(f"{where}: weight {list(w.shape)} with group {groups} does not "
                                 f"fit {c} input channels")
        pads = self._pads(a, where, (h, wd), (kh, kw), stride)
        if v.pad is not None:
            if _str(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "", "VALID"):
                raise MnistEdgeError(f"{where}: a Pad before a Conv with auto_pad SAME is not "
                                     "supported")
            pads = [p + q for p, q in zip(pads, v.pad, strict=True)]
        oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
        ow = (wd + pads[1] + pads[3] - kw) // stride[1] + 1
        if oh < 1 or ow < 1:
            raise MnistEdgeError(f"{where}: output would be empty")
        w = w.astype(np.float64)
        bias = b.astype(np.float64) if b is not None else np.zeros(w.shape[0])
        if v.affine is not None and any(pads):
            # the padding zeros would enter after the affine, x*k+b, not before: not exact
            v = self._flush_affine(v)
        if v.affine is not None:
            w, bias = _fold_forward_conv(w, bias, groups, *v.affine)
            self._absorbed(v, self._fresh("conv"), "folded forward into the next Conv")
            v = replace(v, affine=None, affine_nodes=[])
        return self._emit("conv2d", {"kernel": [kh, kw], "stride": stride, "padding": pads,
                                     "groups": groups},
                          {"weight": w, "bias": bias}, [v], (int(w.shape[0]), oh, ow))

    @staticmethod
    def _pads(a: dict[str, Any], where: str, hw: tuple[int, int], k: tuple[int, int],
              stride: list[int]) -> list[int]:
        auto = _str(a.get("auto_pad", "NOTSET"))
        if auto in ("NOTSET", ""):
            p = [int(x) for x in a.get("pads", [0, 0, 0, 0])]
            return [p[0], p[1], p[2], p[3]]
        if auto == "VALID":
            return [0, 0, 0, 0]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            out = []
            for size, kk, s in zip(hw, k, stride, strict=True):
                total = max((math.ceil(size / s) - 1) * s + kk - size, 0)
                small, big = total // 2, total - total // 2
                out.append((small, big) if auto == "SAME_UPPER" else (big, small))
            return [out[0][0], out[1][0], out[0][1], out[1][1]]
        raise MnistEdgeError(f"{where}: auto_pad {auto} is not supported")

    def _linear(self, v: Value, weight: np.ndarray, bias: np.ndarray, where: str) -> Value:
        """weight [out, in] in the ONNX feature order; permuted to the IR order here."""
        if weight.shape[1] != v.shape[0]:
            raise MnistEdgeError(f"{where}: weight [{weight.shape[1]} inputs] does not fit "
                                 f"{v.shape[0]} features")
        weight = permute_columns(weight, v.fperm).astype(np.float64)
        bias = bias.astype(np.float64)
        if v.affine is not None:  # columns are in the IR order now, as the affine is
            k, b = v.affine
            weight, bias = weight * k[None, :], bias + weight @ b
            self._absorbed(v, self._fresh("fc"), "folded forward into the next Gemm/MatMul")
        return self._emit("linear", {}, {"weight": weight, "bias": bias},
                          [replace(v, fperm=None, affine=None, affine_nodes=[])],
                          (int(weight.shape[0]),))

    def _op_Gemm(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._layer_input(node, where, 2, keep_affine=True)
        b = self._const(node, where, 1, "B (the weight)")
        c = self._const(node, where, 2, "C (the bias)")
        if int(a.get("transA", 0)):
            raise MnistEdgeError(f"{where}: transA=1 is not supported")
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        if b is None or b.ndim != 2:
            raise MnistEdgeError(f"{where}: B must be a 2-D constant")
        weight = (b if int(a.get("transB", 0)) else b.T).astype(np.float64) * alpha
        out = weight.shape[0]
        bias = np.zeros(out)
        if c is not None:
            if c.size not in (1, out):
                raise MnistEdgeError(f"{where}: C of shape {list(c.shape)} is not per output")
            bias = np.broadcast_to(c.astype(np.float64).reshape(-1), (out,)) * beta
        return self._linear(v, weight, bias, where)

    def _op_MatMul(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._layer_input(node, where, 2, keep_affine=True)
        b = self._const(node, where, 1, "the weight (second input)")
        if b is None or b.ndim != 2:
            raise MnistEdgeError(f"{where}: the weight must be a 2-D constant")
        return self._linear(v, b.T.astype(np.float64), np.zeros(b.shape[1]), where)

    def _op_BatchNormalization(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._value(node, where)
        if int(a.get("training_mode", 0)):
            raise MnistEdgeError(f"{where}: training_mode=1 is not supported; export in eval "
                                 "mode")
        scale, bias, mean, var = (self._const(node, where, i, n).astype(np.float64)
                                  for i, n in enumerate(("scale", "B", "mean", "var"), 1))
        k = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        rank = len(v.perm)
        per_k, per_b = (self._per_channel(x.reshape((-1,) + (1,) * (rank - 2)), v, where)
                        if rank >= 2 else None for x in (k, bias - mean * k))
        if per_k is None or per_b is None:
            raise MnistEdgeError(f"{where}: its axis 1 is not the channels of "
                                 f"[N,{','.join(map(str, v.onnx_shape))}] (an NHWC tensor "
                                 "without a Transpose?)")
        op = self._producer(v, node.input[0])
        if op is None:  # after a ReLU, a pool, a shared output: fold forward, or an op
            return self._pending_affine(node, v, per_k, per_b, where)
        shape = (-1,) + (1,) * (op.arrays["weight"].ndim - 1)
        op.arrays["weight"] = op.arrays["weight"] * per_k.reshape(shape)
        op.arrays["bias"] = op.arrays["bias"] * per_k + per_b
        self.folded.append({"node": node.name or node.output[0], "op_type": node.op_type,
                            "into": op.name})
        return replace(v, sole=True)

    def _pool(self, node, where: str, a: dict[str, Any], kind: str) -> Value:
        """Unpadded pooling; an average whose padding counts as zeros (a Pad node before it,
        or its own pads with count_include_pad=1) is a depthwise conv of weight 1/(kh*kw):
        exact, and every backend has it (padded pools exist in the tflite arithmetic only)."""
        average = kind == "avgpool2d"
        v = self._layer_input(node, where, 4, allow_pad=average)
        k = [int(x) for x in a["kernel_shape"]]
        s = [int(x) for x in a.get("strides", [1, 1])]
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise MnistEdgeError(f"{where}: dilated pooling is not supported")
        pads = self._pads(a, where, v.shape[1:], tuple(k), s)
        zeros_counted = average and int(a.get("count_include_pad", 0))
        if any(pads) and not zeros_counted:
            raise MnistEdgeError(f"{where}: padded pooling (pads {pads}) is not supported; "
                                 "supported: pads 0, or an average that counts the padding "
                                 "(count_include_pad=1, or a Pad before it)")
        if v.pad is not None:
            pads = [p + q for p, q in zip(pads, v.pad, strict=True)]
        c, h, w = v.shape
        h, w = h + pads[0] + pads[2], w + pads[1] + pads[3]
        oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
        if int(a.get("ceil_mode", 0)):
            ceil = (-(-(h - k[0]) // s[0]) + 1, -(-(w - k[1]) // s[1]) + 1)
            if ceil != (oh, ow):
                raise MnistEdgeError(f"{where}: ceil_mode=1 changes the output size here; "
                                     "supported: ceil_mode 0")
        if oh < 1 or ow < 1:
            raise MnistEdgeError(f"{where}: output would be empty")
        if any(pads):
            weight = np.full((c, 1, k[0], k[1]), 1.0 / (k[0] * k[1]))
            return self._emit("conv2d", {"kernel": k, "stride": s, "padding": pads,
                                         "groups": c},
                              {"weight": weight, "bias": np.zeros(c)},
                              [replace(v, pad=None)], (c, oh, ow))
        return self._emit(kind, {"kernel": k, "stride": s}, {}, [v], (c, oh, ow))

    def _op_MaxPool(self, node, where: str, a: dict[str, Any]) -> Value:
        return self._pool(node, where, a, "maxpool2d")

    def _op_AveragePool(self, node, where: str, a: dict[str, Any]) -> Value:
        return self._pool(node, where, a, "avgpool2d")

    def _op_GlobalAveragePool(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._layer_input(node, where, 4)
        return self._emit("global_avgpool", {}, {}, [v], (v.shape[0], 1, 1))

    def _op_ReduceMean(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._materialize(self._value(node, where), where)
        axes = a.get("axes")
        if axes is None:
            axes_c = self._const(node, where, 1, "axes")
            axes = [] if axes_c is None else [int(x) for x in axes_c.reshape(-1)]
        rank = len(v.perm)
        ir_axes = sorted(v.perm[int(x) % rank] for x in axes)
        if rank != 4 or ir_axes != [2, 3]:
            raise MnistEdgeError(f"{where}: only a mean over the two spatial axes (global "
                                 "average pooling) is supported")
        gap = self._emit("global_avgpool", {}, {}, [replace(v, perm=(0, 1, 2, 3))],
                         (v.shape[0], 1, 1), v.perm)
        if int(a.get("keepdims", 1)):
            return gap
        return self._emit("flatten", {}, {}, [gap], (v.shape[0],))

    def _flatten(self, v: Value, where: str) -> Value:
        if len(v.shape) == 1:
            return replace(v, units=None)
        affine = v.affine
        v = self._materialize(replace(v, affine=None) if affine is not None else v, where)
        size = int(np.prod(v.shape))
        fperm = flatten_order(v.shape, tuple(p - 1 for p in v.perm[1:]))
        out = self._emit("flatten", {}, {}, [v], (size,))
        out.fperm = None if is_identity(fperm) else fperm
        if affine is not None:  # per channel -> per feature (the IR flattens C,H,W)
            spatial = size // v.shape[0]
            out.affine = (np.repeat(affine[0], spatial), np.repeat(affine[1], spatial))
            out.affine_nodes = v.affine_nodes
        return out

    def _op_Flatten(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._value(node, where)
        axis = int(a.get("axis", 1)) % (len(v.perm))
        if axis != 1:
            raise MnistEdgeError(f"{where}: only axis=1 is supported")
        return self._flatten(v, where)

    def _target_shape(self, v: Value, shape: np.ndarray, where: str, allowzero: bool
                      ) -> list[int]:
        dims = [int(d) for d in shape.reshape(-1)]
        onnx = [BATCH, *v.onnx_shape]
        if not allowzero:
            dims = [onnx[i] if d == 0 and i < len(onnx) else d for i, d in enumerate(dims)]
        if not dims or dims[0] not in (BATCH, -1) and dims[0] != self.batch:
            raise MnistEdgeError(f"{where}: reshape to {dims} does not keep the batch axis first "
                                 "(supported: [N, ...] with N from Shape, 0 or -1)")
        rest = dims[1:] if dims[0] != -1 else dims[1:]
        size = int(np.prod(v.shape))
        if dims[0] == -1 and -1 in rest:
            raise MnistEdgeError(f"{where}: reshape to {dims} has two unknown sizes")
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1]))
            rest = [size // known if d == -1 else d for d in rest]
        if int(np.prod(rest)) != size:
            raise MnistEdgeError(f"{where}: reshape to {dims} does not keep the "
                                 f"{size} values of each image")
        return rest

    def _op_Reshape(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._value(node, where)
        shape = self._const(node, where, 1, "the target shape")
        rest = self._target_shape(v, shape, where, bool(a.get("allowzero", 0)))
        if tuple(rest) == v.onnx_shape:
            return self._alias(node, v)
        if len(rest) == 1:
            return self._flatten(v, where)
        perm = _axis_move(v.onnx_shape, rest) if v.units is None else None
        if perm is not None:  # tf2onnx's Transpose that moves only a size-1 axis
            return self._alias(node, v, perm=tuple(v.perm[p] for p in perm))
        raise MnistEdgeError(f"{where}: reshape [N,{','.join(map(str, v.onnx_shape))}] -> "
                             f"[N,{','.join(map(str, rest))}] is not supported (supported: "
                             "flatten to [N, features])")

    def _op_Squeeze(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._value(node, where)
        axes = a.get("axes")
        if axes is None:
            c = self._const(node, where, 1, "axes")
            axes = [] if c is None else [int(x) for x in c.reshape(-1)]
        rank = len(v.perm)
        onnx = [0, *v.onnx_shape]
        axes = sorted(int(x) % rank for x in axes) or [i for i in range(1, rank) if onnx[i] == 1]
        keep = [d for i, d in enumerate(onnx[1:], 1) if i not in axes]
        if 0 in axes or any(onnx[i] != 1 for i in axes) or len(keep) != 1:
            raise MnistEdgeError(f"{where}: only squeezing [N,C,1,1] to [N,C] is supported")
        return self._flatten(v, where)

    def _op_Transpose(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._value(node, where, allow_pad=True)
        rank = len(v.perm)
        perm = [int(p) for p in a.get("perm", list(range(rank))[::-1])]
        if perm[0] != 0:
            raise MnistEdgeError(f"{where}: a transpose that moves the batch axis is not "
                                 "supported")
        return self._alias(node, v, perm=tuple(v.perm[p] for p in perm))

    def _op_Concat(self, node, where: str, a: dict[str, Any]) -> Value:
        vals = [self._materialize(self._value(node, where, i), where)
                for i in range(len(node.input))]
        rank = len(vals[0].perm)
        axis = int(a["axis"]) % rank
        if rank != 4 or any(v.perm != vals[0].perm for v in vals) or vals[0].perm[axis] != 1:
            raise MnistEdgeError(f"{where}: only concatenation of image tensors along channels "
                                 "is supported")
        if any(v.shape[1:] != vals[0].shape[1:] for v in vals):
            raise MnistEdgeError(f"{where}: inputs differ in height or width")
        channels = sum(v.shape[0] for v in vals)
        return self._emit("concat", {"axis": 1}, {}, vals,
                          (channels, *vals[0].shape[1:]), vals[0].perm)

    # ------------------------------------------------------------------ pass-through
    def _op_Identity(self, node, where: str, a: dict[str, Any]) -> Value:
        self._drop(node, "identity")
        return self._alias(node, self._value(node, where, allow_pad=True))

    def _op_Dropout(self, node, where: str, a: dict[str, Any]) -> Value:
        if len(node.input) > 2 and node.input[2] and self._const(node, where, 2, "training")[()]:
            raise MnistEdgeError(f"{where}: training_mode=True is not supported")
        self._drop(node, "dropout is the identity at inference")
        return self._alias(node, self._value(node, where, allow_pad=True))

    def _op_Pad(self, node, where: str, a: dict[str, Any]) -> Value:
        """Zero padding of H and W (Keras writes one before every asymmetric 'same' Conv), for
        the Conv or AveragePool that reads it; pads all zero are the identity anywhere."""
        v = self._value(node, where)
        if _str(a.get("mode", "constant")) != "constant":
            raise MnistEdgeError(f"{where}: mode {_str(a['mode'])} is not supported "
                                 "(supported: constant zero padding)")
        rank = len(v.perm)
        if self.opset < 11:
            pads, value = [int(x) for x in a["pads"]], float(a.get("value", 0.0))
        else:
            pads = [int(x) for x in self._const(node, where, 1, "pads").reshape(-1)]
            c = self._const(node, where, 2, "constant_value")
            value = 0.0 if c is None else float(c.reshape(-1)[0])
            axes_c = self._const(node, where, 3, "axes")
            if axes_c is not None:
                axes = [int(x) % rank for x in axes_c.reshape(-1)]
                full = [0] * (2 * rank)
                for j, ax in enumerate(axes):
                    full[ax], full[rank + ax] = pads[j], pads[len(axes) + j]
                pads = full
        if not any(pads):
            self._drop(node, "pads all zero: the identity")
            return self._alias(node, v)
        v = self._materialize(v, where)
        if value != 0.0 or rank != 4:
            raise MnistEdgeError(f"{where}: only zero padding of image tensors is supported")
        begin, end = [0] * 4, [0] * 4
        for i in range(rank):
            begin[v.perm[i]], end[v.perm[i]] = pads[i], pads[rank + i]
        if begin[:2] != [0, 0] or end[:2] != [0, 0] or min(pads) < 0:
            raise MnistEdgeError(f"{where}: only non-negative padding of height and width is "
                                 "supported")
        c, h, w = v.shape
        extra = (begin[2], begin[3], end[2], end[3])
        if v.pad is not None:
            extra = tuple(p + q for p, q in zip(extra, v.pad, strict=True))
        out = self._alias(node, v, pad=extra)
        out.shape = (c, h, w)  # the IR tensor is unpadded; the Conv adds the rows
        return out

    def _op_Cast(self, node, where: str, a: dict[str, Any]) -> Value:
        from onnx import TensorProto

        if int(a["to"]) != TensorProto.FLOAT:
            raise MnistEdgeError(f"{where}: cast of a float tensor to type {a['to']} is not "
                                 "supported (supported: no-op casts to float)")
        self._drop(node, "cast to float32 of a float32 tensor")
        return self._alias(node, self._value(node, where, allow_pad=True))

    def _softmax(self, node, where: str, a: dict[str, Any]) -> Value:
        v = self._materialize(self._value(node, where), where)
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1)) % len(v.perm)
        if len(v.shape) != 1 or axis != 1:
            raise MnistEdgeError(f"{where}: only a softmax over the classes of [N, classes] "
                                 "is supported")
        out = node.output[0]
        if [o.name for o in self.graph.output] != [out] or self.consumers[out] != 1:
            raise MnistEdgeError(f"{where}: supported only as the last node (its output must "
                                 "be the model's output and nothing else's input)")
        self.presoftmax = node.input[0]
        self._drop(node, "monotonic at the output: argmax unchanged")
        return replace(v, softmax=True)

    _op_Softmax = _softmax
    _op_LogSoftmax = _softmax

    def _op_Shape(self, node, where: str, a: dict[str, Any]) -> np.ndarray:
        v = self._value(node, where)
        dims = np.array([self.batch or BATCH, *v.onnx_shape], np.int64)
        if self.batch is None:
            dims[0] = BATCH
        start, end = int(a.get("start", 0)), a.get("end")
        return dims[start:None if end is None else int(end)]

    # ------------------------------------------------------------------ elementwise
    def _unary(self, node, where: str, kind: str, attrs: dict[str, float] | None = None,
               fn: Callable[[np.ndarray], np.ndarray] | None = None) -> Value:
        v = self._flush_affine(self._value(node, where))
        if fn is None and v.fn is not None and self._settled(v):
            v = self._materialize(v, where)  # an activation of an activation: two ops
        f = fn or _act(kind, attrs)
        inner = v.fn
        composed = f if inner is None else (lambda x, f=f, g=inner: f(g(x)))
        act = (kind, dict(attrs or {})) if inner is None and fn is None else None
        out = self._alias(node, v, fn=composed, act=act)
        out.trail = [*v.trail, node.op_type] if inner is not None else [node.op_type]
        return out

    def _op_Relu(self, node, where, a):
        return self._unary(node, where, "relu")

    def _op_Sigmoid(self, node, where, a):
        return self._unary(node, where, "sigmoid")

    def _op_Tanh(self, node, where, a):
        return self._unary(node, where, "tanh")

    def _op_HardSwish(self, node, where, a):
        return self._unary(node, where, "hardswish")

    def _op_Erf(self, node, where, a):
        return self._unary(node, where, "erf", fn=_erf)

    def _op_LeakyRelu(self, node, where, a):
        return self._unary(node, where, "leaky_relu", {"alpha": float(a.get("alpha", 0.01))})

    def _op_Elu(self, node, where, a):
        return self._unary(node, where, "elu", {"alpha": float(a.get("alpha", 1.0))})

    def _op_HardSigmoid(self, node, where, a):
        return self._unary(node, where, "hardsigmoid",
                           {"alpha": float(a.get("alpha", 0.2)), "beta": float(a.get("beta", 0.5))})

    def _op_Selu(self, node, where, a):
        alpha, gamma = float(a.get("alpha", SELU_ALPHA)), float(a.get("gamma", SELU_SCALE))
        if abs(alpha - SELU_ALPHA) > 1e-6 or abs(gamma - SELU_SCALE) > 1e-6:
            raise MnistEdgeError(f"{where}: only the standard SELU constants are supported "
                                 f"(alpha {SELU_ALPHA}, gamma {SELU_SCALE})")
        return self._unary(node, where, "selu")

    def _op_Gelu(self, node, where, a):
        if _str(a.get("approximate", "none")) != "none":
            raise MnistEdgeError(f"{where}: approximate={_str(a['approximate'])} is not "
                                 "supported (supported: the exact erf GELU)")
        return self._unary(node, where, "gelu")

    def _op_Clip(self, node, where, a):
        if self.opset < 11:
            lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
        else:
            c_lo = self._const(node, where, 1, "min")
            c_hi = self._const(node, where, 2, "max")
            lo = -np.inf if c_lo is None else float(c_lo)
            hi = np.inf if c_hi is None else float(c_hi)
        if lo == 0.0 and hi == np.inf:
            return self._unary(node, where, "relu")
        return self._unary(node, where, "clip", {"min": max(lo, -F32_MAX), "max": min(hi, F32_MAX)})

    def _binary(self, node, where: str, op: str) -> Value:
        x, y = node.input[0], node.input[1]
        if x in self.values and y in self.values:
            return self._two_values(node, where, op)
        swapped = x in self.consts
        v = self.values[y if swapped else x]
        c = self.consts[x if swapped else y].astype(np.float64)
        producer = self._producer(v, y if swapped else x)
        per_channel = self._per_channel(c, v, where) if producer is not None else None
        if producer is not None and per_channel is not None:
            return self._fold_affine(node, v, producer, per_channel, op, swapped, where)
        if c.size != 1 and v.tensor == INPUT and INPUT not in self.read:
            per = self._per_channel(c, v, where)
            if per is not None:
                return self._normalize_channels(node, v, per, op, swapped, where)
        per = self._per_channel(c, v, where) if c.size != 1 else None
        if per is not None and not (op == "Div" and swapped) and v.units is None:
            # a BatchNormalization exported as Mul and Add (tf2onnx) after a ReLU
            one, zero = np.ones_like(per), np.zeros_like(per)
            k, b = {"Add": (one, per), "Sub": (-one, per) if swapped else (one, -per),
                    "Mul": (per, zero), "Div": (1.0 / per, zero)}[op]
            return self._pending_affine(node, v, k, b, where)
        if c.size != 1:
            raise MnistEdgeError(f"{where}: {op} of a constant of shape {list(c.shape)} is "
                                 "supported only on the output of a Conv/Gemm/MatMul that "
                                 "nothing else reads (as its bias or scale)")
        k = float(c.reshape(-1)[0])
        fns = {"Add": lambda t: t + k, "Mul": lambda t: t * k,
               "Sub": (lambda t: k - t) if swapped else (lambda t: t - k),
               "Div": (lambda t: k / t) if swapped else (lambda t: t / k)}
        return self._unary(node, where, op, fn=fns[op])

    def _normalize_channels(self, node, v: Value, c: np.ndarray, kind: str, swapped: bool,
                            where: str) -> Value:
        """A per-channel constant applied to the raw input (torchvision's Normalize with one
        mean and std per channel, inside the model): it joins the input normalization."""
        v = self._materialize(v, where)  # a scalar affine before it joins first
        if v.tensor != INPUT:
            raise MnistEdgeError(f"{where}: a per-channel {kind} after an activation of the "
                                 "input is not supported")
        a = np.broadcast_to(np.asarray(self.norm_scale, np.float64), c.shape).copy()
        b = np.broadcast_to(np.asarray(self.norm_shift, np.float64), c.shape).copy()
        if kind == "Add":
            b = b + c
        elif kind == "Sub":
            a, b = (-a, c - b) if swapped else (a, b - c)
        elif kind == "Mul":
            a, b = a * c, b * c
        elif not swapped:
            a, b = a / c, b / c
        else:
            raise MnistEdgeError(f"{where}: dividing a constant by the input is not supported")
        if not np.all(np.isfinite(a)) or np.any(a == 0) or not np.all(np.isfinite(b)):
            raise MnistEdgeError(f"{where}: the input normalization is not invertible")
        self.norm_scale, self.norm_shift = a, b
        self._drop(node, "per-channel input normalization")
        return self._alias(node, v)

    def _fold_affine(self, node, v: Value, op: FOp, c: np.ndarray, kind: str, swapped: bool,
                     where: str) -> Value:
        shape = (-1,) + (1,) * (op.arrays["weight"].ndim - 1)
        w, b = op.arrays["weight"], op.arrays["bias"]
        if kind == "Add":
            b = b + c
        elif kind == "Sub":
            w, b = (-w, c - b) if swapped else (w, b - c)
        elif kind == "Mul":
            w, b = w * c.reshape(shape), b * c
        elif kind == "Div" and not swapped:
            w, b = w / c.reshape(shape), b / c
        else:
            raise MnistEdgeError(f"{where}: dividing a constant by a tensor is not supported")
        op.arrays["weight"], op.arrays["bias"] = w, b
        self.folded.append({"node": node.name or node.output[0], "op_type": node.op_type,
                            "into": op.name})
        return replace(v, sole=True)

    def _two_values(self, node, where: str, op: str) -> Value:
        a, b = (self._flush_affine(self._value(node, where, i)) for i in (0, 1))
        if a.same_view(b):
            fa = a.fn or (lambda t: t)
            fb = b.fn or (lambda t: t)
            ops = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}

            def fn(t: np.ndarray, f=ops[op]) -> np.ndarray:
                return f(fa(t), fb(t))

            out = replace(a, fn=fn, act=None, sole=False, softmax=False)
            out.trail = [*a.trail, *b.trail, op]
            return out
        if op != "Add":
            raise MnistEdgeError(f"{where}: {op} of two different tensors is not supported "
                                 "(supported: Add of two tensors, and x*sigmoid(x) as SiLU)")
        a, b = self._materialize(a, where), self._materialize(b, where)
        if a.onnx_shape != b.onnx_shape or a.perm != b.perm or not _same_fperm(a.fperm, b.fperm):
            raise MnistEdgeError(f"{where}: Add of tensors of different shapes or layouts "
                                 f"({list(a.onnx_shape)} and {list(b.onnx_shape)}) is not "
                                 "supported (no broadcasting)")
        out = self._emit("add", {}, {}, [a, b], a.shape, a.perm)
        out.fperm = a.fperm
        return out

    def _op_Add(self, node, where, a):
        return self._binary(node, where, "Add")

    def _op_Sub(self, node, where, a):
        return self._binary(node, where, "Sub")

    def _op_Mul(self, node, where, a):
        return self._binary(node, where, "Mul")

    def _op_Div(self, node, where, a):
        return self._binary(node, where, "Div")


def convert(model, name: str, layout: str = "auto",
            normalize: tuple[Any, Any] | None = None,
            input_kind: str = "pixels") -> tuple[FloatGraph, dict[str, Any]]:
    """The float graph and what the import did (layout, dropped and folded nodes)."""
    conv = Converter(model, name, layout, normalize, input_kind)
    graph = conv.run()
    info = {"layout": conv.layout, "input_name": conv.input_name, "batch": conv.batch,
            "onnx_shape": list(conv.values_input_shape),
            "dropped": conv.dropped, "folded": conv.folded, "presoftmax": conv.presoftmax}
    return graph, info
