"""The Python API: what a notebook imports, and what every CLI command calls.

    import mnist_edge as me
    m = me.train("edge")                     # or me.load / from_torch / from_keras / ...
    m.quantize()
    m.evaluate()                             # Evaluation: accuracies, confusion
    m.validate("c", "qemu-m4", limit=100)    # Validation: one row per backend
    m.predict(x, backend="c")                # Prediction: int8 logits, scores, classes
    m.generate("c", out="firmware/model")

A `Model` is a run folder (`runs/<name>/`): every step writes its files and figures
there, exactly as the CLI does, so a notebook and a terminal can take turns on one run.
Results are plain dataclasses holding NumPy arrays and dicts, with a readable `repr` and
an HTML table in Jupyter. Every user-facing failure is one `MnistEdgeError` whose message
is the line the CLI prints; nothing here exits, parses arguments or prints.
"""

from __future__ import annotations

import functools
import html
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .errors import MnistEdgeError, first_line, one_line
from .inputs import DataSource

__all__ = [
    "Analysis", "Bench", "Evaluation", "Model", "Prediction", "Report", "Validation",
    "from_keras", "from_onnx", "from_tflite", "from_torch", "load", "train",
]

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(fn: F) -> F:
    """Turn the file and format errors the CLI words in one line into MnistEdgeError with
    that line; bugs keep their own type and traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MnistEdgeError:
            raise
        except Exception as exc:
            message, code = one_line(exc)
            if code == 2:
                raise MnistEdgeError(message) from exc
            raise

    return wrapper  # type: ignore[return-value]


# ------------------------------------------------------------------------ results
def _table_html(rows: Iterable[Iterable[Any]], header: Iterable[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row)
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    from .report_html import format_value

    if value is None or isinstance(value, bool):
        return "" if value is None else str(value)
    return format_value(value)


def _png_html(path: Path, title: str) -> str:
    from .report_html import png_data_uri

    if not path.is_file():
        return ""
    return f"<p><b>{html.escape(title)}</b><br><img src='{png_data_uri(path)}'></p>"


@dataclass
class Evaluation:
    """Float (folded graph) and int8 (golden) figures on a test set; accuracies are None
    when the data has no labels."""

    model: str
    inputs: int
    float_accuracy: float | None
    int8_accuracy: float | None
    int8_float_agreement: float
    confusion: np.ndarray | None
    figures: dict[str, Any] = field(repr=False)
    run_dir: Path = field(repr=False)

    def __repr__(self) -> str:
        acc = ("no labels" if self.int8_accuracy is None else
               f"float {self.float_accuracy:.2%}, int8 {self.int8_accuracy:.2%}")
        return (f"Evaluation({self.model}: {acc}, agreement {self.int8_float_agreement:.2%} "
                f"on {self.inputs:,} inputs)")

    def _repr_html_(self) -> str:
        keys = ("float_accuracy", "int8_accuracy", "int8_float_agreement", "test_images",
                "params", "macs", "weight_bytes", "peak_activation_bytes", "c_arena_bytes")
        rows = [(k, self.figures[k]) for k in keys if k in self.figures]
        return (f"<h4>{html.escape(self.model)}: evaluation</h4>"
                + _table_html(rows, ("figure", "value"))
                + _png_html(self.run_dir / "confusion.png", "int8 confusion matrix")
                + _png_html(self.run_dir / "misclassified.png", "misclassified (int8)"))


@dataclass
class Validation:
    """Each backend's figures against golden, as `validate` writes them to report.json."""

    model: str
    backends: dict[str, dict[str, Any]]

    @property
    def all_exact(self) -> bool:
        """True when every backend reproduced golden's int8 logits bit for bit."""
        from .pipeline import all_exact

        return all_exact(self.backends)

    def __repr__(self) -> str:
        rows = ", ".join(f"{name}: {f['exact_logit_fraction']:.4%} exact"
                         for name, f in self.backends.items())
        return f"Validation({self.model}: {rows})"

    def _repr_html_(self) -> str:
        header = ("backend", "inputs", "accuracy", "exact logits", "max |diff| (LSB)",
                  "latency (us/input)", "seconds")
        rows = [(name, f["images"], f.get("accuracy"), f["exact_logit_fraction"],
                 f["max_abs_logit_diff"], f.get("latency_us_per_image"), f["seconds"])
                for name, f in self.backends.items()]
        verdict = "every backend exact" if self.all_exact else "NOT exact"
        return (f"<h4>{html.escape(self.model)}: validation ({verdict})</h4>"
                + _table_html(rows, header))


@dataclass
class Prediction:
    """A batch through one backend: int8 `logits` [N, K], `scores` (the logits
    dequantized with the output's scale and zero point) and the argmax `classes`. The
    "float" backend (the folded float graph) has scores only."""

    backend: str
    logits: np.ndarray | None
    scores: np.ndarray
    classes: np.ndarray

    def __repr__(self) -> str:
        shown = ", ".join(map(str, self.classes[:10].tolist()))
        more = ", ..." if len(self.classes) > 10 else ""
        return (f"Prediction({self.backend}: {len(self.classes)} inputs, "
                f"classes [{shown}{more}])")


@dataclass
class Analysis:
    """Per-layer parameters, MACs, flash and RAM (`mnist-edge analyze`)."""

    model: str
    layers: list[dict[str, Any]] = field(repr=False)
    totals: dict[str, Any]
    text: str = field(repr=False)

    def __str__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        header = ("layer", "kind", "output", "params", "MACs", "weight B", "act. B",
                  "max |acc|")
        rows = [(r["name"], r["kind"], "x".join(map(str, r["output_shape"])), r["params"],
                 r["macs"], r["weight_bytes"], r["activation_bytes"], r["max_accumulator"])
                for r in self.layers]
        totals = _table_html(sorted(self.totals.items()), ("total", "value"))
        return (f"<h4>{html.escape(self.model)}: layers</h4>" + _table_html(rows, header)
                + totals)


@dataclass
class Bench:
    """Exact instruction counts, flash and RAM of one inference on one core."""

    model: str
    core: str
    instructions: int
    ram_bytes: int
    figures: dict[str, Any] = field(repr=False)
    text: str = field(repr=False)

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text


@dataclass
class Report:
    """The run's report files (report.md, report.html) and its report.json figures."""

    paths: list[Path]
    figures: dict[str, Any] = field(repr=False)

    def _repr_markdown_(self) -> str:
        return self.paths[0].read_text()


# ------------------------------------------------------------------------ the model
class Model:
    """A model in a run folder: trained or imported, then quantized to a QGraph."""

    def __init__(self, run_dir: str | Path) -> None:
        from .pipeline import run_folder

        self.run_dir = run_folder(str(run_dir))

    @property
    def name(self) -> str:
        return self.run_dir.name

    def __repr__(self) -> str:
        state = "quantized" if self.quantized else "float only"
        return f"Model({self.name!r}, {state}, run_dir={str(self.run_dir)!r})"

    def _repr_html_(self) -> str:
        if not self.quantized:
            return f"<p>{html.escape(repr(self))}</p>"
        return (f"<p>{html.escape(repr(self))}</p>" + self.analyze()._repr_html_()
                + _png_html(self.run_dir / "curves.png", "training curves"))

    @property
    def quantized(self) -> bool:
        return any(self.run_dir.glob("*.qgraph.json"))

    @property
    def qgraph(self):
        """The int8 QGraph (the single source every backend generates from)."""
        from . import qgraph

        return qgraph.load_run(self.run_dir)

    @property
    def float_graph(self):
        """The folded float graph the QGraph was quantized from."""
        from . import fgraph

        return fgraph.load(fgraph.find_in_run(self.run_dir))

    @_user_errors
    def quantize(self, calibration: str = "percentile", calib_images: int = 2000,
                 qat_epochs: int | None = None, data: DataSource = None,
                 progress: bool = True, arithmetic: str = "onnx") -> Model:
        """Fold BatchNorm, calibrate on `data` (default: MNIST's training images) and
        quantize to an int8 QGraph; QAT epochs default to the model's. `arithmetic`
        "tflite" quantizes as TFLite's converter does, for TFLite Micro's integer contract
        (then `export_tflite`)."""
        from .quantize import quantize_run

        quantize_run(self.run_dir, data, calibration, calib_images, qat_epochs,
                     quiet=not progress, arithmetic=arithmetic)
        return self

    @_user_errors
    def evaluate(self, data: DataSource = None, limit: int | None = None) -> Evaluation:
        """Float and int8 accuracy (golden) on the test set, written to report.json."""
        from .pipeline import evaluate_run

        f = evaluate_run(self.run_dir, data, limit)
        confusion = f.get("int8_confusion")
        return Evaluation(f["model"], f["test_images"], f.get("float_accuracy"),
                          f.get("int8_accuracy"), f["int8_float_agreement"],
                          None if confusion is None else np.array(confusion), f, self.run_dir)

    @_user_errors
    def validate(self, *backends: str, data: DataSource = None, limit: int | None = None,
                 inputs: np.ndarray | None = None, labels: np.ndarray | None = None,
                 fpga: str | None = None, lanes: int | None = None,
                 model_file: str | None = None, progress: bool = True,
                 on_result: Callable[[str, dict[str, Any]], None] | None = None
                 ) -> Validation:
        """Run each backend (e.g. "c", "qemu-m4", "rtl") and compare its int8 logits with
        golden's, bit for bit. `inputs` (already in the graph's encoding) replaces the test
        set; `on_result(name, figures)` sees each backend as it finishes."""
        from tqdm.auto import tqdm

        from .pipeline import backend_list, validate_run

        names = backend_list(list(backends) or ["golden"], model_file)
        options = {k: v for k, v in (("fpga", fpga), ("lanes", lanes)) if v}
        bar = tqdm(total=len(names), desc="validate", unit="backend", disable=not progress,
                   leave=False)

        def done(name: str, figures: dict[str, Any]) -> None:
            bar.update(1)
            if on_result is not None:
                on_result(name, figures)

        try:
            results = validate_run(self.run_dir, names, data, limit, model_file, options,
                                   inputs, labels, on_result=done)
        finally:
            bar.close()
        return Validation(self.name, results)

    @_user_errors
    def predict(self, x: np.ndarray, backend: str = "golden") -> Prediction:
        """A batch of raw inputs (uint8 pixels or float features, in the model's layout)
        through `backend` ("golden", "float", or any validate backend such as "c")."""
        from . import fgraph, golden
        from . import inputs as input_data
        from .validate import get_runner

        if backend == "float":  # needs only the float graph: an import, before quantize
            folded = self.float_graph
            batch = input_data.load((np.asarray(x), None), input_data.spec_of(folded)).x
            scores = fgraph.run_float(folded, fgraph.float_input(folded, batch))
            scores = np.asarray(scores, np.float32)
            return Prediction("float", None, scores,
                              np.argmax(scores, axis=1))
        graph = self.qgraph
        batch = input_data.load((np.asarray(x), None), input_data.spec_of(graph)).x
        q = input_data.graph_input(graph, batch)
        if backend == "golden":
            logits = golden.run_int8(graph, q)
        else:
            logits = np.asarray(get_runner(backend)(self.run_dir, graph, q, {}).logits)
        scores = golden.dequantize(logits, graph.output).astype(np.float32)
        return Prediction(backend, logits.astype(np.int8), scores, golden.predict(logits))

    @_user_errors
    def generate(self, target: str = "c", out: str | Path | None = None, *,
                 prefix: str | None = None, requant: str = "float", vectors: int = 20,
                 data: DataSource = None, force: bool = False, fpga: str | None = None,
                 lanes: int | None = None) -> Path:
        """Generate "c", "hls", "rtl" or "web" from the QGraph into `out` (default: a
        folder in the run); the same QGraph always gives byte-identical files."""
        from .pipeline import generate

        return generate(self.run_dir, target, None if out is None else str(out), requant,
                        vectors, data, force, fpga, lanes, prefix)

    @_user_errors
    def export_onnx(self, format: str = "qoperator", activations: str = "uint8") -> list[Path]:
        """The float and int8 ONNX files (model.onnx, model.int8.onnx; qdq adds one)."""
        from .backends.onnx import export_run

        return export_run(self.run_dir, format, activations)

    @_user_errors
    def export_tflite(self, out: str | Path | None = None) -> Path:
        """The QGraph (tflite arithmetic) as an int8 .tflite that TFLite Micro runs with
        golden's numbers; default `<run>/model.int8.tflite`. Written atomically."""
        from .backends.tflite import export_run

        return export_run(self.run_dir, out)

    @_user_errors
    def bench(self, mcu: str = "cortex-m4", size: bool = False,
              data: DataSource = None) -> Bench:
        """Build the firmware for `mcu` and count the instructions of one inference in an
        instruction-set emulator; flash and RAM from the linker map."""
        from .report import update_report
        from .targets.mcu_bench import bench, format_table

        graph = self.qgraph
        figures = bench(self.run_dir, graph, mcu, size, data_dir=data)
        update_report(self.run_dir, {"mcu_bench": {mcu + ("-Os" if size else ""): figures}})
        return Bench(graph.name, mcu, figures["instructions"], figures["ram_bytes"], figures,
                     format_table(graph.name, mcu, figures))

    @_user_errors
    def analyze(self) -> Analysis:
        """Per-layer parameters, MACs, weight bytes, activations and accumulator bounds."""
        from .analyze import format_table, summarize

        graph = self.qgraph
        s = summarize(graph)
        totals = {k: v for k, v in s.items() if k != "layers"}
        return Analysis(graph.name, s["layers"], totals, format_table(graph))

    @_user_errors
    def report(self) -> Report:
        """Write report.md and report.html from report.json (plots embedded)."""
        from .report import load_report
        from .report_html import write_reports

        return Report(write_reports(self.run_dir), load_report(self.run_dir))

    @_user_errors
    def save(self, to: str | Path) -> Model:
        """Copy the run folder to `to` (a new folder) and return the model there."""
        from .paths import atomic_dir

        target = Path(to)
        if target.exists():
            raise MnistEdgeError(f"{target} exists; save to a new folder")
        with atomic_dir(target) as tmp:
            shutil.copytree(self.run_dir, tmp, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.lock"))
        return Model(target)


# ------------------------------------------------------------------------ entry points
@_user_errors
def load(run_dir: str | Path) -> Model:
    """The model in an existing run folder (e.g. "runs/edge")."""
    return Model(run_dir)


@_user_errors
def train(model: str = "edge", name: str | None = None, runs: str | Path = "runs",
          data: str | None = None, *, epochs: int | None = None, lr: float | None = None,
          batch_size: int | None = None, seed: int = 0, patience: int | None = None,
          augment: bool | None = None, teacher: str | None = None,
          train_limit: int | None = None, threads: int | None = None,
          ema: float | None = None, weight_decay: float | None = None,
          label_smoothing: float | None = None, max_shift: float | None = None,
          max_degrees: float | None = None, max_scale: float | None = None,
          progress: bool = True, verbose: bool = False) -> Model:
    """Train a zoo model (e.g. "edge", the default) into `<runs>/<name>`; every option left
    None takes the model's own default (`mnist_edge.models.ZOO`). `ema` keeps a moving
    average of the weights as the result."""
    from .model_names import MODEL_NAMES

    if model not in MODEL_NAMES:
        raise MnistEdgeError(f"unknown model {model!r}; choose from: {', '.join(MODEL_NAMES)}")
    from .report import check_run_files, update_report
    from .trainer import train_model

    run_dir = Path(runs) / (name or model)
    check_run_files(run_dir)
    history = train_model(model, run_dir, data, epochs=epochs, lr=lr, batch_size=batch_size,
                          seed=seed, patience=patience, augment_data=augment,
                          train_limit=train_limit, threads=threads, teacher=teacher,
                          ema=ema, weight_decay=weight_decay, label_smoothing=label_smoothing,
                          max_shift=max_shift, max_degrees=max_degrees, max_scale=max_scale,
                          quiet=not verbose, progress=progress)
    update_report(run_dir, {"seconds": {"train": history["train_seconds"]}})
    return Model(run_dir)


@_user_errors
def from_onnx(path: str | Path, name: str | None = None, runs: str | Path = "runs", *,
              normalize: tuple[Any, Any] | None = None, layout: str = "auto",
              input: str = "pixels", data: DataSource = None) -> Model:
    """Import a float ONNX model (PyTorch, Keras, tf2onnx); `normalize=(mean, std)` when
    it expects (pixel/255 - mean)/std, `input="features"` when it reads float features."""
    from .importers import import_onnx

    run_dir, _ = import_onnx(path, runs, name, normalize, layout, data, input_kind=input)
    return Model(run_dir)


@_user_errors
def from_tflite(path: str | Path, name: str | None = None, runs: str | Path = "runs") -> Model:
    """Import an int8 .tflite as it is: a QGraph in the tflite arithmetic (no calibration,
    so there is nothing to quantize); a float .tflite becomes a float graph, to quantize
    like an ONNX import."""
    from .importers import import_tflite

    run_dir, _ = import_tflite(path, runs, name)
    return Model(run_dir)


@_user_errors
def from_torch(module: Any, example_input: Any, name: str = "torch-model",
               runs: str | Path = "runs", *, normalize: tuple[Any, Any] | None = None,
               input: str = "pixels", data: DataSource = None) -> Model:
    """A PyTorch module, exported with torch.onnx (TorchScript exporter, dynamic batch) and
    imported as `from_onnx` would; `example_input` is one batch of what it reads, e.g.
    `torch.zeros(1, 1, 28, 28)`. The ONNX file is kept in the run as source.onnx."""
    import warnings

    import torch

    module = module.eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        path = Path(tmp) / f"{name}.onnx"
        try:
            torch.onnx.export(module, (example_input,), str(path), dynamo=False,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                              opset_version=17)
        except Exception as exc:  # torch's exporter errors are long: the first line
            raise MnistEdgeError(f"torch.onnx.export failed: {first_line(exc)}") from exc
        from .importers import import_exported

        run_dir, _ = import_exported(path, runs, name, normalize, input, data)
        return Model(run_dir)


@_user_errors
def from_keras(model: Any, name: str | None = None, runs: str | Path = "runs", *,
               normalize: tuple[Any, Any] | None = None, input: str = "pixels",
               data: DataSource = None) -> Model:
    """A Keras 3 model, or the path of a `.keras` / legacy `.h5` file (checked before Keras
    reads it: only built-in layers the importer maps, no Lambda or custom objects). Keras
    runs on the torch backend (KERAS_BACKEND=torch); the model is exported with its own
    `model.export(format="onnx")` and imported as `from_onnx` would (channels-last inputs
    are found from the graph). The ONNX file is kept in the run as source.onnx. `name`
    defaults to the file's name, or "keras-model"."""
    from .importers.keras_file import import_keras

    run_dir, _ = import_keras(model, runs, name, normalize, input, data)
    return Model(run_dir)

