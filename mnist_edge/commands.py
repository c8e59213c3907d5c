"""The CLI's commands: each takes the parsed arguments, calls the Python API (`api`) and
prints what it returned. No work happens here that a notebook could not do the same way.

(`data`, `flash`, `synth` and `demo` are tools around a run rather than steps of the
model's life, and keep their handlers beside their code.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from . import api
from .errors import MnistEdgeError


def import_command(args: Any) -> int:
    if str(args.model).lower().endswith(".tflite"):
        if args.normalize or args.layout != "auto":
            raise MnistEdgeError("--normalize and --layout apply to ONNX models; a .tflite "
                                 "keeps its own input quantization and layout")
        m = api.from_tflite(args.model, args.name, args.runs)
        print(_tflite_import_line(args.model, m))
        return 0
    m = _import_float_model(args.model, args.name, args)
    print(_onnx_import_line(args.model, m))
    return 0


def _import_float_model(path: str, name: str | None, args: Any) -> api.Model:
    """A float model file (Keras `.keras`/`.h5`, else ONNX) through the API, with the
    import options `import` and `build --from` share."""
    from .importers import parse_normalize
    from .importers.keras_file import is_keras_file

    if is_keras_file(path):
        if args.layout != "auto":
            raise MnistEdgeError("--layout applies to ONNX models; a Keras model's layout is "
                                 "found from its export")
        return api.from_keras(path, name, args.runs, normalize=parse_normalize(args.normalize),
                              input=args.input, data=args.data)
    return api.from_onnx(path, name, args.runs, normalize=parse_normalize(args.normalize),
                         layout=args.layout, input=args.input, data=args.data)


def _tflite_import_line(source: str, m: api.Model) -> str:
    from .importers import load_import_info

    doc = load_import_info(m.run_dir)
    if doc.get("float"):
        ops = [k for entry in doc["ops"] for k in entry["fgraph"] if not k.startswith("(")]
        check = doc["float_check"]
        return (f"imported {source} -> {m.run_dir}: a float .tflite, {len(doc['ops'])} "
                f"TFLite operators -> {len(ops)} float-graph ops (max |diff| vs TFLite Micro "
                f"{check['max_abs_diff']:.3g} on {check['inputs']}); next: mnist-edge "
                f"quantize {m.run_dir}")
    kinds = [k for entry in doc["ops"] for k in entry["qgraph"] if not k.startswith("(")]
    return (f"imported {source} -> {m.run_dir}: {len(doc['ops'])} TFLite operators -> "
            f"{len(kinds)} QGraph ops in the tflite arithmetic, input "
            f"{doc['input']['encoding']} {'x'.join(map(str, doc['input']['qgraph_shape']))}, "
            f"output {doc['output']['qgraph_shape'][0]} values")


def _onnx_import_line(source: str, m: api.Model) -> str:
    from .importers import load_import_info

    doc = load_import_info(m.run_dir)
    c = doc["float_check"]
    dropped = ", ".join(sorted({d["op_type"] for d in doc["dropped"]})) or "nothing"
    repaired = "; ".join(r["repair"] for r in doc.get("repaired") or [])
    if repaired:  # what the file needed before onnx.checker took it
        dropped += f" (repaired: {repaired})"
    return (f"imported {source} -> {m.run_dir}: {len(doc['ops'])} ops "
            f"({', '.join(dict.fromkeys(doc['ops']))}), input "
            f"[N,{','.join(map(str, doc['input_shape']))}] {doc['input_kind']}, "
            f"layout {doc['layout']}, input norm {doc['input_norm'] or 'none'}, dropped "
            f"{dropped}; float check vs onnxruntime: max |diff| {c['max_abs_logit_diff']:.2e} "
            f"({c['relative_diff']:.1e} of the logit range) on {c['images']} inputs "
            f"({c['data']})")


def _train_options(args: Any) -> dict[str, Any]:
    """`api.train`'s options from the ones `train` and `build` share."""
    return {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
            "seed": args.seed, "patience": args.patience,
            "augment": False if args.no_augment else None, "train_limit": args.train_limit,
            "threads": args.threads, "teacher": args.teacher, "ema": args.ema,
            "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing,
            "max_shift": args.max_shift, "max_degrees": args.max_degrees,
            "max_scale": args.max_scale}


def train_command(args: Any) -> int:
    m = api.train(args.model, args.name, args.runs, args.data, verbose=True,
                  **_train_options(args))
    print(f"trained {args.model} -> {m.run_dir / 'checkpoint.pt'}")
    return 0


def quantize_command(args: Any) -> int:
    m = api.load(args.run).quantize(args.calibration, args.calib_images, args.qat_epochs,
                                    args.data, arithmetic=args.arithmetic)
    graph = m.qgraph
    from .qgraph import find_in_run

    print(f"quantized {graph.name}: {len(graph.ops)} ops, {graph.arithmetic} arithmetic, "
          f"hash {graph.content_hash()[:16]} -> {find_in_run(m.run_dir)}")
    return 0


def analyze_command(args: Any) -> int:
    a = api.load(args.run).analyze()
    print(json.dumps({**a.totals, "layers": a.layers}, indent=2) if args.json else a.text)
    return 0


def evaluate_command(args: Any) -> int:
    print(_evaluation_line(api.load(args.run).evaluate(args.data, args.limit)))
    return 0


def _evaluation_line(e: api.Evaluation) -> str:
    f = e.figures
    accuracy = (f"float {e.float_accuracy:.2%}  int8 {e.int8_accuracy:.2%}  "
                if e.int8_accuracy is not None else "no labels: accuracy not measured; ")
    return (f"{e.model}: {accuracy}agreement {e.int8_float_agreement:.2%} on "
            f"{e.inputs:,} inputs (golden {f['golden_seconds']} s)")


def export_command(args: Any) -> int:
    model = api.load(args.run)
    if args.target == "tflite":
        if args.format or args.activations:
            raise MnistEdgeError("--format and --activations apply to export onnx; a .tflite "
                                 "is int8 as its QGraph says")
        print(f"wrote {model.export_tflite(args.out)}")
        return 0
    if args.out:
        raise MnistEdgeError("-o/--out applies to export tflite; export onnx writes into the "
                             "run folder")
    for path in model.export_onnx(args.format or "qoperator", args.activations or "uint8"):
        print(f"wrote {path}")
    return 0


def generate_command(args: Any) -> int:
    out = api.load(args.run).generate(args.target, args.out, prefix=args.prefix,
                                      requant=args.requant, vectors=args.vectors,
                                      data=args.data, force=args.force, fpga=args.fpga,
                                      lanes=args.lanes)
    print(f"generated {args.target} -> {out}")
    return 0


def validate_command(args: Any) -> int:
    from .pipeline import backend_list, validation_line
    from .probe_inputs import parse_inputs_spec, probe_batch

    backends = backend_list(args.backend, args.model_file)
    m = api.load(args.run)
    inputs = None
    kind, count = parse_inputs_spec(args.inputs or "mnist")
    if kind == "random":
        inputs = probe_batch(m.qgraph, count, seed=args.seed)
    what = "images" if inputs is None else "inputs"
    result = m.validate(*backends, data=args.data, limit=args.limit, inputs=inputs,
                        fpga=args.fpga, lanes=args.lanes, model_file=args.model_file,
                        progress=False,
                        on_result=lambda name, f: print(validation_line(name, f, what),
                                                        flush=True))
    return 0 if result.all_exact else 1


def bench_command(args: Any) -> int:
    print(api.load(args.run).bench(args.mcu, args.size, args.data).text)
    return 0


def report_command(args: Any) -> int:
    r = api.load(args.run).report()
    print("wrote " + ", ".join(str(p) for p in r.paths))
    return 0


def build_command(args: Any) -> int:
    """data -> train (or import --from) -> quantize -> evaluate -> export ONNX -> generate C ->
    validate -> report, each step through the API."""
    from .pipeline import backend_list, validation_line
    from .report import check_run_files, load_report, update_report

    backends = backend_list([args.backends], option="--backends")  # before torch loads
    start = time.time()
    if args.from_file:
        from .importers import default_name

        if str(args.from_file).lower().endswith(".tflite"):
            raise MnistEdgeError(f"{args.from_file}: build --from takes a float model (.onnx, "
                                 ".keras, .h5) to quantize; an int8 .tflite is already "
                                 "quantized: mnist-edge import it, then generate and validate")
        run_dir = Path(args.runs) / (args.name or default_name(args.from_file))
    else:
        run_dir = Path(args.runs) / (args.name or args.model)
    check_run_files(run_dir)
    if args.from_file:
        print(f"[1/7] importing {args.from_file} into {run_dir}")
        m = _import_float_model(args.from_file, run_dir.name, args)
    else:
        from . import data

        data.resolve_data_dir(args.data)  # fetch MNIST first, with its own messages
        print(f"[1/7] training {args.model} into {run_dir}")
        m = api.train(args.model, run_dir.name, args.runs, args.data, verbose=True,
                      **_train_options(args))
    print("[2/7] quantizing")
    m.quantize(args.calibration, args.calib_images, args.qat_epochs, args.data)
    print("[3/7] evaluating (float and golden int8, full test set)")
    e = _timed(m, "evaluate", m.evaluate, args.data)
    f = e.figures
    accuracy = (f"float {e.float_accuracy:.2%}, int8 {e.int8_accuracy:.2%}"
                if e.int8_accuracy is not None else "no labels")
    print(f"      {accuracy}, {f['weight_bytes']:,} B weights, "
          f"{f['peak_activation_bytes']:,} B peak activations, {f['macs']:,} MACs")
    print("[4/7] exporting ONNX")
    _timed(m, "export_onnx", m.export_onnx)
    print("[5/7] generating C")
    _timed(m, "generate_c", m.generate, "c", data=args.data)
    print(f"[6/7] validating {', '.join(backends)} against golden")
    result = m.validate(*backends, data=args.data, progress=False,
                        on_result=lambda name, f: print(validation_line(name, f, "images"),
                                                        flush=True))
    print("[7/7] writing reports")
    update_report(run_dir, {"seconds": {"build_total": round(time.time() - start, 2)}})
    for p in m.report().paths:
        print(f"      {p}")
    print(f"done in {load_report(run_dir)['seconds']['build_total']:.0f} s: {run_dir}")
    return 0 if result.all_exact else 1


def _timed(m: api.Model, stage: str, fn: Any, *a: Any, **kw: Any) -> Any:
    from .report import update_report

    start = time.time()
    result = fn(*a, **kw)
    update_report(m.run_dir, {"seconds": {stage: round(time.time() - start, 2)}})
    return result
