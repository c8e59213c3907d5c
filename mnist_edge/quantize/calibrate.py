"""Activation ranges from the float graph on training images."""

from __future__ import annotations

import numpy as np

from ..errors import MnistEdgeError
from ..fgraph import FloatGraph, run_float

METHODS = ("minmax", "percentile")
PERCENTILE = 99.99  # of |values| on each side; clips rare outliers that would waste range


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
    return ranges
