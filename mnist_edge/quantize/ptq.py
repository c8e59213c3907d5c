"""Post-training quantization: folded float graph + ranges -> QGraph."""

from __future__ import annotations

import numpy as np

from ..errors import MnistEdgeError
from ..fgraph import ACTIVATIONS, FloatGraph, FOp, activation_fn
from ..qgraph import (
    INPUT_SCALE,
    INPUT_ZERO_POINT,
    QGraph,
    QOp,
    QTensor,
    expected_output_shape,
    max_abs_accumulator,
)
from ..requant import ACC_LIMIT

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


def build_lut(fn_name: str, x: QTensor, y_scale: float, y_zp: int) -> np.ndarray:
    """LUT[i] = sat8(rne(f(s_x * (i - 128 - z_x)) / s_y) + z_y), in float64."""
    q_in = np.arange(256, dtype=np.float64) - 128
    real = activation_fn(fn_name)(x.scale * (q_in - x.zero_point))
    return np.clip(np.rint(real / y_scale) + y_zp, -128, 127).astype(np.int8)


def _linear_like(op: FOp, x: QTensor, out: tuple[float, int], act: str | None) -> QOp:
    attrs = dict(op.attrs)
    if act:
        attrs["activation"] = act
    w_q, w_scale = quantize_weights(op.arrays["weight"])
    qop = QOp(op.name, op.kind, QTensor((), *out), attrs, {})
    for _ in range(8):
        qop.arrays = {"weight": w_q, "bias": quantize_bias(op.arrays["bias"], x.scale, w_scale),
                      "w_scale": w_scale}
        over = _accumulator_excess(qop, x)
        if not np.any(over > 1):
            break
        # Accumulator-aware step: coarsen only the channels whose worst case would reach
        # 2^24, just enough to fit; every other channel keeps its full resolution.
        w_scale = (w_scale * np.maximum(over * 1.001, 1.0)).astype(np.float32)
        shape = (-1,) + (1,) * (w_q.ndim - 1)
        w_q = np.clip(np.rint(op.arrays["weight"] / w_scale.astype(np.float64).reshape(shape)),
                      -127, 127).astype(np.int8)
    return qop


def _accumulator_excess(op: QOp, x: QTensor) -> np.ndarray:
    """Per channel: worst-case |acc| over the limit (values > 1 do not fit below 2^24)."""
    limit = ACC_LIMIT - 1
    return np.array([max_abs_accumulator(_channel(op, c), x) / limit
                     for c in range(op.arrays["weight"].shape[0])])


def _channel(op: QOp, c: int) -> QOp:
    return QOp(op.name, op.kind, op.output, op.attrs,
               {k: v[c : c + 1] for k, v in op.arrays.items()})


def quantize_graph(graph: FloatGraph, ranges: list[tuple[float, float]]) -> QGraph:
    """Map float ops to QGraph ops: ReLU fuses into the range, other activations become LUTs."""
    x = QTensor((1, 28, 28), INPUT_SCALE, INPUT_ZERO_POINT)
    ops: list[QOp] = []
    i = 0
    while i < len(graph.ops):
        op = graph.ops[i]
        nxt = graph.ops[i + 1] if i + 1 < len(graph.ops) else None
        if op.kind in ("conv2d", "linear"):
            fuse_relu = nxt is not None and nxt.kind == "relu"
            j = i + 1 if fuse_relu else i
            qop = _linear_like(op, x, qparams(*ranges[j]), "relu" if fuse_relu else None)
            i = j + 1
        elif op.kind in ACTIVATIONS:
            y_scale, y_zp = qparams(*ranges[i])
            table = build_lut(op.kind, x, y_scale, y_zp)
            qop = QOp(op.name, "lut", QTensor((), y_scale, y_zp), {"activation": op.kind},
                      {"table": table})
            i += 1
        elif op.kind in ("maxpool2d", "flatten"):
            qop = QOp(op.name, op.kind, QTensor((), x.scale, x.zero_point), dict(op.attrs))
            i += 1
        elif op.kind in ("avgpool2d", "global_avgpool"):
            qop = QOp(op.name, op.kind, QTensor((), *qparams(*ranges[i])), dict(op.attrs))
            i += 1
        else:
            raise MnistEdgeError(f"op {op.name}: {op.kind} cannot be quantized")
        qop.output.shape = expected_output_shape(qop, x)
        ops.append(qop)
        x = qop.output
    qgraph = QGraph(graph.name, QTensor((1, 28, 28), INPUT_SCALE, INPUT_ZERO_POINT), ops)
    qgraph.validate()
    return qgraph
