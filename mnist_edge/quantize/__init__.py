"""Quantizer: fold BatchNorm, calibrate, quantize a trained run into a QGraph."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import data, fgraph, qgraph
from ..report import update_report
from .calibrate import calibrate
from .fold import fold_model
from .ptq import quantize_graph


def calibration_images(data_dir: str | None, count: int, seed: int = 0) -> np.ndarray:
    """A seeded random subset of the training images (validation split excluded)."""
    images, _ = data.load_mnist("train", data_dir)
    pool = images[:-5000] if len(images) > 5000 else images
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(pool), size=min(count, len(pool)), replace=False))
    return pool[idx]


def quantize_run(run_dir: str | Path, data_dir: str | None = None, method: str = "percentile",
                 calib_images: int = 2000) -> qgraph.QGraph:
    """Checkpoint -> `<model>.fgraph.*` and `<model>.qgraph.*` in the run folder."""
    from ..train import load_model, model_name_of

    run_dir = Path(run_dir)
    start = time.time()
    model = load_model(run_dir)
    name = model_name_of(run_dir)
    folded = fold_model(model, name)
    ranges = calibrate(folded, calibration_images(data_dir, calib_images), method)
    graph = quantize_graph(folded, ranges)
    graph.meta = {"model": name, "calibration": method, "calibration_images": calib_images}
    for old in run_dir.glob("*.qgraph.*"):
        old.unlink()
    fgraph.save(folded, run_dir / name)
    qgraph.save(graph, run_dir / name)
    update_report(run_dir, {"model": name, "qgraph_hash": graph.content_hash(),
                            "seconds": {"quantize": round(time.time() - start, 2)}})
    return graph


def quantize_command(args: Any) -> int:
    graph = quantize_run(args.run, args.data, args.calibration, args.calib_images)
    print(f"quantized {graph.name}: {len(graph.ops)} ops, hash {graph.content_hash()[:16]} "
          f"-> {qgraph.find_in_run(args.run)}")
    return 0
