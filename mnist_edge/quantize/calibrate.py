"""Activation ranges from the float graph on training images."""

from __future__ import annotations

import numpy as np

from ..errors import MnistEdgeError
from ..fgraph import INPUT, FloatGraph, float_input, run_float

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


def calibrate(graph: FloatGraph, inputs: np.ndarray, method: str) -> dict[str, tuple[float, float]]:
    """One range per op output, by op name. The logits use min/max: clipping them makes ties.

    `inputs` are raw data (uint8 pixels, float features; see `fgraph.float_input`). A
    feature input gets its own range under the name "input": its int8 quantization is
    calibrated like any tensor (pixels need none: q = p - 128 is exact).
    The input of a saturating activation is clamped where the activation is flat, but only
    when nothing else reads that tensor (a residual branch needs its full range).
    """
    if len(inputs) == 0:
        raise MnistEdgeError("calibration needs at least one input")
    x = float_input(graph, inputs)
    _, outs = run_float(graph, x, trace=True)
    ranges = {op.name: tensor_range(o, method) for op, o in zip(graph.ops, outs, strict=True)}
    if graph.input_kind == "features":
        ranges[INPUT] = tensor_range(x, method)
    ranges[graph.ops[-1].name] = tensor_range(outs[-1], "minmax")
    readers: dict[str, int] = {}
    for op in graph.ops:
        for name in op.inputs:
            readers[name] = readers.get(name, 0) + 1
    for op in graph.ops:
        source = op.inputs[0]
        if op.kind in SATURATION and source in ranges and readers[source] == 1:
            ranges[source] = _clamp(ranges[source], *SATURATION[op.kind])
    return ranges


def _clamp(r: tuple[float, float], lo: float | None, hi: float | None) -> tuple[float, float]:
    return (max(r[0], lo) if lo is not None else r[0], min(r[1], hi) if hi is not None else r[1])
