"""Quantizer: fold BatchNorm, calibrate, quantize a trained run into a QGraph."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import data, fgraph, inputs, qgraph
from ..errors import MnistEdgeError
from ..fgraph import FloatGraph
from ..report import update_report
from .calibrate import calibrate
from .fold import fold_model
from .ptq import quantize_graph
from .qat import qat_finetune


def calibration_images(data_dir: str | None, count: int, seed: int = 0,
                       spec: inputs.InputSpec | None = None) -> np.ndarray:
    """A seeded random subset of `--data` for a model reading `spec` (default: MNIST's
    training images, validation split excluded)."""
    spec = spec or inputs.InputSpec(data.MNIST_SHAPE, "pixels")
    return inputs.calibration_set(data_dir, spec, count, seed)


def _ptq(model, name: str, ranges: dict[str, tuple[float, float]] | None, calib: np.ndarray,
         method: str, arithmetic: str
         ) -> tuple[FloatGraph, qgraph.QGraph, dict[str, tuple[float, float]]]:
    folded = fold_model(model, name)
    ranges = ranges or calibrate(folded, calib, method)
    return folded, quantize_graph(folded, ranges, arithmetic), ranges


def quantize_run(run_dir: str | Path, data_dir: str | None = None, method: str = "percentile",
                 calib_images: int = 2000, qat_epochs: int | None = None,
                 quiet: bool = False, arithmetic: str = "onnx") -> qgraph.QGraph:
    """Checkpoint -> `<model>.fgraph.*` and `<model>.qgraph.*` in the run folder, in the
    `arithmetic` the QGraph declares (`onnx`, the default, or `tflite`: see `ptq`).

    With QAT epochs (default: the model's), the post-training QGraph's scales drive a
    fine-tuning of the float weights (augmented only if training was), saved as
    checkpoint.qat.pt, then the weights are quantized again with the same activation ranges.
    """
    from ..models import defaults
    from ..trainer import (
        QAT_CHECKPOINT,
        load_model,
        model_name_of,
        save_model,
        trained_with_augmentation,
    )

    run_dir = Path(run_dir)
    start = time.time()
    from ..importers import is_imported, is_tflite_run

    if is_tflite_run(run_dir):
        raise MnistEdgeError(f"{run_dir} was imported from an int8 .tflite: it is already "
                             "quantized (its QGraph keeps the file's numbers); skip quantize")
    if is_imported(run_dir):
        return _quantize_imported(run_dir, data_dir, method, calib_images, qat_epochs, start,
                                  arithmetic)
    name = model_name_of(run_dir)
    model = load_model(run_dir, finetuned=False)
    calib = calibration_images(data_dir, calib_images)
    folded, graph, ranges = _ptq(model, name, None, calib, method, arithmetic)
    qat_epochs = defaults(name).qat_epochs if qat_epochs is None else qat_epochs
    (run_dir / QAT_CHECKPOINT).unlink(missing_ok=True)
    if qat_epochs > 0:
        images, labels = data.load_mnist("train", data_dir)
        model = qat_finetune(model, graph, images, labels, qat_epochs, quiet=quiet,
                             augment_data=trained_with_augmentation(run_dir))
        save_model(model, name, run_dir / QAT_CHECKPOINT)
        # Keep the activation ranges the fine-tuning trained against.
        folded, graph, _ = _ptq(model, name, ranges, calib, method, arithmetic)
    graph.meta = {"model": name, "calibration": method, "calibration_images": calib_images,
                  "qat_epochs": qat_epochs}
    for old in run_dir.glob("*.qgraph.*"):
        old.unlink()
    fgraph.save(folded, run_dir / name)
    qgraph.save(graph, run_dir / name)
    update_report(run_dir, {"model": name, "qgraph_hash": graph.content_hash(),
                            "seconds": {"quantize": round(time.time() - start, 2)}})
    return graph


def _quantize_imported(run_dir: Path, data_dir: str | None, method: str, calib_images: int,
                       qat_epochs: int | None, start: float, arithmetic: str
                       ) -> qgraph.QGraph:
    """An imported run has no PyTorch model: calibrate and quantize its saved float graph."""
    if qat_epochs:
        raise MnistEdgeError(f"{run_dir}: quantization-aware fine-tuning needs a zoo model's "
                             "checkpoint; an imported model is quantized post-training only "
                             "(--qat-epochs 0)")
    folded = fgraph.load(fgraph.find_in_run(run_dir))
    calib = calibration_images(data_dir, calib_images, spec=inputs.spec_of(folded))
    graph = quantize_graph(folded, calibrate(folded, calib, method), arithmetic)
    graph.meta = {"model": folded.name, "calibration": method, "calibration_images": calib_images,
                  "qat_epochs": 0, "imported": True}
    for old in run_dir.glob("*.qgraph.*"):
        old.unlink()
    qgraph.save(graph, run_dir / folded.name)
    update_report(run_dir, {"model": folded.name, "qgraph_hash": graph.content_hash(),
                            "seconds": {"quantize": round(time.time() - start, 2)}})
    return graph
