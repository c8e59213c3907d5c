"""The golden model: a vectorized NumPy executor of a QGraph — the spec in code.

One small function per op kind, each following the integer contract of
ARCHITECTURE.md. Products of int8 values are summed in float32 BLAS: the
quantizer guarantees every partial sum stays below 2**24, so every such sum
is an exact integer whatever order the BLAS adds in.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from .qgraph import QGraph, QTensor
from .requant import requantize_float

BATCH = 500


def windows(x: np.ndarray, kernel: list[int], stride: list[int]) -> np.ndarray:
    """[N, C, H, W] -> [N, C, OH, OW, kh, kw] view of every pooling/conv window."""
    v = np.lib.stride_tricks.sliding_window_view(x, tuple(kernel), axis=(2, 3))
    return v[:, :, :: stride[0], :: stride[1]]


def pad_hw(x: np.ndarray, padding: list[int], value: float = 0) -> np.ndarray:
    pt, pl, pb, pr = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def conv_sum(x: np.ndarray, weight: np.ndarray, attrs: dict) -> np.ndarray:
    """Σ x·w over each window (no bias), in float32. x: [N,C,H,W] already centred and padded."""
    groups = int(attrs.get("groups", 1))
    cout, cin_g, kh, kw = weight.shape
    out = []
    og = cout // groups
    for g in range(groups):
        xg = x[:, g * cin_g : (g + 1) * cin_g]
        win = windows(xg, [kh, kw], attrs.get("stride", [1, 1]))  # N,Cg,OH,OW,kh,kw
        n, _, oh, ow = win.shape[:4]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, cin_g * kh * kw)
        wg = weight[g * og : (g + 1) * og].reshape(og, -1).astype(np.float32)
        out.append((cols @ wg.T).transpose(0, 3, 1, 2))
    return np.concatenate(out, axis=1) if groups > 1 else out[0]


# ---------------------------------------------------------------- int8 ops
def _requant(acc: np.ndarray, graph: QGraph, i: int, channel_axis: int) -> np.ndarray:
    mult = graph.multiplier(i)
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    return requantize_float(acc, mult.reshape(shape), graph.ops[i].output.zero_point)


def _conv2d(x: np.ndarray, graph: QGraph, i: int, xq: QTensor) -> np.ndarray:
    op = graph.ops[i]
    centred = pad_hw(x.astype(np.float32) - np.float32(xq.zero_point), op.attrs["padding"])
    acc = conv_sum(centred, op.arrays["weight"], op.attrs).astype(np.int64)
    acc += op.arrays["bias"].astype(np.int64)[None, :, None, None]
    return _requant(acc, graph, i, 1)


def _linear(x: np.ndarray, graph: QGraph, i: int, xq: QTensor) -> np.ndarray:
    op = graph.ops[i]
    centred = x.astype(np.float32) - np.float32(xq.zero_point)
    acc = (centred @ op.arrays["weight"].astype(np.float32).T).astype(np.int64)
    acc += op.arrays["bias"].astype(np.int64)[None, :]
    return _requant(acc, graph, i, 1)


def _maxpool2d(x: np.ndarray, graph: QGraph, i: int, xq: QTensor) -> np.ndarray:
    op = graph.ops[i]
    return windows(x, op.attrs["kernel"], op.attrs["stride"]).max(axis=(4, 5))


def _avgpool2d(x: np.ndarray, graph: QGraph, i: int, xq: QTensor) -> np.ndarray:
    op = graph.ops[i]
    centred = x.astype(np.int64) - xq.zero_point
    acc = windows(centred, op.attrs["kernel"], op.attrs["stride"]).sum(axis=(4, 5))
    return _requant(acc, graph, i, 1)


def _global_avgpool(x: np.ndarray, graph: QGraph, i: int, xq: QTensor) -> np.ndarray:
    acc = (x.astype(np.int64) - xq.zero_point).sum(axis=(2, 3), keepdims=True)
    return _requant(acc, graph, i, 1)


def _lut(x: np.ndarray, graph: QGraph, i: int, xq: QTensor) -> np.ndarray:
    return graph.ops[i].arrays["table"][x.astype(np.int16) + 128]


def _flatten(x: np.ndarray, graph: QGraph, i: int, xq: QTensor) -> np.ndarray:
    return x.reshape(x.shape[0], -1)


INT8_OPS: dict[str, Callable[[np.ndarray, QGraph, int, QTensor], np.ndarray]] = {
    "conv2d": _conv2d,
    "linear": _linear,
    "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d,
    "global_avgpool": _global_avgpool,
    "lut": _lut,
    "flatten": _flatten,
}


def pixels_to_int8(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels [N,28,28] or [N,1,28,28] -> int8 q = p - 128, shape [N,1,28,28]."""
    p = np.asarray(pixels)
    if p.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {p.dtype}")
    if p.ndim == 3:
        p = p[:, None]
    if p.shape[1:] != (1, 28, 28):
        raise ValueError(f"pixels must be [N,28,28] or [N,1,28,28], got {p.shape}")
    return (p.astype(np.int16) - 128).astype(np.int8)


def run_batched(x: np.ndarray, steps: list[Callable[[np.ndarray], np.ndarray]], trace: bool,
                empty: np.ndarray | None = None):
    """x through every step, BATCH images at a time so memory stays bounded.

    Returns the last step's output (`empty` when x has no images), and with trace also
    every step's output. Shared by the int8 golden model and the float executor.
    """
    outs: list[list[np.ndarray]] = [[] for _ in steps]
    logits = []
    for start in range(0, len(x), BATCH):
        h = x[start : start + BATCH]
        for i, step in enumerate(steps):
            h = step(h)
            if trace:
                outs[i].append(h)
        logits.append(h)
    result = empty if not logits and empty is not None else np.concatenate(logits)
    if trace:
        return result, [np.concatenate(o) for o in outs]
    return result


def run_int8(graph: QGraph, pixels: np.ndarray, trace: bool = False):
    """int8 logits [N, classes] for uint8 pixels; with trace, also every op's output."""
    steps = [partial(INT8_OPS[op.kind], graph=graph, i=i, xq=graph.input_of(i))
             for i, op in enumerate(graph.ops)]
    return run_batched(pixels_to_int8(pixels), steps, trace,
                       np.zeros((0, graph.output.size), np.int8))


def predict(logits: np.ndarray) -> np.ndarray:
    """Class per row; ties go to the lowest index (np.argmax keeps the first maximum)."""
    return np.argmax(logits, axis=1)


def dequantize(q: np.ndarray, t: QTensor) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(t.zero_point)) * np.float32(t.scale)
