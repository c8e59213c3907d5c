"""Running a `.tflite` in TensorFlow Lite Micro's Python interpreter (`tflite-micro`).

TFLM is the reference of the `tflite` arithmetic: its reference kernels are what the
golden model reproduces. The interpreter runs one input at a time (batch 1, as on a chip).
As the validate backend `tflm` it runs the `.tflite` a run was imported from, or the
QGraph's own export for a tflite-arithmetic run that was not, with the QGraph's layouts
converted at the edges (CxHxW <-> NHWC, float edges <-> int8).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import MnistEdgeError


def tflm_interpreter(model: str | Path | bytes, preserve_all: bool = False):
    """A TFLM interpreter for a file or its bytes; `preserve_all` keeps every tensor
    readable after invoke (for op-by-op comparisons)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise MnistEdgeError("the tflite-micro package is not installed: "
                             "pip install tflite-micro") from None
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    config = (runtime.InterpreterConfig.kPreserveAllTensors if preserve_all
              else runtime.InterpreterConfig.kAllocationRecording)
    try:
        return runtime.Interpreter.from_bytes(data, intrepreter_config=config)
    except (RuntimeError, ValueError) as exc:
        raise MnistEdgeError(f"TFLite Micro cannot load the model ({exc})") from None


def run_tflm(model: str | Path | bytes, x: np.ndarray, interpreter=None) -> np.ndarray:
    """The first output for each input in `x` [N, ...] (each run as a batch of one)."""
    it = interpreter or tflm_interpreter(model)
    outs = []
    for i in range(len(x)):
        it.set_input(x[i:i + 1], 0)
        it.invoke()
        outs.append(np.array(it.get_output(0))[0])
    return np.stack(outs)


def tflite_source(run_dir: str | Path, model_file: str | None = None) -> Path:
    """The `.tflite` a run was imported from (recorded in import.json), checked unchanged."""
    from ..importers import IMPORT_FILE, is_tflite_run, load_import_info
    from ..importers.load import sha256

    if model_file is not None:
        return Path(model_file)
    if not is_tflite_run(run_dir):
        if load_import_info(run_dir).get("float") if (Path(run_dir) / IMPORT_FILE).is_file() \
                else False:
            raise MnistEdgeError(f"{run_dir}: imported from a float .tflite, which mnist-edge "
                                 "quantized itself; the tflm backend runs int8 .tflite files "
                                 "(compare with golden through onnxruntime or c instead)")
        raise MnistEdgeError(f"{run_dir}: the tflm backend runs the .tflite a run was imported "
                             "from; this run was not imported from one")
    info = load_import_info(run_dir)
    path = Path(info["source"])
    if not path.is_file():
        raise MnistEdgeError(f"{path}: the imported .tflite is gone (recorded in "
                             f"{Path(run_dir) / IMPORT_FILE})")
    if sha256(path) != info["sha256"]:
        raise MnistEdgeError(f"{path} changed since it was imported (sha256 differs); import "
                             "it again")
    return path


def to_tflite_input(graph, q: np.ndarray, t_in) -> np.ndarray:
    """The graph's int8 inputs [N, C, H, W] or [N, D] as the file takes them: NHWC, and
    dequantized (TFLite's own formula) where the file's input is float."""
    x = q.transpose(0, 2, 3, 1) if q.ndim == 4 else q
    x = np.ascontiguousarray(x).reshape(len(q), *t_in.shape[1:])
    if t_in.dtype == "float32":
        from ..ops.tflite_kernels import dequantize

        return dequantize(x, scale=graph.input.scale, zero_point=graph.input.zero_point)
    return x


def from_tflite_output(graph, y: np.ndarray, t_out) -> np.ndarray:
    """TFLM's outputs as the graph gives them: int8 (a float output quantized back with the
    DEQUANTIZE's own scale, which is exact) and CHW-flattened."""
    if t_out.dtype == "float32":
        from ..ops.tflite_kernels import quantize

        y = quantize(y, scale=graph.output.scale, zero_point=graph.output.zero_point)
    if y.ndim == 4:
        y = y.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(y).reshape(len(y), -1)


def check(run_dir: Path, graph, options: dict) -> None:
    """Refuse, before any input is read, a run that has no .tflite for TFLM to run."""
    from ..importers import is_tflite_run

    if (options.get("model_file") is None and not is_tflite_run(run_dir)
            and graph.arithmetic != "tflite"):
        raise MnistEdgeError(f"{run_dir}: the tflm backend runs a .tflite; this run was not "
                             f"imported from one and its QGraph is in the {graph.arithmetic} "
                             "arithmetic (quantize --arithmetic tflite gives one TFLite runs)")


def run(run_dir: Path, graph, inputs: np.ndarray, options: dict):
    """The validate backend `tflm`: the run's original `.tflite` in TFLite Micro, or, for a
    tflite-arithmetic QGraph that was not imported from one, the graph's own export
    (`export tflite`, written to a temporary file)."""
    import tempfile

    from ..importers import is_tflite_run
    from ..importers.tflite_reader import read_tflite
    from ..validate import BackendResult

    check(run_dir, graph, options)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-tflm-") as tmp:
        if options.get("model_file") is None and not is_tflite_run(run_dir):
            from ..backends.tflite import export_tflite

            path = export_tflite(graph, Path(tmp) / "model.int8.tflite")
            extra = {"tflite": "the QGraph's export (export tflite), in a temporary file"}
        else:
            path = tflite_source(run_dir, options.get("model_file"))
            extra = {"tflite": str(path)}
        model = read_tflite(path)
        t_in, t_out = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
        x = to_tflite_input(graph, graph.input_to_int8(inputs), t_in)
        start = time.perf_counter()
        y = run_tflm(path, x) if len(x) else np.zeros((0, *t_out.shape[1:]), np.int8)
        seconds = time.perf_counter() - start
    return BackendResult(from_tflite_output(graph, y, t_out),
                         latency_us=1e6 * seconds / max(len(x), 1), extra=extra)
