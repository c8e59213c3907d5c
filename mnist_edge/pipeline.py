"""The stages that tie modules together: evaluate, generate, validate, report, build."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import analyze, data, fgraph, golden, qgraph
from . import inputs as input_data
from .errors import MnistEdgeError
from .inputs import DataSource
from .paths import check_output_dir
from .report import check_run_files, update_report
from .validate import BACKENDS, check_backend, mismatch_message, validate_backend


def test_set(data_dir: str | None, limit: int | None = None, graph=None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `limit` inputs of `--data` for `graph` (a QGraph or FloatGraph; default the
    MNIST model), raw (uint8 pixels, float features), and their labels (None if it has none).
    """
    spec = input_data.spec_of(graph) if graph is not None else input_data.InputSpec(
        data.MNIST_SHAPE, "pixels")
    ds = input_data.load(data_dir, spec, "test").head(limit)
    return ds.x, ds.y


def evaluate_run(run_dir: Path, data_dir: str | None = None,
                 limit: int | None = None) -> dict[str, Any]:
    """Float (folded graph) and int8 (golden) accuracy, agreement, and the model's costs.
    Without labels, accuracy is left out and the int8/float agreement is still measured."""
    graph = qgraph.load_run(run_dir)
    folded = fgraph.load(fgraph.find_in_run(run_dir))
    images, labels = test_set(data_dir, limit, folded)
    start = time.time()
    q_logits = golden.run_int8(graph, input_data.graph_input(graph, images))
    golden_seconds = time.time() - start
    f_logits = fgraph.run_float(folded, fgraph.float_input(folded, images))
    q_pred, f_pred = golden.predict(q_logits), np.argmax(f_logits, axis=1)
    costs = analyze.summarize(graph)
    figures = {
        "model": graph.name,
        "test_images": int(len(images)),
        "int8_float_agreement": float(np.mean(q_pred == f_pred)),
        "golden_seconds": round(golden_seconds, 2),
        **{k: costs[k] for k in ("params", "macs", "weight_bytes", "peak_activation_bytes")},
    }
    if labels is not None:
        figures["float_accuracy"] = float(np.mean(f_pred == labels))
        figures["int8_accuracy"] = float(np.mean(q_pred == labels))
    if "c_arena_bytes" in costs:
        figures["c_arena_bytes"] = costs["c_arena_bytes"]
    if labels is not None:
        classes = max(graph.output.size, int(labels.max(initial=0)) + 1)
        confusion = np.zeros((classes, classes), dtype=np.int64)
        np.add.at(confusion, (labels, q_pred), 1)
        figures["int8_confusion"] = confusion.tolist()
    update_report(run_dir, figures)
    if labels is None:
        return figures
    from .report_html import plot_confusion

    plot_confusion(confusion, run_dir / "confusion.png", graph.name)
    wrong = np.flatnonzero(q_pred != labels)[:32]
    shape = folded.input_shape
    if len(wrong) and folded.input_kind == "pixels" and len(shape) == 3 and shape[0] == 1:
        data.save_grid(images[wrong].reshape(-1, *shape[1:]), labels[wrong],
                       run_dir / "misclassified.png", predictions=q_pred[wrong])
    return figures


def run_folder(path: str) -> Path:
    """A command's run folder: it must exist; a corrupt report/history is moved aside now."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise MnistEdgeError(f"{run_dir}: no such run folder" if not run_dir.exists()
                             else f"{run_dir}: not a folder (give the run folder)")
    check_run_files(run_dir)
    return run_dir


# Each generate target and its default folder inside the run.
GENERATED_FOLDER = {"c": "c", "hls": "fpga/hls", "rtl": "fpga/rtl-{fpga}", "web": "web"}


def generate(run_dir: Path, target: str, out: str | None = None, requant: str = "float",
             vectors: int = 20, data_dir: str | None = None, force: bool = False,
             fpga: str | None = None, lanes: int | None = None,
             prefix: str | None = None) -> Path:
    """Generate C, HLS, RTL or the web page into `out` (default: GENERATED_FOLDER in the run).

    The output folder is checked before any work: mnist-edge replaces only its own
    output (a folder holding its manifest), an explicit --out only with `force`.
    """
    if target not in GENERATED_FOLDER:
        raise MnistEdgeError(f"generate {target}: this target is not implemented yet "
                             f"(available: {', '.join(GENERATED_FOLDER)})")
    if target == "rtl":
        from .backends.rtl import DEFAULT_FPGA

        fpga = fpga or DEFAULT_FPGA
    if target == "c":
        from .backends.c import DEFAULT_PREFIX, check_prefix

        prefix = prefix or DEFAULT_PREFIX
        check_prefix(prefix)  # a bad prefix fails before any work
    default = run_dir / GENERATED_FOLDER[target].format(fpga=fpga)
    out_dir = Path(out) if out is not None else default
    check_output_dir(out_dir, force=force, explicit=out is not None, protect=(run_dir,))
    graph = qgraph.load_run(run_dir)
    from .backends.inputs import require_arithmetic

    # every target implements both arithmetics (the RTL refuses the tflite one on the iCE40)
    require_arithmetic(graph, {"c": "C", "hls": "HLS", "rtl": "RTL", "web": "web"}[target],
                       ("onnx", "tflite"))
    if prefix is not None and target != "c":
        raise MnistEdgeError("--prefix applies to `generate c` only")
    pixels = (input_data.graph_input(graph, input_data.sample(data_dir, input_data.spec_of(graph),
                                                      vectors)[0]) if vectors > 0 else None)
    if target == "c":
        from .backends.c import DEFAULT_PREFIX, check_prefix, generate_c

        return generate_c(graph, out_dir, requant, pixels, prefix)
    if target == "hls":
        from .backends.hls import generate_hls

        return generate_hls(graph, out_dir, pixels)
    if target == "rtl":
        from .backends.rtl import generate_rtl

        return generate_rtl(graph, out_dir, pixels, fpga, lanes)
    from .backends.web import generate_web

    return generate_web(graph, out_dir, requant, pixels)


def validate_run(run_dir: Path, backends: list[str], data_dir: DataSource = None,
                 limit: int | None = None, model_file: str | None = None,
                 rtl_options: dict[str, Any] | None = None, inputs: np.ndarray | None = None,
                 labels: np.ndarray | None = None,
                 on_result: Callable[[str, dict[str, Any]], None] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Validate each backend against golden; its figures by backend name (each with
    `seconds`), in order. `on_result(name, figures)` is called as each one finishes.

    `inputs` (in the graph's input encoding; `labels` optional) replaces the test set,
    for models that have no data set here."""
    backends = backend_list(backends, model_file)
    graph = qgraph.load_run(run_dir)
    base_options: dict[str, Any] = {"model_file": model_file} if model_file else {}
    base_options.update(rtl_options or {})
    for name in backends:
        check_backend(name, run_dir, graph, base_options)
    if inputs is None:
        images, labels = test_set(data_dir, limit, graph)
        images = input_data.graph_input(graph, images)
    else:
        images = inputs if limit is None else inputs[:limit]
        labels = None if labels is None else labels[:len(images)]
    reference = golden.run_int8(graph, images)
    results: dict[str, dict[str, Any]] = {}
    for name in backends:
        start = time.time()
        f = validate_backend(run_dir, name, images, labels, dict(base_options), graph=graph,
                             reference=reference)
        f["seconds"] = round(time.time() - start, 2)
        update_report(run_dir, {"seconds": {f"validate_{name}": f["seconds"]}})
        results[name] = f
        if on_result is not None:
            on_result(name, f)
    return results


def all_exact(results: dict[str, dict[str, Any]]) -> bool:
    """True when every validated backend reproduced golden's logits bit for bit."""
    return bool(results) and all(f["exact_logit_fraction"] == 1.0 for f in results.values())


def validation_line(name: str, f: dict[str, Any], what: str = "inputs") -> str:
    """The one line `validate` prints per backend (and a second on a mismatch)."""
    latency = (f" latency {f['latency_us_per_image']:.1f} us/image"
               if f.get("latency_us_per_image") is not None else "")
    accuracy = f"accuracy {f['accuracy']:.2%}" if "accuracy" in f else "no labels"
    line = (f"{name}: {accuracy}, exact logits {f['exact_logit_fraction']:.4%}, max |diff| "
            f"{f['max_abs_logit_diff']} LSB on {f['images']:,} {what}{latency} "
            f"({f['seconds']} s)")
    if f["exact_logit_fraction"] != 1.0:
        line += "\n" + mismatch_message(name, f)
    return line


def backend_list(specs: list[str], model_file: str | None = None,
                 option: str = "--backend") -> list[str]:
    """The backends of `--backend a,b --backend c`, every one checked before any runs."""
    backends = [b.strip() for spec in specs for b in spec.split(",") if b.strip()]
    if not backends:
        raise MnistEdgeError(f"{option}: no backend given; choose from: {', '.join(BACKENDS)}")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise MnistEdgeError(f"unknown backend {unknown[0]!r}; choose from: "
                             f"{', '.join(BACKENDS)}")
    if model_file is not None and backends != ["onnxruntime"] * len(backends):
        other = next(b for b in backends if b != "onnxruntime")
        raise MnistEdgeError(f"--model-file is an ONNX file for the onnxruntime backend only, "
                             f"not for {other!r}; validate {other} in a separate command")
    return list(dict.fromkeys(backends))
