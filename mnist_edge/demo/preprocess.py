"""MNIST-style preprocessing of a drawing: strokes -> ink bitmap -> 28x28 uint8 pixels.

MNIST's digits were size-normalized to fit a 20x20 box (keeping the aspect ratio,
anti-aliased to grey levels) and then centred in 28x28 by their centre of mass.
A drawing that is not treated the same way is read far worse by a model trained on
MNIST, so this is the part of the demo that matters.

Every step is defined on integers so that `templates/web/mnist_edge.js` computes
the same bytes (JavaScript numbers are float64, exact for integers below 2**53; every
intermediate here stays far below that for the size limits in MAX_SIDE):

1. rasterize: each stroke is a polyline at integer canvas coordinates, drawn as
   capsules of radius `brush_radius(w, h)`: pixel (x, y) is ink (255) when its squared
   distance to a segment is <= r^2 (tested exactly with integer cross products);
2. crop to the bounding box of the pixels with ink > 0;
3. area-average the box to `oh x ow`, the longer side 20: output row i covers source
   rows [i*h/oh, (i+1)*h/oh), so in units of 1/oh every overlap is an integer and each
   output pixel is an integer sum divided by h*w, rounded half up;
4. paste into 28x28 with the centre of mass (pixel centres at i + 1/2) on (14, 14),
   rounded half up, clamped so that no ink falls off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MnistEdgeError

BOX = 20          # the longer side of the digit, as in MNIST
SIZE = 28         # the model's input
MAX_SIDE = 4096   # canvases or uploads larger than this are refused
CANVAS = 280      # the demo's drawing canvas (10x MNIST)

Stroke = Sequence[Sequence[int]]


def brush_radius(width: int, height: int) -> int:
    """Brush radius in canvas pixels: 1/24 of the shorter side (11 px on 280x280).

    A digit drawn across most of the canvas then has strokes ~2.3 px wide once its
    box is scaled to 20 px, like MNIST's pen.
    """
    return max(1, min(width, height) // 24)


def _check_size(width: int, height: int) -> None:
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise MnistEdgeError(f"canvas {width}x{height} is outside 1..{MAX_SIDE} pixels a side")


def rasterize(strokes: Sequence[Stroke], width: int = CANVAS, height: int = CANVAS,
              radius: int | None = None) -> np.ndarray:
    """Ink bitmap uint8 [height, width] (255 = ink) of polylines at integer coordinates."""
    _check_size(width, height)
    r = brush_radius(width, height) if radius is None else int(radius)
    ink = np.zeros((height, width), dtype=np.uint8)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.int64)
    for stroke in strokes:
        pts = [(int(p[0]), int(p[1])) for p in stroke]
        if not pts:
            continue
        segments = list(zip(pts[:-1], pts[1:], strict=True)) or [(pts[0], pts[0])]
        for (x0, y0), (x1, y1) in segments:
            _capsule(ink, xs, ys, x0, y0, x1, y1, r)
    return ink


def _capsule(ink: np.ndarray, xs: np.ndarray, ys: np.ndarray, x0: int, y0: int, x1: int,
             y1: int, r: int) -> None:
    """Set to 255 every pixel within distance r of segment (x0,y0)-(x1,y1), exactly."""
    h, w = ink.shape
    bx0, bx1 = max(0, min(x0, x1) - r), min(w - 1, max(x0, x1) + r)
    by0, by1 = max(0, min(y0, y1) - r), min(h - 1, max(y0, y1) + r)
    if bx0 > bx1 or by0 > by1:
        return
    px, py = xs[by0:by1 + 1, bx0:bx1 + 1], ys[by0:by1 + 1, bx0:bx1 + 1]
    dx, dy = x1 - x0, y1 - y0
    len2 = dx * dx + dy * dy
    ax, ay = px - x0, py - y0
    d0 = ax * ax + ay * ay
    if len2 == 0:
        inside = d0 <= r * r
    else:
        t = ax * dx + ay * dy
        bx, by = px - x1, py - y1
        d1 = bx * bx + by * by
        cross = dx * ay - dy * ax
        inside = np.where(t <= 0, d0 <= r * r,
                          np.where(t >= len2, d1 <= r * r, cross * cross <= r * r * len2))
    ink[by0:by1 + 1, bx0:bx1 + 1][inside] = 255


def _div_round(num: np.ndarray | int, den: int):
    """num / den rounded half up, for integers (floor division, also for negatives)."""
    return (2 * num + den) // (2 * den)


def _weights(n_src: int, n_out: int) -> np.ndarray:
    """[n_out, n_src] integer overlaps of output cell i with source pixel k (units 1/n_out)."""
    i = np.arange(n_out, dtype=np.int64)[:, None]
    k = np.arange(n_src, dtype=np.int64)[None, :]
    lo = np.maximum(i * n_src, k * n_out)
    hi = np.minimum((i + 1) * n_src, (k + 1) * n_out)
    return np.maximum(hi - lo, 0)


def box_size(h: int, w: int) -> tuple[int, int]:
    """(oh, ow): the longer side BOX, the other scaled and rounded half up (at least 1)."""
    if h >= w:
        return BOX, max(1, int(_div_round(w * BOX, h)))
    return max(1, int(_div_round(h * BOX, w))), BOX


def preprocess(ink: np.ndarray) -> np.ndarray:
    """uint8 ink bitmap [H, W] (0 = background) -> uint8 [28, 28], MNIST-style.

    Raises MnistEdgeError on an empty drawing.
    """
    ink = np.asarray(ink)
    if ink.ndim != 2 or ink.dtype != np.uint8:
        raise MnistEdgeError(f"ink bitmap must be uint8 [H, W], got {ink.dtype} {ink.shape}")
    _check_size(ink.shape[1], ink.shape[0])
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        raise MnistEdgeError("the drawing is empty: draw a digit first")
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.int64)
    h, w = crop.shape
    oh, ow = box_size(h, w)
    sums = _weights(h, oh) @ crop @ _weights(w, ow).T      # integers, <= h*w*255
    box = _div_round(sums, h * w)                           # 0..255
    total = int(box.sum())
    out = np.zeros((SIZE, SIZE), dtype=np.uint8)
    if total == 0:   # ink too faint to survive averaging: centre the box geometrically
        top, left = (SIZE - oh) // 2, (SIZE - ow) // 2
    else:
        # Σ (2i+1)·v / (2·S) is the centre of mass; shift it onto SIZE/2.
        row_m = int(((2 * np.arange(oh) + 1) * box.sum(axis=1)).sum())
        col_m = int(((2 * np.arange(ow) + 1) * box.sum(axis=0)).sum())
        top = int(_div_round(SIZE * total - row_m, 2 * total))
        left = int(_div_round(SIZE * total - col_m, 2 * total))
        top, left = min(max(top, 0), SIZE - oh), min(max(left, 0), SIZE - ow)
    out[top:top + oh, left:left + ow] = box.astype(np.uint8)
    return out


def preprocess_strokes(strokes: Sequence[Stroke], width: int = CANVAS,
                       height: int = CANVAS) -> np.ndarray:
    """Strokes on a width x height canvas -> uint8 [28, 28] model input."""
    return preprocess(rasterize(strokes, width, height))


def upscale(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of a 28x28 image: how the benchmark draws MNIST digits."""
    return np.repeat(np.repeat(np.asarray(pixels, dtype=np.uint8), factor, 0), factor, 1)
