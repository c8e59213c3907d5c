"""Activation ranges from the float graph on training images."""

from __future__ import annotations

import numpy as np

from ..errors import MnistEdgeError
from ..fgraph import FloatGraph, run_float

METHODS = ("minmax", "percentile")
PERCENTILE = 99.99  # of |values| on each side; clips rare outliers that would waste range
# Where each saturating activation is flat to well under one output LSB: a wider input range
# only wastes int8 steps on values the lookup table maps to the same output.
SATURATION = {"selu": (-6.0, None), "gelu": (-5.0, None), "tanh": (-4.0, 4.0),
              "sigmoid": (-8.0, 8.0)}


def tensor_range(values: np.ndarray, method: str) -> tuple[float, float]:
    """[lo, hi] always containing 0, so that real 0 (padding, ReLU) is exactly representable."""
    v = values.reshape(-1)
    if method == "minmax":
        lo, hi = float(v.min()), float(v.max())
    elif method == "percentile":
        lo, hi = (float(p) for p in np.percentile(v, [100 - PERCENTILE, PERCENTILE]))
    else:
        raise MnistEdgeError(f"unknown calibration {method!r}; choose from: {', '.join(METHODS)}")
    return min(lo, 0.0), max(hi, 0.0)


def calibrate(graph: FloatGraph, images: np.ndarray, method: str) -> list[tuple[float, float]]:
    """One range per op output. The logits always use min/max: clipping them would create ties."""
    if len(images) == 0:
        raise MnistEdgeError("calibration needs at least one image")
    x = images.astype(np.float32)[:, None] / np.float32(255.0)
    _, outs = run_float(graph, x, trace=True)
    ranges = [tensor_range(o, method) for o in outs[:-1]]
    ranges.append(tensor_range(outs[-1], "minmax"))
    for i in range(1, len(ranges)):
        if graph.ops[i].kind in SATURATION:
            ranges[i - 1] = _clamp(ranges[i - 1], *SATURATION[graph.ops[i].kind])
    return ranges


def _clamp(r: tuple[float, float], lo: float | None, hi: float | None) -> tuple[float, float]:
    return (max(r[0], lo) if lo is not None else r[0], min(r[1], hi) if hi is not None else r[1])
