"""The stages that tie modules together: evaluate, generate, validate, report, build."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from . import analyze, data, fgraph, golden, qgraph
from . import inputs as input_data
from .errors import MnistEdgeError
from .paths import check_output_dir
from .probe_inputs import parse_inputs_spec, probe_batch
from .report import check_run_files, load_report, update_report
from .validate import BACKENDS, mismatch_message, validate_backend


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


def evaluate_command(args: Any) -> int:
    f = evaluate_run(run_folder(args.run), args.data, args.limit)
    accuracy = (f"float {f['float_accuracy']:.2%}  int8 {f['int8_accuracy']:.2%}  "
                if "int8_accuracy" in f else "no labels: accuracy not measured; ")
    print(f"{f['model']}: {accuracy}agreement {f['int8_float_agreement']:.2%} on "
          f"{f['test_images']:,} inputs (golden {f['golden_seconds']} s)")
    return 0


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

    require_arithmetic(graph, {"c": "C", "hls": "HLS", "rtl": "RTL", "web": "web"}[target])
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

    return generate_web(graph, out_dir, requant)


def generate_command(args: Any) -> int:
    out = generate(Path(args.run), args.target, args.out, args.requant, args.vectors,
                   force=args.force, fpga=args.fpga, lanes=args.lanes,
                   prefix=getattr(args, "prefix", None))
    print(f"generated {args.target} -> {out}")
    return 0


def validate_run(run_dir: Path, backends: list[str], data_dir: str | None = None,
                 limit: int | None = None, model_file: str | None = None,
                 rtl_options: dict[str, Any] | None = None, inputs: np.ndarray | None = None,
                 labels: np.ndarray | None = None) -> bool:
    """Validate each backend; print one line each. True when every one is bit-exact.

    `inputs` (in the graph's input encoding; `labels` optional) replaces the MNIST test
    images, for models that have no data set here."""
    backends = backend_list(backends, model_file)
    what = "images" if inputs is None else "inputs"
    if inputs is None:
        graph = qgraph.load_run(run_dir)
        images, labels = test_set(data_dir, limit, graph)
        images = input_data.graph_input(graph, images)
    else:
        images = inputs if limit is None else inputs[:limit]
        labels = None if labels is None else labels[:len(images)]
    all_exact = True
    for name in backends:
        start = time.time()
        options: dict[str, Any] = {"model_file": model_file} if model_file else {}
        options.update(rtl_options or {})
        f = validate_backend(run_dir, name, images, labels, options)
        seconds = round(time.time() - start, 2)
        update_report(run_dir, {"seconds": {f"validate_{name}": seconds}})
        latency = (f" latency {f['latency_us_per_image']:.1f} us/image"
                   if f.get("latency_us_per_image") is not None else "")
        accuracy = f"accuracy {f['accuracy']:.2%}" if "accuracy" in f else "no labels"
        print(f"{name}: {accuracy}, exact logits "
              f"{f['exact_logit_fraction']:.4%}, max |diff| {f['max_abs_logit_diff']} LSB on "
              f"{f['images']:,} {what}{latency} ({seconds} s)")
        if f["exact_logit_fraction"] != 1.0:
            print(mismatch_message(name, f))
            all_exact = False
    return all_exact


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


def validate_command(args: Any) -> int:
    backends = backend_list(args.backend, args.model_file)
    rtl_options = {k: v for k, v in (("fpga", getattr(args, "fpga", None)),
                                     ("lanes", getattr(args, "lanes", None))) if v}
    run_dir = run_folder(args.run)
    inputs = None
    kind, count = parse_inputs_spec(getattr(args, "inputs", None) or "mnist")
    if kind == "random":
        inputs = probe_batch(qgraph.load_run(run_dir), count, seed=getattr(args, "seed", 0))
    ok = validate_run(run_dir, backends, args.data, args.limit, args.model_file, rtl_options,
                      inputs)
    return 0 if ok else 1


def report_command(args: Any) -> int:
    from .report_html import write_reports

    paths = write_reports(run_folder(args.run))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _timed(run_dir: Path, stage: str, fn, *a, **kw):
    start = time.time()
    result = fn(*a, **kw)
    update_report(run_dir, {"seconds": {stage: round(time.time() - start, 2)}})
    return result


def build_command(args: Any) -> int:
    """data -> train (or import --from) -> quantize -> evaluate -> export ONNX -> generate C ->
    validate -> report."""
    backends = backend_list([args.backends], option="--backends")  # before torch loads
    from .backends.onnx import export_run
    from .quantize import quantize_run
    from .report_html import write_reports
    from .train import train_model, train_options

    start = time.time()
    from_onnx = getattr(args, "from_onnx", None)
    if from_onnx:
        from .importers import default_name, import_onnx, parse_normalize

        run_dir = Path(args.runs) / (args.name or default_name(from_onnx))
    else:
        run_dir = Path(args.runs) / (args.name or args.model)
    check_run_files(run_dir)
    if not from_onnx:  # an imported model may read the user's data (input_data.load)
        data.resolve_data_dir(args.data)
    if from_onnx:
        print(f"[1/7] importing {args.from_onnx} into {run_dir}")
        import_onnx(args.from_onnx, args.runs, run_dir.name, parse_normalize(args.normalize),
                    args.layout, args.data, input_kind=args.input)
    else:
        print(f"[1/7] training {args.model} into {run_dir}")
        _timed(run_dir, "train", train_model, args.model, run_dir, args.data,
               **train_options(args))
    print("[2/7] quantizing")
    quantize_run(run_dir, args.data, args.calibration, args.calib_images, args.qat_epochs)
    print("[3/7] evaluating (float and golden int8, full test set)")
    f = _timed(run_dir, "evaluate", evaluate_run, run_dir, args.data)
    accuracy = (f"float {f['float_accuracy']:.2%}, int8 {f['int8_accuracy']:.2%}"
                if "int8_accuracy" in f else "no labels")
    print(f"      {accuracy}, "
          f"{f['weight_bytes']:,} B weights, {f['peak_activation_bytes']:,} B peak activations, "
          f"{f['macs']:,} MACs")
    print("[4/7] exporting ONNX")
    _timed(run_dir, "export_onnx", export_run, run_dir)
    print("[5/7] generating C")
    _timed(run_dir, "generate_c", generate, run_dir, "c", None, "float", 20, args.data)
    print(f"[6/7] validating {', '.join(backends)} against golden")
    ok = validate_run(run_dir, backends, args.data)
    print("[7/7] writing reports")
    update_report(run_dir, {"seconds": {"build_total": round(time.time() - start, 2)}})
    for p in write_reports(run_dir):
        print(f"      {p}")
    report = load_report(run_dir)
    print(f"done in {report['seconds']['build_total']:.0f} s: {run_dir}")
    return 0 if ok else 1
