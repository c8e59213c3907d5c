"""The golden model: a vectorized NumPy executor of a QGraph — the spec in code.

Each op kind's semantics live in its registry entry (`mnist_edge.ops`), written from
the integer contract of ARCHITECTURE.md; this module walks the graph, keeps every
tensor its readers need, and batches images so memory stays bounded.
Products of int8 values are summed in float32 BLAS only where the op's worst-case
accumulator stays below 2**24 (then every partial sum is an exact integer whatever
order the BLAS adds in); larger ones are summed exactly in int64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from .ops import REGISTRY
from .ops.numeric import conv_sum, pad_hw, windows
from .qgraph import INPUT_NAME, QGraph, QTensor

BATCH = 500

__all__ = ["conv_sum", "pad_hw", "windows", "run_int8", "run_batched", "predict",
           "dequantize", "pixels_to_int8", "run_op"]


def run_op(graph: QGraph, index: int, xs: list[np.ndarray],
           constants: list[dict] | None = None) -> np.ndarray:
    """Op `index` of `graph` on its batched int8 inputs, by its registry entry, in the
    graph's arithmetic (`constants`: every op's `graph.prepare`, when already derived)."""
    op = graph.ops[index]
    spec = REGISTRY[op.kind]
    if graph.arithmetic == "tflite":
        c = constants[index] if constants is not None else graph.prepare(index)
        return spec.tflite.golden(op, xs, graph.inputs_of(index), c)
    return spec.golden(op, xs, graph.inputs_of(index))


def pixels_to_int8(pixels: np.ndarray) -> np.ndarray:
    """uint8 bytes [N, ...] -> int8 q = p - 128 (the uint8 input encoding), same shape."""
    p = np.asarray(pixels)
    if p.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {p.dtype}")
    return (p.astype(np.int16) - 128).astype(np.int8)


def run_batched(x: np.ndarray, ops: Sequence, apply: Callable[[int, list[np.ndarray]],
                np.ndarray], trace: bool, empty: np.ndarray | None = None):
    """x through a graph of ops (each with `.name` and `.inputs`), BATCH images at a time.

    `apply(i, inputs)` computes op i from the tensors it names. Returns the last op's
    output (`empty` when x has no images), and with trace also every op's output. Shared
    by the int8 golden model and the float executor.
    """
    def one_batch(h: np.ndarray) -> list[np.ndarray]:
        tensors = {INPUT_NAME: h}
        for i, op in enumerate(ops):
            tensors[op.name] = apply(i, [tensors[n] for n in op.inputs])
        return [tensors[op.name] for op in ops]

    per_op: list[list[np.ndarray]] = []
    for start in range(0, len(x), BATCH):
        outs = one_batch(x[start : start + BATCH])
        per_op.append(outs if trace else outs[-1:])
    if not per_op:
        return (empty, []) if trace else empty
    result = np.concatenate([outs[-1] for outs in per_op])
    if trace:
        return result, [np.concatenate(col) for col in zip(*per_op, strict=True)]
    return result


def run_int8(graph: QGraph, inputs: np.ndarray, trace: bool = False):
    """int8 outputs [N, size] for a batch in the graph's input encoding (uint8 pixels for
    image models); with trace, also every op's output."""
    graph.link_chain_inputs()
    constants = ([graph.prepare(i) for i in range(len(graph.ops))]
                 if graph.arithmetic == "tflite" else None)
    return run_batched(graph.input_to_int8(inputs), graph.ops,
                       partial(run_op, graph, constants=constants), trace,
                       np.zeros((0, graph.output.size), np.int8))


def predict(logits: np.ndarray) -> np.ndarray:
    """Class per row; ties go to the lowest index (np.argmax keeps the first maximum)."""
    return np.argmax(logits, axis=1)


def dequantize(q: np.ndarray, t: QTensor) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(t.zero_point)) * np.float32(t.scale)
