"""The int8 feature maps of every layer for one input, as grey images (golden's trace).

What the seed notebook plotted for its Keras model, here from the int8 model itself:
each op's output dequantized (real = scale * (q - zero_point)), one row per op, the
first channels side by side, grey levels spanning that op's range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import golden
from ..qgraph import QGraph

MAX_CHANNELS = 8


def feature_figure(graph: QGraph, pixels: np.ndarray, trace: list[np.ndarray] | None = None,
                   title: str | None = None):
    """A matplotlib Figure: the input, then one row per op (flatten skipped)."""
    from matplotlib.figure import Figure

    shape = tuple(graph.input.shape)
    px = np.ascontiguousarray(pixels, dtype=graph.input_dtype).reshape(1, *shape)
    if trace is None:
        trace = [t[0] for t in golden.run_int8(graph, px, trace=True)[1]]
    layers = [(op, out) for op, out in zip(graph.ops, trace, strict=True)
              if op.kind != "flatten"]
    cols = MAX_CHANNELS
    fig = Figure(figsize=(1.2 * (cols + 1), 1.2 * (len(layers) + 1)))
    grid = fig.add_gridspec(len(layers) + 1, cols + 1)  # column 0: the row's label
    labels = [("input", f"{graph.input_encoding} {'x'.join(map(str, shape))}")] + [
        (op.name, f"{op.kind} {'x'.join(str(d) for d in q.shape)}") for op, q in layers]
    for row, (name, what) in enumerate(labels):
        ax = fig.add_subplot(grid[row, 0])
        ax.axis("off")
        ax.text(1.0, 0.5, f"{name}\n{what}", ha="right", va="center", fontsize=8,
                transform=ax.transAxes)
    if graph.input_encoding == "uint8" and len(shape) == 3 and shape[0] in (1, 3):
        ax = fig.add_subplot(grid[0, 1])
        if shape[0] == 1:
            ax.imshow(px[0, 0], cmap="gray_r", vmin=0, vmax=255)
        else:
            ax.imshow(px[0].transpose(1, 2, 0))
        ax.axis("off")
    else:   # features or a vector: the int8 values, like a layer's output
        _plot(fig, grid, 0, golden.dequantize(graph.input_to_int8(px)[0], graph.input), cols)
    if title:
        fig.suptitle(title, fontsize=10)
    for row, (op, q) in enumerate(layers, start=1):
        _plot(fig, grid, row, golden.dequantize(np.asarray(q), op.output), cols)
    fig.tight_layout()
    return fig


def _plot(fig, grid, row: int, real: np.ndarray, cols: int) -> None:
    """One row of the figure: the first channels of a [C, H, W] tensor, or a strip."""
    lo, hi = float(min(real.min(), 0.0)), float(max(real.max(), 1e-6))
    if real.ndim == 3:
        for c in range(min(cols, real.shape[0])):
            ax = fig.add_subplot(grid[row, c + 1])
            ax.imshow(real[c], cmap="gray", vmin=lo, vmax=hi)
            ax.axis("off")
            ax.set_title(f"ch {c}", fontsize=7)
        return
    ax = fig.add_subplot(grid[row, 1:])
    flat = real.reshape(1, -1)
    ax.imshow(flat, cmap="gray", vmin=lo, vmax=hi, aspect="auto")
    ax.set_yticks([])
    if flat.shape[1] <= 16:
        ax.set_xticks(range(flat.shape[1]))
        ax.tick_params(labelsize=7)
    else:
        ax.set_xticks([])


def figure_rgb(fig) -> np.ndarray:
    """The figure rendered to an RGB uint8 array (for the Gradio image)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_feature_figure(graph: QGraph, pixels: np.ndarray, path: Path,
                        title: str | None = None) -> Path:
    from ..paths import save_figure

    save_figure(feature_figure(graph, pixels, title=title), Path(path))
    return Path(path)
