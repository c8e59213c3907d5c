"""NumPy building blocks shared by the golden ops and the float executor."""

from __future__ import annotations

import numpy as np

from ..requant import ACC_LIMIT


def windows(x: np.ndarray, kernel: list[int], stride: list[int],
            dilation: list[int] | tuple[int, int] = (1, 1)) -> np.ndarray:
    """[N, C, H, W] -> [N, C, OH, OW, kh, kw] view of every pooling/conv window (taps
    `dilation` apart)."""
    dh, dw = dilation
    span = ((kernel[0] - 1) * dh + 1, (kernel[1] - 1) * dw + 1)
    v = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    return v[:, :, :: stride[0], :: stride[1], ::dh, ::dw]


def pad_hw(x: np.ndarray, padding: list[int], value: float = 0) -> np.ndarray:
    pt, pl, pb, pr = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def conv_sum(x: np.ndarray, weight: np.ndarray, attrs: dict) -> np.ndarray:
    """Σ x·w over each window (no bias), in x's dtype. x: [N,C,H,W] already centred and padded.

    float32 is exact for integer operands while every partial sum stays below 2^24;
    int64 operands sum exactly whatever the size (slower: no float BLAS).
    """
    groups = int(attrs.get("groups", 1))
    cout, cin_g, kh, kw = weight.shape
    out = []
    og = cout // groups
    for g in range(groups):
        xg = x[:, g * cin_g : (g + 1) * cin_g]
        win = windows(xg, [kh, kw], attrs.get("stride", [1, 1]),
                      attrs.get("dilation", [1, 1]))  # N,Cg,OH,OW,kh,kw
        n, _, oh, ow = win.shape[:4]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, cin_g * kh * kw)
        wg = weight[g * og : (g + 1) * og].reshape(og, -1).astype(x.dtype)
        out.append((cols @ wg.T).transpose(0, 3, 1, 2))
    return np.concatenate(out, axis=1) if groups > 1 else out[0]


def accumulator_dtype(bound: int) -> type:
    """float32 BLAS where the contract's bound proves it exact, else exact int64 sums."""
    return np.float32 if bound < ACC_LIMIT else np.int64
