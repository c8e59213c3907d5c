"""Format-neutral layout passes shared by the importers (ONNX/Keras, TFLite).

The QGraph keeps every feature map CxHxW and flattens it in C order. A model written in
NHWC (Keras, TFLite) flattens in H,W,C order before its dense layer, so that layer's
input columns are permuted once at import, here, for every format.
"""

from __future__ import annotations

import numpy as np


def flatten_order(shape: tuple[int, ...], perm: tuple[int, ...]) -> np.ndarray:
    """For a tensor held as `shape` (the IR's order) and flattened by its model in the axis
    order `perm` (indices into `shape`): entry j is the IR flat index of the model's j-th
    flat element. HWC flattening of a CxHxW tensor is perm (1, 2, 0)."""
    size = int(np.prod(shape))
    return np.arange(size).reshape(shape).transpose(perm).reshape(-1)


def is_identity(order: np.ndarray | None) -> bool:
    return order is None or bool(np.array_equal(order, np.arange(order.size)))


def permute_columns(weight: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """A dense weight [out, in] whose column j reads the model's flat element j, as the
    weight over the IR's flat order (column order[j] of the result is column j here)."""
    if is_identity(order):
        return weight
    out = np.empty_like(weight)
    out[:, order] = weight
    return out
