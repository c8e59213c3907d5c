"""Human-readable reports of a run: Markdown and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from .paths import atomic_write, save_figure
from .report import load_history, load_report

PLOTS = (("curves.png", "Training curves"), ("confusion.png", "int8 confusion matrix"),
         ("misclassified.png", "Misclassified test images (int8)"),
         ("feature_maps.png", "int8 feature maps of test image 0 (golden, dequantized)"))
FEATURE_IMAGE = 0
SUMMARY_KEYS = ("model", "float_accuracy", "int8_accuracy", "int8_float_agreement", "params",
                "macs", "weight_bytes", "peak_activation_bytes", "c_arena_bytes", "qgraph_hash")
BACKEND_KEYS = ("images", "accuracy", "top1_agreement_with_golden", "exact_logit_fraction",
                "max_abs_logit_diff", "latency_us_per_image")


def plot_confusion(confusion: np.ndarray, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4.4))
    ax = fig.add_subplot()
    ax.imshow(np.log1p(confusion), cmap="Blues")
    for (r, c), v in np.ndenumerate(confusion):
        ax.text(c, r, str(v), ha="center", va="center", fontsize=7,
                color="white" if r == c else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: int8 confusion matrix")
    save_figure(fig, path)


def format_value(value: Any) -> str:
    """A figure as the reports show it: a share as a percentage, counts with thousands
    separators (the API's HTML tables use it too)."""
    if isinstance(value, float):
        return f"{value:.4%}" if 0 <= value <= 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def training_rows(run_dir: Path) -> list[tuple[str, str]]:
    """How the float model was trained (from history.json): a figure means little without it."""
    h = load_history(run_dir)
    if not h:
        return []
    lr, augment = h.get("lr"), h.get("augment")
    rows = [("epochs run", len(h.get("epochs", []))),
            ("peak learning rate", None if lr is None else f"{lr:g}"),
            ("batch size", h.get("batch_size")),
            ("augmentation", None if augment is None else ("yes" if augment else "no")),
            ("teacher (distillation)", h.get("teacher") or "none"), ("seed", h.get("seed")),
            ("best validation accuracy", h.get("best_val_accuracy")),
            ("training seconds", h.get("train_seconds"))]
    return [(k, format_value(v)) for k, v in rows if v is not None]


def _rows(report: dict[str, Any]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    summary = [(k, format_value(report[k])) for k in SUMMARY_KEYS if k in report]
    backends = [[name] + [format_value(figs.get(k, "")) for k in BACKEND_KEYS]
                for name, figs in sorted(report.get("backends", {}).items())]
    return summary, backends


def markdown(report: dict[str, Any], training: list[tuple[str, str]]) -> str:
    summary, backends = _rows(report)
    lines = [f"# mnist-edge report: {report.get('model', '?')}", "", "| figure | value |",
             "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary]
    if training:
        lines += ["", "## Training", "", "| setting | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in training]
    if backends:
        lines += ["", "## Backends vs golden", "", "| backend | " + " | ".join(BACKEND_KEYS)
                  + " |", "|" + " --- |" * (len(BACKEND_KEYS) + 1)]
        lines += ["| " + " | ".join(row) + " |" for row in backends]
    if report.get("seconds"):
        lines += ["", "## Seconds per stage", "", "| stage | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in sorted(report["seconds"].items())]
    return "\n".join(lines) + "\n"


def html_page(report: dict[str, Any], run_dir: Path, training: list[tuple[str, str]]) -> str:
    summary, backends = _rows(report)
    esc = html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>mnist-edge: "
             f"{esc(str(report.get('model', '')))}</title>",
             "<style>body{font-family:sans-serif;max-width:960px;margin:auto}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}</style>",
             f"<h1>mnist-edge report: {esc(str(report.get('model', '')))}</h1><table>"]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary]
    parts.append("</table>")
    if training:
        parts.append("<h2>Training</h2><table>")
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in training]
        parts.append("</table>")
    if backends:
        parts.append("<h2>Backends vs golden</h2><table><tr><th>backend</th>"
                     + "".join(f"<th>{esc(k)}</th>" for k in BACKEND_KEYS) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                  for row in backends]
        parts.append("</table>")
    for name, title in PLOTS:
        png = run_dir / name
        if png.exists():
            parts.append(f"<h2>{esc(title)}</h2><img alt='{esc(title)}' "
                         f"src='{png_data_uri(png)}'>")
    return "\n".join(parts) + "\n"


def png_data_uri(path: Path) -> str:
    """A PNG embedded in a page (report.html, the API's Jupyter views): no file beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def plot_feature_maps(run_dir: Path) -> Path | None:
    """feature_maps.png: every layer's int8 output for one test image (None without data).

    Only MNIST files already on this machine are used: a report never downloads.
    """
    from . import data, qgraph
    from .demo.features import save_feature_figure
    from .errors import MnistEdgeError

    try:
        graph = qgraph.load_run(run_dir)
        images, labels = data.load_mnist("test", data.resolve_data_dir(None, download=False))
    except MnistEdgeError:
        return None
    title = f"{graph.name}: test image {FEATURE_IMAGE} (label {int(labels[FEATURE_IMAGE])})"
    return save_feature_figure(graph, images[FEATURE_IMAGE], run_dir / "feature_maps.png", title)


def write_reports(run_dir: Path) -> list[Path]:
    plot_feature_maps(run_dir)
    report, training = load_report(run_dir), training_rows(run_dir)
    md, page = run_dir / "report.md", run_dir / "report.html"
    with atomic_write(md, "w") as f:
        f.write(markdown(report, training))
    with atomic_write(page, "w") as f:
        f.write(html_page(report, run_dir, training))
    return [md, page]
