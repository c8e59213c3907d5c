"""Seeded random and structured int8 inputs for models that come without data.

An imported `.tflite` (MLPerf Tiny, a user's file) has no data set here, yet every backend
must still be compared with TFLite Micro on it. Structured inputs reach the corners that
random ones miss: saturated rows (all -128, all 127), ramps (every value once), and
checkerboards (the largest neighbour differences, which stress padding and pools).
"""

from __future__ import annotations

import numpy as np

STRUCTURED = ("all_min", "all_max", "zero_point", "ramp", "ramp_down", "checker",
              "checker_inv", "stripes")


def structured(shape: tuple[int, ...], kind: str, zero_point: int = 0) -> np.ndarray:
    """One input of `shape` (without the batch axis) of a named pattern."""
    size = int(np.prod(shape))
    flat = np.arange(size)
    if kind == "all_min":
        v = np.full(size, -128)
    elif kind == "all_max":
        v = np.full(size, 127)
    elif kind == "zero_point":
        v = np.full(size, zero_point)
    elif kind in ("ramp", "ramp_down"):
        v = (flat % 256) - 128
        v = v if kind == "ramp" else -1 - v
    elif kind in ("checker", "checker_inv"):
        idx = np.indices(shape).sum(axis=0).ravel() if len(shape) else flat
        on = (idx % 2 == 0) if kind == "checker" else (idx % 2 == 1)
        v = np.where(on, 127, -128)
    elif kind == "stripes":
        v = np.where((flat // max(shape[-1] if shape else 1, 1)) % 2 == 0, 127, -128)
    else:
        raise ValueError(f"unknown structured input {kind!r} (known: {', '.join(STRUCTURED)})")
    return np.clip(v, -128, 127).astype(np.int8).reshape(shape)


def probe_inputs(shape: tuple[int, ...], n: int, seed: int = 0, zero_point: int = 0
                 ) -> np.ndarray:
    """`n` inputs [n, *shape]: the structured patterns first, then seeded random ones,
    alternating uniform int8 and values near the zero point (real values near 0)."""
    out = [structured(shape, k, zero_point) for k in STRUCTURED[:n]]
    rng = np.random.default_rng(seed)
    for i in range(n - len(out)):
        if i % 2 == 0:
            out.append(rng.integers(-128, 128, size=shape))
        else:
            out.append(np.clip(np.rint(rng.normal(zero_point, 24, size=shape)), -128, 127))
    return np.array(out, dtype=np.int8).reshape(n, *shape)


def parse_inputs_spec(spec: str) -> tuple[str, int]:
    """`--inputs mnist` or `--inputs random:N` -> (kind, N); N is 0 for mnist."""
    from .errors import MnistEdgeError

    if spec == "mnist":
        return "mnist", 0
    kind, _, count = spec.partition(":")
    if kind == "random" and count.isdigit() and int(count) > 0:
        return "random", int(count)
    raise MnistEdgeError(f"--inputs {spec!r}: use mnist (the test images) or random:N (N "
                         "seeded random and structured inputs)")


def probe_batch(graph, n: int, seed: int = 0) -> np.ndarray:
    """`probe_inputs` for a QGraph's input, in the graph's input encoding."""
    q = probe_inputs(tuple(graph.input.shape), n, seed, graph.input.zero_point)
    if graph.input_encoding == "uint8":
        return (q.astype(np.int16) + 128).astype(np.uint8)
    return q
