"""Post-training quantization: folded float graph + ranges -> QGraph, in either arithmetic.

One walk serves both contracts. The `tflite` arithmetic is quantized the way TFLite's
converter does it (int8 asymmetric activations, symmetric per-channel int8 weights for
convolutions and, here, fully connected layers too, int32 bias at s_x * s_w[c] with zero
point 0, a fused ReLU as the output range) and differs only where TFLM's kernels constrain
the scales: LOGISTIC / TANH outputs at 1/256, -128 and 1/128, 0; pools and concatenation
keep their input's quantization; activations are TFLM's own tables; a global average pool
is an AVERAGE_POOL_2D over the whole map.
"""

from __future__ import annotations

import numpy as np

from ..errors import MnistEdgeError
from ..fgraph import ACTIVATIONS, INPUT, FloatGraph, FOp, activation_fn, norm_arrays
from ..importers.tflite_qgraph import activation_table
from ..qgraph import (
    ARITHMETICS,
    DEFAULT_ARITHMETIC,
    INPUT_SCALE,
    INPUT_ZERO_POINT,
    QGraph,
    QOp,
    QTensor,
    expected_output_shape,
)

INT32_MAX = 2**31 - 1


def qparams(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) covering [lo, hi] (lo <= 0 <= hi)."""
    span = hi - lo
    if not np.isfinite(span):
        raise MnistEdgeError(f"activation range [{lo}, {hi}] is not finite (NaN weights?)")
    span = max(span, 1e-6)  # a dead tensor still gets a valid scale
    scale = float(np.float32(span / 255.0))
    zp = int(np.clip(np.rint(-128 - lo / scale), -128, 127))
    return scale, zp


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 in -127..127; returns (q, float32 scales)."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    peak = np.abs(flat).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = np.clip(np.rint(w / scale.astype(np.float64).reshape(shape)), -127, 127)
    return q.astype(np.int8), scale


def quantize_bias(b: np.ndarray, x_scale: float, w_scale: np.ndarray) -> np.ndarray:
    q = np.rint(b.astype(np.float64) / (np.float64(x_scale) * w_scale.astype(np.float64)))
    if np.any(np.abs(q) > INT32_MAX):
        raise MnistEdgeError("a bias does not fit int32 at scale x_scale * w_scale")
    return q.astype(np.int32)


def lut_table(fn, x: QTensor, y_scale: float, y_zp: int) -> np.ndarray:
    """LUT[i] = sat8(rne(f(s_x * (i - 128 - z_x)) / s_y) + z_y), in float64."""
    q_in = np.arange(256, dtype=np.float64) - 128
    real = fn(x.scale * (q_in - x.zero_point))
    return np.clip(np.rint(real / y_scale) + y_zp, -128, 127).astype(np.int8)


def build_lut(fn_name: str, x: QTensor, y_scale: float, y_zp: int,
              attrs: dict | None = None) -> np.ndarray:
    return lut_table(activation_fn(fn_name, attrs or None), x, y_scale, y_zp)


def input_norm_op(mean: float, std: float, shape: tuple[int, ...]) -> QOp:
    """Raw pixels -> the normalized int8 domain as a table: exact, and its zero point is real 0.

    The input q = p - 128 has scale 1/255 and zero point -128, so lut_table's f sees p/255.
    """
    lo, hi = (0.0 - mean) / std, (1.0 - mean) / std
    y_scale, y_zp = qparams(min(lo, hi, 0.0), max(lo, hi, 0.0))
    x = QTensor(shape, INPUT_SCALE, INPUT_ZERO_POINT)
    table = lut_table(lambda v: (np.rint(v * 255.0) / 255.0 - mean) / std, x, y_scale, y_zp)
    return QOp("input_norm", "lut", QTensor(shape, y_scale, y_zp),
               {"activation": "normalize", "params": {"mean": mean, "std": std}},
               {"table": table})


def channel_norm_op(graph: FloatGraph, x: QTensor) -> QOp:
    """Per-channel (p/255 - mean[c]) / std[c] as a depthwise 1x1 conv on the pixels.

    One table cannot hold a different function per channel; a depthwise 1x1 conv computes
    exactly this affine map in float terms (weight 1/std[c], bias -mean[c]/std[c], input
    real p/255) and quantizes like every conv. Its output range is known without data.
    """
    mean, std = (np.broadcast_to(a.reshape(-1), (graph.input_shape[0],))
                 for a in norm_arrays(graph))
    ends = np.stack([(0.0 - mean) / std, (1.0 - mean) / std])
    conv = FOp("input_norm", "conv2d",
               {"kernel": [1, 1], "stride": [1, 1], "padding": [0, 0, 0, 0],
                "groups": int(graph.input_shape[0])},
               {"weight": (1.0 / std).reshape(-1, 1, 1, 1), "bias": -mean / std})
    qop = _linear_like(conv, x, qparams(min(float(ends.min()), 0.0),
                                        max(float(ends.max()), 0.0)), None)
    qop.output.shape = tuple(graph.input_shape)
    return qop


def graph_input(graph: FloatGraph, ranges: dict[str, tuple[float, float]]
                ) -> tuple[QTensor, str]:
    """The QGraph input and its encoding. Pixels: uint8 bytes, q = p - 128 at scale 1/255
    (exact, and zero padding stays real 0). Features: int8 at the calibrated scale."""
    shape = tuple(graph.input_shape)
    if graph.input_kind == "pixels":
        return QTensor(shape, INPUT_SCALE, INPUT_ZERO_POINT), "uint8"
    if INPUT not in ranges:
        raise MnistEdgeError(f"float graph {graph.name}: a feature input needs a calibrated "
                             "range (calibrate() gives it)")
    return QTensor(shape, *qparams(*ranges[INPUT])), "int8"


def _linear_like(op: FOp, x: QTensor, out: tuple[float, int], act: str | None) -> QOp:
    """Per-channel symmetric weights at full resolution, whatever the accumulator bound.

    Accumulators beyond 2^24 are legal (golden sums them exactly in integers, every
    backend converts them to float32 as onnxruntime does), so no channel is coarsened
    to fit: coarsening only ever lost resolution. `analyze` reports each layer's bound.
    """
    attrs = dict(op.attrs)
    if act:
        attrs["activation"] = act
    w_q, w_scale = quantize_weights(op.arrays["weight"])
    return QOp(op.name, op.kind, QTensor((), *out), attrs,
               {"weight": w_q, "bias": quantize_bias(op.arrays["bias"], x.scale, w_scale),
                "w_scale": w_scale})


REQUANTIZING = ("conv2d", "linear", "add")  # ops whose output range can absorb a ReLU
# float activation -> (TFLite builtin, the output quantization TFLM requires or None)
TFLITE_ACTIVATIONS: dict[str, tuple[str, tuple[float, int] | None]] = {
    "relu": ("RELU", None), "leaky_relu": ("LEAKY_RELU", None),
    "sigmoid": ("LOGISTIC", (1.0 / 256, -128)), "tanh": ("TANH", (1.0 / 128, 0)),
}


def _tflite_lut(op: FOp, x: QTensor, ranges: dict[str, tuple[float, float]]) -> QOp:
    """An activation as TFLM computes it: its int8 kernel's table, at the output
    quantization TFLM's Prepare requires (LOGISTIC, TANH) or the calibrated one."""
    if op.kind not in TFLITE_ACTIVATIONS:
        raise MnistEdgeError(f"op {op.name}: {op.kind} has no TFLite builtin, so it has no "
                             "tflite arithmetic (quantize with --arithmetic onnx; tflite "
                             f"takes {', '.join(sorted(TFLITE_ACTIVATIONS))})")
    builtin, fixed = TFLITE_ACTIVATIONS[op.kind]
    out = QTensor((), *(fixed or qparams(*ranges[op.name])))
    alpha = None
    attrs: dict = {"activation": builtin.lower()}
    if builtin == "LEAKY_RELU":
        alpha = float(np.float32(op.attrs.get("alpha", 0.01)))
        attrs["params"] = {"alpha": alpha}
    return QOp(op.name, "lut", out, attrs, {"table": activation_table(builtin, x, out, alpha)})


def _shared_concat_ranges(graph: FloatGraph, ranges: dict[str, tuple[float, float]]
                          ) -> dict[str, tuple[float, float]]:
    """TFLite's CONCATENATION copies bytes: its inputs take the output's range (the union),
    as TFLite's converter makes them."""
    ranges = dict(ranges)
    for op in graph.ops:
        if op.kind == "concat":
            names = [*op.inputs, op.name]
            lo = min(ranges[n][0] for n in names if n in ranges)
            hi = max(ranges[n][1] for n in names if n in ranges)
            for n in names:
                ranges[n] = (lo, hi)
    return ranges


def quantize_graph(graph: FloatGraph, ranges: dict[str, tuple[float, float]],
                   arithmetic: str = DEFAULT_ARITHMETIC) -> QGraph:
    """Map float ops to QGraph ops: a ReLU whose producer requantizes (and feeds nothing
    else) fuses into that producer's output range; other activations become LUTs. The
    `tflite` arithmetic differs only where TFLM constrains scales (see the module doc)."""
    if arithmetic not in ARITHMETICS:
        raise MnistEdgeError(f"--arithmetic {arithmetic!r}: choose from "
                             f"{', '.join(ARITHMETICS)}")
    tflite = arithmetic == "tflite"
    if tflite:
        if graph.input_norm and not graph.per_channel_norm:
            raise MnistEdgeError(f"float graph {graph.name}: the input normalization table "
                                 "has no TFLite builtin, so it has no tflite arithmetic")
        ranges = _shared_concat_ranges(graph, ranges)
    readers: dict[str, list[FOp]] = {}
    for op in graph.ops:
        for name in op.inputs:
            readers.setdefault(name, []).append(op)
    ops: list[QOp] = []
    graph_in, encoding = graph_input(graph, ranges)
    tensor: dict[str, QTensor] = {INPUT: graph_in}
    alias: dict[str, str] = {}  # float tensor -> the QGraph tensor holding it
    if graph.input_norm:
        if graph.per_channel_norm:
            ops.append(channel_norm_op(graph, graph_in))
            ops[-1].inputs = [INPUT]
        else:
            ops.append(input_norm_op(*graph.input_norm, graph_in.shape))  # type: ignore[misc]
        tensor["input_norm"] = ops[-1].output
        alias[INPUT] = "input_norm"
    fused: set[str] = set()
    for op in graph.ops:
        if op.name in fused:
            continue
        inputs = [alias.get(n, n) for n in op.inputs]
        ins = [tensor[n] for n in inputs]
        x = ins[0]
        nxt = readers.get(op.name, [])
        fuse_relu = (op.kind in REQUANTIZING and len(nxt) == 1 and nxt[0].kind == "relu")
        out_name = nxt[0].name if fuse_relu else op.name
        if op.kind in ("conv2d", "linear"):
            act = "relu" if fuse_relu else None
            qop = _linear_like(op, x, qparams(*ranges[out_name]), act)
        elif op.kind == "add":
            attrs = {"activation": "relu"} if fuse_relu else {}
            qop = QOp(op.name, "add", QTensor((), *qparams(*ranges[out_name])), attrs)
        elif op.kind == "concat":
            qop = QOp(op.name, "concat", QTensor((), *qparams(*ranges[op.name])))
        elif op.kind in ACTIVATIONS and tflite:
            qop = _tflite_lut(op, x, ranges)
        elif op.kind in ACTIVATIONS:
            y_scale, y_zp = qparams(*ranges[op.name])
            attrs = {"activation": op.kind, **({"params": dict(op.attrs)} if op.attrs else {})}
            qop = QOp(op.name, "lut", QTensor((), y_scale, y_zp), attrs,
                      {"table": build_lut(op.kind, x, y_scale, y_zp, op.attrs)})
        elif op.kind in ("maxpool2d", "flatten"):
            qop = QOp(op.name, op.kind, QTensor((), x.scale, x.zero_point), dict(op.attrs))
        elif op.kind in ("avgpool2d", "global_avgpool") and tflite:
            attrs = dict(op.attrs)
            if op.kind == "global_avgpool":  # AVERAGE_POOL_2D over the whole map
                attrs = {"kernel": list(x.shape[1:]), "stride": list(x.shape[1:]), **attrs}
            qop = QOp(op.name, "avgpool2d", QTensor((), x.scale, x.zero_point), attrs)
        elif op.kind in ("avgpool2d", "global_avgpool"):
            qop = QOp(op.name, op.kind, QTensor((), *qparams(*ranges[op.name])), dict(op.attrs))
        else:
            raise MnistEdgeError(f"op {op.name}: {op.kind} cannot be quantized")
        qop.inputs = inputs
        qop.output.shape = expected_output_shape(qop, ins)
        ops.append(qop)
        tensor[qop.name] = qop.output
        if fuse_relu:
            fused.add(out_name)
            alias[out_name] = qop.name
    qgraph = QGraph(graph.name, graph_in, ops, input_encoding=encoding, arithmetic=arithmetic)
    qgraph.validate()
    return qgraph
