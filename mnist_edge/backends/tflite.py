"""`export tflite`: a QGraph in the `tflite` arithmetic -> an int8 `.tflite` TFLM runs.

The inverse of `importers.tflite_qgraph`, op for op, so that `.tflite` -> import -> export
-> import gives the same QGraph: CxHxW tensors become [1,H,W,C], OIHW filters OHWI (a
conv with one group per input channel a DEPTHWISE_CONV_2D with its channel multiplier), a
`flatten` a RESHAPE to [1,D] whose FULLY_CONNECTED readers get their weight columns back in
H,W,C order, a `lut` the TFLite activation whose TFLM table it holds (checked entry by
entry), explicit conv padding SAME or VALID where one of them is exact and otherwise a PAD
with the input zero point before a VALID conv, and the float edges a graph recorded
(`meta.float_edges`) QUANTIZE / DEQUANTIZE again. Whatever has no exact TFLite form is
refused by op name. Only the writer's dicts live here; `tflite_flatbuffer.build` writes
the bytes.

A zoo model reads raw pixels p (input encoding uint8); the file, like every int8 TFLite
image model, takes q = p - 128 at scale 1/255 and zero point -128 (what the QGraph computes
on). The description names the QGraph's hash, so the same graph always gives the same
bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MnistEdgeError
from ..importers.layout import flatten_order, is_identity
from ..importers.tflite_qgraph import HWC, LUT_OPS, activation_table, same_padding
from ..paths import atomic_write
from ..qgraph import INPUT_NAME, QGraph, QOp, QTensor
from .tflite_flatbuffer import build

FUSED = {"relu": "RELU", "relu6": "RELU6", "relu_n1_to_1": "RELU_N1_TO_1"}
LUT_BUILTINS = {name.lower(): name for name in LUT_OPS}
TFLITE_FILE = "model.int8.tflite"


def _shape(t: QTensor) -> list[int]:
    """The IR's (C, H, W) / (D,) as TFLite's batch-1 [1, H, W, C] / [1, D]."""
    s = tuple(t.shape)
    if len(s) == 3:
        return [1, s[1], s[2], s[0]]
    if len(s) == 1:
        return [1, s[0]]
    raise MnistEdgeError(f"a tensor of shape {list(s)} has no batch-1 TFLite layout")


def _act(name: str, t: QTensor, shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "shape": shape or _shape(t), "dtype": "int8", "scale": t.scale,
            "zero_point": t.zero_point}


def _fused(op: QOp) -> str:
    act = op.attrs.get("activation")
    if act is None:
        return "NONE"
    if act not in FUSED:
        raise MnistEdgeError(f"op {op.name} ({op.kind}): fused activation {act!r} has no "
                             "TFLite form")
    return FUSED[act]


def _window(op: QOp, x: QTensor, kernel: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int]) -> str | None:
    """VALID or SAME when that is exactly the op's padding [top, left, bottom, right], else
    None."""
    pad = [int(p) for p in op.attrs.get("padding", [0, 0, 0, 0])]
    if not any(pad):
        return "VALID"
    (top, bottom), (left, right) = (
        same_padding("SAME", x.shape[1 + a], kernel[a], stride[a], dilation[a]) for a in (0, 1))
    return "SAME" if pad == [top, left, bottom, right] else None


class _Writer:
    """Collects tensors and operators in QGraph order. `index` maps a QGraph tensor name to
    its TFLite tensor; `order` holds, for a flattened feature map (and what is computed
    elementwise from it), TFLite's flat element order: element j is the IR's order[j]."""

    def __init__(self, graph: QGraph) -> None:
        self.graph = graph
        self.tensors: list[dict[str, Any]] = []
        self.operators: list[dict[str, Any]] = []
        self.index: dict[str, int] = {}
        self.order: dict[str, np.ndarray] = {}

    def tensor(self, spec: dict[str, Any]) -> int:
        self.tensors.append(spec)
        return len(self.tensors) - 1

    def operator(self, builtin: str, inputs: list[int], output: int,
                 options: dict[str, Any] | None = None) -> None:
        self.operators.append({"op": builtin, "inputs": inputs, "outputs": [output],
                               "options": options or {}})

    def refuse(self, op: QOp, why: str) -> MnistEdgeError:
        return MnistEdgeError(f"export tflite: op {op.name} ({op.kind}) {why}")

    # ------------------------------------------------------------------ the walk
    def run(self) -> bytes:
        g = self.graph
        if g.arithmetic != "tflite":
            raise MnistEdgeError(f"export tflite: QGraph {g.name} is in the {g.arithmetic} "
                                 "arithmetic; only a tflite-arithmetic graph is written as a "
                                 ".tflite (mnist-edge quantize --arithmetic tflite)")
        g.validate()
        edges = g.meta.get("float_edges") or {}
        inputs = [self._input(edges.get("input"))]
        out_name = g.ops[-1].name
        skip_output_flatten = self._output_is_hwc_flatten()
        for k, op in enumerate(g.ops):
            if skip_output_flatten and k == len(g.ops) - 1:
                self.index[op.name] = self.index[op.inputs[0]]
                continue
            if op.name in self.index:  # written with the op before it (MEAN's flatten)
                continue
            lower = LOWERING.get(op.kind)
            if lower is None:
                raise self.refuse(op, "has no TFLite builtin")
            lower(self, op)
        if out_name in self.order:
            raise MnistEdgeError(f"export tflite: the output of {out_name} is a flat vector in "
                                 "TFLite's H,W,C order, not the QGraph's C,H,W order")
        output = self.index[out_name]
        if "output" in edges:
            e = edges["output"]
            self.tensors[output]["name"] = e["tensor"]
            real = self.tensor({"name": "output", "shape": self.tensors[output]["shape"],
                                "dtype": "float32"})
            self.operator("DEQUANTIZE", [output], real)
            output = real
        return build(self.tensors, self.operators, inputs, [output],
                     description=f"mnist-edge export of {g.name} (qgraph "
                                 f"{g.content_hash()[:16]})")

    def _input(self, edge: dict[str, Any] | None) -> int:
        t = self.graph.input
        if edge is None:
            self.index[INPUT_NAME] = self.tensor(_act("input", t))
            return self.index[INPUT_NAME]
        real = self.tensor({"name": "input", "shape": _shape(t), "dtype": "float32"})
        self.index[INPUT_NAME] = self.tensor(_act(edge["tensor"], t))
        self.operator("QUANTIZE", [real], self.index[INPUT_NAME])
        return real

    def _output_is_hwc_flatten(self) -> bool:
        """A graph ending in a `flatten` of a feature map gives it in C,H,W order, which no
        TFLite RESHAPE does: the file's output is the [1,H,W,C] map itself, which the
        importer (and the tflm backend) read back in C,H,W order."""
        last = self.graph.ops[-1]
        if last.kind != "flatten":
            return False
        shape = tuple(self.graph.tensor(last.inputs[0]).shape)
        return len(shape) == 3 and ("output_order" in self.graph.meta
                                    or not is_identity(flatten_order(shape, HWC)))

    def _in(self, op: QOp, k: int = 0, flat_ok: bool = False) -> int:
        name = op.inputs[k]
        if name in self.order and not flat_ok:
            raise self.refuse(op, "reads a flattened feature map whose H,W,C element order "
                              "only a FULLY_CONNECTED can take back (put the flatten right "
                              "before the linear layer)")
        return self.index[name]

    def _out(self, op: QOp, shape: list[int] | None = None) -> int:
        self.index[op.name] = self.tensor(_act(op.name, op.output, shape))
        return self.index[op.name]

    def _weights(self, op: QOp, data: np.ndarray, axis: int) -> list[int]:
        """The int8 filter (one scale when every channel shares it, as TFLite's per-tensor
        layers have) and the int32 bias at s_x * s_w[c]."""
        ws = op.arrays["w_scale"].astype(np.float32)
        s_x = self.graph.tensor(op.inputs[0]).scale
        per_tensor = bool(np.all(ws == ws[0]))
        scale = ws[:1] if per_tensor else ws
        w = self.tensor({"name": f"{op.name}/weight", "shape": list(data.shape), "dtype": "int8",
                         "scale": scale, "zero_point": [0] * scale.size, "axis": axis,
                         "data": np.ascontiguousarray(data, dtype=np.int8)})
        bias_scale = (np.float64(np.float32(s_x)) * scale.astype(np.float64)).astype(np.float32)
        b = self.tensor({"name": f"{op.name}/bias", "shape": [ws.size], "dtype": "int32",
                         "scale": bias_scale, "zero_point": [0] * scale.size, "axis": 0,
                         "data": op.arrays["bias"].astype("<i4")})
        return [w, b]

    # ------------------------------------------------------------------ the ops
    def _conv2d(self, op: QOp) -> None:
        x = self.graph.tensor(op.inputs[0])
        weight = op.arrays["weight"]
        cout, cin_g, kh, kw = weight.shape
        groups = int(op.attrs.get("groups", 1))
        stride = tuple(int(s) for s in op.attrs.get("stride", [1, 1]))
        dilation = tuple(int(d) for d in op.attrs.get("dilation", [1, 1]))
        depthwise = groups > 1  # one group per input channel (over one channel: CONV_2D)
        if groups not in (1, x.shape[0]):
            raise self.refuse(op, f"has groups {groups}; TFLite convolves with one group or "
                              "one per input channel")
        source = self._in(op)
        padding = _window(op, x, (kh, kw), stride, dilation)  # type: ignore[arg-type]
        if padding is None:
            source = self._pad(op, x, source)
            padding = "VALID"
        if depthwise:
            data, axis, builtin = weight.transpose(1, 2, 3, 0), 3, "DEPTHWISE_CONV_2D"
        else:
            data, axis, builtin = weight.transpose(0, 2, 3, 1), 0, "CONV_2D"
        ins = [source, *self._weights(op, data, axis)]
        options = {"padding": padding, "stride_h": stride[0], "stride_w": stride[1],
                   "dilation_h": dilation[0], "dilation_w": dilation[1],
                   "fused_activation": _fused(op)}
        if depthwise:
            options["depth_multiplier"] = cout // x.shape[0]
        self.operator(builtin, ins, self._out(op), options)

    def _pad(self, op: QOp, x: QTensor, source: int, out: int | None = None) -> int:
        """The op's [top, left, bottom, right] padding as a PAD: with the input zero point
        (real 0) ahead of a VALID conv (the same taps as the conv's padding, what the
        importer folds back), or as the `pad` kind itself (`out`), a PADV2 when its value
        is not the zero point."""
        top, left, bottom, right = (int(p) for p in op.attrs["padding"])
        if min(top, left, bottom, right) < 0:
            raise self.refuse(op, "has negative padding")
        pads = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], dtype="<i4")
        ins = [source, self.tensor({"name": f"{op.name}/paddings", "shape": [4, 2],
                                    "dtype": "int32", "data": pads})]
        value = int(op.attrs.get("value", x.zero_point))
        if value != x.zero_point:
            ins.append(self.tensor({**_act(f"{op.name}/value", x, [1]),
                                    "data": np.array([value], np.int8)}))
        if out is None:
            shape = [1, x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[0]]
            out = self.tensor(_act(f"{op.name}/padded", x, shape))
        self.operator("PADV2" if len(ins) == 3 else "PAD", ins, out)
        return out

    def _pad_kind(self, op: QOp) -> None:
        self._pad(op, self.graph.tensor(op.inputs[0]), self._in(op), self._out(op))

    def _mean(self, op: QOp) -> None:
        """MEAN over H and W. The importer reads keep_dims=false as this op plus a flatten
        of it: a mean whose only reader is a flatten is written back as that one MEAN with
        keep_dims=false ([1,C]), so a round trip gives the same QGraph (not the graph's
        output flatten, which the walk leaves out: the file's output is the [1,1,1,C] map)."""
        axes = self.tensor({"name": f"{op.name}/axes", "shape": [2], "dtype": "int32",
                            "data": np.array([1, 2], dtype="<i4")})
        readers = [r for r in self.graph.ops if op.name in r.inputs]
        output_flatten = (bool(readers) and readers[-1] is self.graph.ops[-1]
                          and self._output_is_hwc_flatten())
        if len(readers) == 1 and readers[0].kind == "flatten" and not output_flatten:
            flat = readers[0]
            out = self._out(flat)
            self.index[op.name] = out
            self.operator("MEAN", [self._in(op), axes], out, {"keep_dims": False})
            return
        self.operator("MEAN", [self._in(op), axes], self._out(op), {"keep_dims": True})

    def _reshape(self, op: QOp) -> None:
        """A RESHAPE that keeps the element order (the registry checks that CHW and HWC
        agree for it), to the output's batch-1 TFLite shape."""
        shape = _shape(op.output)
        new_shape = self.tensor({"name": f"{op.name}/shape", "shape": [len(shape)],
                                 "dtype": "int32", "data": np.array(shape, dtype="<i4")})
        self.operator("RESHAPE", [self._in(op), new_shape], self._out(op),
                      {"new_shape": shape})

    def _linear(self, op: QOp) -> None:
        weight = op.arrays["weight"]
        order = self.order.get(op.inputs[0])
        if order is not None:
            weight = weight[:, order]  # column j reads TFLite's flat element j
        ins = [self._in(op, flat_ok=True), *self._weights(op, weight, 0)]
        self.operator("FULLY_CONNECTED", ins, self._out(op),
                      {"fused_activation": _fused(op), "weights_format": 0,
                       "keep_num_dims": False, "asymmetric_quantize_inputs": False})

    def _flatten(self, op: QOp) -> None:
        x = self.graph.tensor(op.inputs[0])
        source = self._in(op)
        if len(x.shape) == 3:
            order = flatten_order(tuple(x.shape), HWC)
            if not is_identity(order):
                self.order[op.name] = order
        size = int(x.size)
        shape = self.tensor({"name": f"{op.name}/shape", "shape": [2], "dtype": "int32",
                             "data": np.array([1, size], dtype="<i4")})
        self.operator("RESHAPE", [source, shape], self._out(op),
                      {"new_shape": [1, size]})

    def _pool(self, op: QOp, builtin: str) -> None:
        x = self.graph.tensor(op.inputs[0])
        kernel = tuple(int(k) for k in op.attrs["kernel"])
        stride = tuple(int(s) for s in op.attrs.get("stride", kernel))
        padding = _window(op, x, kernel, stride, (1, 1))  # type: ignore[arg-type]
        if padding is None:
            raise self.refuse(op, f"has padding {op.attrs['padding']}, which is neither "
                              "TFLite's SAME nor VALID")
        self.operator(builtin, [self._in(op)], self._out(op),
                      {"padding": padding, "stride_h": stride[0], "stride_w": stride[1],
                       "filter_h": kernel[0], "filter_w": kernel[1],
                       "fused_activation": _fused(op)})

    def _maxpool2d(self, op: QOp) -> None:
        self._pool(op, "MAX_POOL_2D")

    def _avgpool2d(self, op: QOp) -> None:
        self._pool(op, "AVERAGE_POOL_2D")

    def _binary(self, op: QOp, builtin: str) -> None:
        a, b = (op.inputs[k] for k in (0, 1))
        order_a, order_b = self.order.get(a), self.order.get(b)
        if (order_a is None) != (order_b is None) or (
                order_a is not None and not np.array_equal(order_a, order_b)):
            raise self.refuse(op, "reads tensors flattened in different orders")
        ins = [self._in(op, 0, flat_ok=True), self._in(op, 1, flat_ok=True)]
        self.operator(builtin, ins, self._out(op), {"fused_activation": _fused(op)})
        if order_a is not None:
            self.order[op.name] = order_a

    def _add(self, op: QOp) -> None:
        self._binary(op, "ADD")

    def _sub(self, op: QOp) -> None:
        self._binary(op, "SUB")

    def _mul(self, op: QOp) -> None:
        self._binary(op, "MUL")

    def _concat(self, op: QOp) -> None:
        if any(len(self.graph.tensor(n).shape) != 3 for n in op.inputs):
            raise self.refuse(op, "concatenates flat vectors; TFLite's CONCATENATION is "
                              "written along the channels of [1,H,W,C] tensors only")
        ins = [self._in(op, k) for k in range(len(op.inputs))]
        self.operator("CONCATENATION", ins, self._out(op),
                      {"axis": 3, "fused_activation": _fused(op)})

    def _softmax(self, op: QOp) -> None:
        if len(op.output.shape) != 1:
            raise self.refuse(op, "is over a feature map; only a [1,D] SOFTMAX is written")
        self.operator("SOFTMAX", [self._in(op, flat_ok=True)], self._out(op),
                      {"beta": op.attrs["beta"]})
        if op.inputs[0] in self.order:
            self.order[op.name] = self.order[op.inputs[0]]

    def _lut(self, op: QOp) -> None:
        """A table is written as the TFLite activation it names, and only when it is that
        activation's TFLM table exactly (TFLM recomputes it from the scales)."""
        name = str(op.attrs.get("activation"))
        builtin = LUT_BUILTINS.get(name)
        if builtin is None:
            raise self.refuse(op, f"is a table of {name!r}, which has no TFLite builtin "
                              f"(written: {', '.join(LUT_OPS)})")
        x = self.graph.tensor(op.inputs[0])
        alpha = (op.attrs.get("params") or {}).get("alpha")
        table = activation_table(builtin, x, op.output, alpha)
        if not np.array_equal(table, op.arrays["table"]):
            raise self.refuse(op, f"holds a table that is not TFLM's {builtin} at these "
                              "scales")
        options = {"alpha": alpha} if builtin == "LEAKY_RELU" else {}
        self.operator(builtin, [self._in(op, flat_ok=True)], self._out(op), options)
        if op.inputs[0] in self.order:
            self.order[op.name] = self.order[op.inputs[0]]


# QGraph kind -> its lowering: every kind that exists in the tflite arithmetic has one
# (tests/test_op_registry.py checks it).
LOWERING: dict[str, Callable[[_Writer, QOp], None]] = {
    "conv2d": _Writer._conv2d, "linear": _Writer._linear, "flatten": _Writer._flatten,
    "maxpool2d": _Writer._maxpool2d, "avgpool2d": _Writer._avgpool2d, "add": _Writer._add,
    "sub": _Writer._sub, "mul": _Writer._mul, "concat": _Writer._concat,
    "softmax": _Writer._softmax, "lut": _Writer._lut, "mean": _Writer._mean,
    "pad": _Writer._pad_kind, "reshape": _Writer._reshape,
}


def tflite_bytes(graph: QGraph) -> bytes:
    """The `.tflite` of a tflite-arithmetic QGraph (deterministic bytes)."""
    return _Writer(graph).run()


def export_tflite(graph: QGraph, path: str | Path) -> Path:
    """Write `graph` as a `.tflite` at `path` atomically (nothing written on a refusal)."""
    data = tflite_bytes(graph)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


def export_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Export a run's QGraph to `out` (default: `<run>/model.int8.tflite`)."""
    from ..qgraph import load_run

    graph = load_run(run_dir)
    return export_tflite(graph, Path(run_dir) / TFLITE_FILE if out is None else out)
