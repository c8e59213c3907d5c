"""MNIST-style preprocessing of a drawing: strokes -> ink bitmap -> H x W uint8 pixels.

MNIST's digits were size-normalized to fit a 20x20 box (keeping the aspect ratio,
anti-aliased to grey levels) and then centred in 28x28 by their centre of mass.
A drawing that is not treated the same way is read far worse by a model trained on
MNIST, so this is the part of the demo that matters. A model of another input size
H x W gets the same treatment at its own size: the box is the same fraction of each
side (20/28, rounded half up: 23x23 in 32x32, 14x13 in 20x18), the ink scaled to fit
it keeping its aspect ratio, its centre of mass on (H/2, W/2).

Every step is defined on integers so that `templates/web/preprocess.js` computes
the same bytes (JavaScript numbers are float64, exact for integers below 2**53; every
intermediate here stays far below that for the size limits in MAX_SIDE):

1. rasterize: each stroke is a polyline at integer canvas coordinates, drawn as
   capsules of radius `brush_radius(w, h)`: pixel (x, y) is ink (255) when its squared
   distance to a segment is <= r^2 (tested exactly with integer cross products);
2. crop to the bounding box of the pixels with ink > 0;
3. area-average the crop to `oh x ow`, the largest size within the box (BH x BW) of
   the crop's aspect ratio: output row i covers source rows [i*h/oh, (i+1)*h/oh), so in
   units of 1/oh every overlap is an integer and each output pixel is an integer sum
   divided by h*w, rounded half up (`area_resize`, also the upload's resize);
4. paste into H x W with the centre of mass (pixel centres at i + 1/2) on (H/2, W/2),
   rounded half up, clamped so that no ink falls off.

An uploaded image is either read as a drawing (`ink_from_rgba`, then the steps above) or
taken whole (`image_from_rgba`): converted to grey or RGB and resized to H x W by the
same integer area filter (`area_resize`), in Python for the demo and in JS for the page.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MnistEdgeError

BOX = 20          # the longer side of the digit, as in MNIST ...
SIZE = 28         # ... in MNIST's 28x28; other sizes scale the box by BOX / SIZE
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


def _check_out(size: tuple[int, int]) -> tuple[int, int]:
    out_h, out_w = (int(v) for v in size)
    if not (0 < out_h <= MAX_SIDE and 0 < out_w <= MAX_SIDE):
        raise MnistEdgeError(f"model input {out_h}x{out_w} is outside 1..{MAX_SIDE} a side")
    return out_h, out_w


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w] or [h, w, C] -> uint8 [H, W(, C)] by an integer area (box) filter.

    Output pixel (i, j) is the mean of the source over the cell [i*h/H, (i+1)*h/H) x
    [j*w/W, (j+1)*w/W), each source pixel weighted by its overlap (an integer in units
    of 1/H and 1/W), rounded half up: exact, the same bytes as preprocess.js's areaResize.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise MnistEdgeError(f"image must be uint8 [H, W] or [H, W, C], got {a.dtype} "
                             f"{a.shape}")
    out_h, out_w = _check_out(size)
    h, w = a.shape[:2]
    _check_size(w, h)
    src = a.reshape(h, w, -1).astype(np.float64)
    wr, wc = _weights(h, out_h).astype(np.float64), _weights(w, out_w).astype(np.float64)
    # Integer sums <= h*w*255 < 2**53: float64 products and sums are exact (and BLAS fast).
    sums = np.stack([wr @ src[..., c] @ wc.T for c in range(src.shape[2])], axis=-1)
    out = _div_round(np.rint(sums).astype(np.int64), h * w).astype(np.uint8)
    return out if a.ndim == 3 else out[..., 0]


def box_limits(size: tuple[int, int] = (SIZE, SIZE)) -> tuple[int, int]:
    """(BH, BW): the digit's box in an H x W input, BOX/SIZE of each side rounded half up
    (20x20 in 28x28)."""
    out_h, out_w = _check_out(size)
    return (max(1, int(_div_round(out_h * BOX, SIZE))),
            max(1, int(_div_round(out_w * BOX, SIZE))))


def box_size(h: int, w: int, limits: tuple[int, int] = (BOX, BOX)) -> tuple[int, int]:
    """(oh, ow): an h x w crop scaled to fit BH x BW keeping its aspect ratio; the side
    that touches the box is exact, the other rounded half up (at least 1)."""
    bh, bw = limits
    if h * bw >= w * bh:
        return bh, max(1, int(_div_round(w * bh, h)))
    return max(1, int(_div_round(h * bw, w))), bw


def preprocess(ink: np.ndarray, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """uint8 ink bitmap [h, w] (0 = background) -> uint8 [H, W], MNIST-style
    (size = (H, W), the model's input; 28x28 by default).

    Raises MnistEdgeError on an empty drawing.
    """
    ink = np.asarray(ink)
    if ink.ndim != 2 or ink.dtype != np.uint8:
        raise MnistEdgeError(f"ink bitmap must be uint8 [H, W], got {ink.dtype} {ink.shape}")
    _check_size(ink.shape[1], ink.shape[0])
    out_h, out_w = _check_out(size)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        raise MnistEdgeError("the drawing is empty: draw a digit first")
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    oh, ow = box_size(*crop.shape, box_limits((out_h, out_w)))
    box = area_resize(crop, (oh, ow)).astype(np.int64)           # 0..255
    total = int(box.sum())
    out = np.zeros((out_h, out_w), dtype=np.uint8)
    if total == 0:   # ink too faint to survive averaging: centre the box geometrically
        top, left = (out_h - oh) // 2, (out_w - ow) // 2
    else:
        # Σ (2i+1)·v / (2·S) is the centre of mass; shift it onto (H/2, W/2).
        row_m = int(((2 * np.arange(oh) + 1) * box.sum(axis=1)).sum())
        col_m = int(((2 * np.arange(ow) + 1) * box.sum(axis=0)).sum())
        top = int(_div_round(out_h * total - row_m, 2 * total))
        left = int(_div_round(out_w * total - col_m, 2 * total))
        top, left = min(max(top, 0), out_h - oh), min(max(left, 0), out_w - ow)
    out[top:top + oh, left:left + ow] = box.astype(np.uint8)
    return out


def preprocess_strokes(strokes: Sequence[Stroke], width: int = CANVAS,
                       height: int = CANVAS, size: tuple[int, int] = (SIZE, SIZE)
                       ) -> np.ndarray:
    """Strokes on a width x height canvas -> uint8 [H, W] model input (size = (H, W))."""
    return preprocess(rasterize(strokes, width, height), size)


def upscale(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an image [H, W(, C)]: how the benchmark draws MNIST
    digits, and the demo's preview."""
    return np.repeat(np.repeat(np.asarray(pixels, dtype=np.uint8), factor, 0), factor, 1)


# ------------------------------------------------------------------ uploaded images
def _over_white(a: np.ndarray) -> np.ndarray:
    """RGB(A) or grey uint8 -> int64 [h, w, 3] RGB composited over white."""
    a = np.asarray(a)
    if a.ndim == 2:
        return np.repeat(a.astype(np.int64)[..., None], 3, axis=2)
    rgb = a[..., :3].astype(np.int64)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4].astype(np.int64)
        rgb = (alpha * rgb + (255 - alpha) * 255 + 127) // 255
    return rgb


def _grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma in integers: (299 R + 587 G + 114 B) / 1000, rounded half up."""
    return (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000


def _median2(values: np.ndarray) -> int:
    """Twice the median of integers 0..255 (an integer; np.median's mean of the middle
    two for an even count)."""
    v = np.sort(np.asarray(values, np.int64).reshape(-1))
    n = len(v)
    return int(2 * v[n // 2]) if n % 2 else int(v[n // 2 - 1] + v[n // 2])


def ink_from_rgba(rgba: np.ndarray) -> np.ndarray:
    """uint8 ink [H, W] (0 = background) of an RGB(A)/grey image, whatever its polarity.

    Composited over white, ink = 255 - luminance; if most of the image is dark (a white
    digit on black, as MNIST stores them), the polarity is flipped. The background level
    (the median, rounded down) is then subtracted so that paper grain does not widen the
    ink's box. preprocess.js's inkFromRGBA gives the same bytes.
    """
    ink = 255 - _grey(_over_white(rgba))
    if _median2(ink) > 254:            # median > 127
        ink = 255 - ink
    ink = np.clip(ink - _median2(ink) // 2, 0, 255)
    return ink.astype(np.uint8)


def image_from_rgba(rgba: np.ndarray, channels: int, size: tuple[int, int]) -> np.ndarray:
    """An uploaded image taken whole: composited over white, grey (channels 1, luma as in
    ink_from_rgba) or RGB (3), area-resized to size = (H, W) -> uint8 [H, W, C] (HWC,
    the C's layout). preprocess.js's imageFromRGBA gives the same bytes."""
    if channels not in (1, 3):
        raise MnistEdgeError(f"an image gives 1 (grey) or 3 (RGB) channels, not {channels}")
    rgb = _over_white(rgba)
    img = (_grey(rgb)[..., None] if channels == 1 else rgb).astype(np.uint8)
    return area_resize(img, size)


# ------------------------------------------------------------------ what a model takes
def image_shape(graph) -> tuple[int, int, int] | None:
    """(C, H, W) of a QGraph whose input is an image of uint8 pixels with 1 (grey) or 3
    (RGB) channels: it can be uploaded, and drawn when C is 1. None for features and
    vectors: those take test data only."""
    shape = tuple(graph.input.shape)
    if graph.input_encoding == "uint8" and len(shape) == 3 and shape[0] in (1, 3):
        return int(shape[0]), int(shape[1]), int(shape[2])
    return None
