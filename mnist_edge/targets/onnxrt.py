"""The `onnxruntime` validation backend: run an exported int8 ONNX model on the CPU.

It refuses any ONNX file that is not an mnist-edge export of *this* QGraph (the
metadata carries the QGraph hash), so a stale or foreign model can never be
reported as matching golden.

On x86 CPUs without VNNI, onnxruntime's uint8 x int8 GEMM kernels (AVX2 vpmaddubsw)
add pairs of products in saturating int16, which breaks bit-exactness; the export
therefore gives uint8 activations uint8 weights (`backends.onnx._weights`), whose
kernels widen first. The figures still record whether this CPU has VNNI (`cpu_vnni`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import onnx as onnx_export
from ..errors import MnistEdgeError
from ..qgraph import QGraph
from ..validate import BackendResult, Latency

BATCH = 1000
LATENCY_RUNS = 200
WARMUP_RUNS = 20


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise MnistEdgeError("onnxruntime not found: install it with `pip install onnxruntime` "
                             "(or scripts/setup.sh)") from None
    return ort


def check_int8_model(path: Path, graph: QGraph) -> dict[str, str]:
    """Load `path` and make sure it is our int8 export of `graph`; return its metadata."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise MnistEdgeError(f"{path}: no such ONNX file") from None
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise MnistEdgeError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    g = model.graph
    if "mnist_edge_version" not in meta or not g.input or not g.output:
        raise MnistEdgeError(f"{path}: not an mnist-edge ONNX export (no mnist-edge metadata)")
    if meta.get("format") not in onnx_export.INT8_FORMATS:
        raise MnistEdgeError(f"{path}: not an int8 model (format {meta.get('format')!r}); "
                             "validate model.int8.onnx or model.int8.qdq.onnx")
    in_type = onnx.helper.np_dtype_to_tensor_dtype(graph.input_dtype)
    want_in = (in_type, [None, *graph.input.shape])
    want_out = (onnx.TensorProto.INT8, [None, graph.output.shape[0]])
    if (len(g.input) != 1 or _signature(g.input[0]) != want_in
            or _signature(g.output[0]) != want_out):
        shape = ",".join(map(str, graph.input.shape))
        raise MnistEdgeError(f"{path}: expected input {graph.input_encoding} [N,{shape}] and "
                             f"first output int8 [N,{graph.output.shape[0]}]")
    if meta.get("qgraph_hash") != graph.content_hash():
        raise MnistEdgeError(f"{path}: exported from a different QGraph (hash mismatch); "
                             "re-run `mnist-edge export onnx`")
    return meta


def _signature(value_info) -> tuple[int, list[int | None]]:
    t = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return t.elem_type, dims


def session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session; load errors become one-line MnistEdgeErrors."""
    ort = _import_ort()
    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MnistEdgeError(f"{path}: onnxruntime cannot load it ({first})") from None


def model_input(graph: QGraph, inputs: np.ndarray) -> np.ndarray:
    """The ONNX model's input: the batch in the graph's encoding as [N, *input shape]."""
    graph.input_to_int8(inputs)  # checks dtype and shape
    return np.asarray(inputs).reshape(-1, *graph.input.shape)


def run_logits(sess, graph: QGraph, inputs: np.ndarray) -> np.ndarray:
    """int8 outputs [N, size] for a batch in the graph's input encoding, in batches."""
    x = model_input(graph, inputs)
    name = sess.get_inputs()[0].name
    out = [sess.run([onnx_export.LOGITS_NAME], {name: x[i : i + BATCH]})[0]
           for i in range(0, len(x), BATCH)]
    return np.concatenate(out) if out else np.zeros((0, graph.output.size), np.int8)


def latency(sess, graph: QGraph, inputs: np.ndarray, runs: int = LATENCY_RUNS) -> Latency:
    """Single-image inferences timed one by one after warm-up, cycling through the
    inputs: the quantity the C runner's timer measures (`validate.Latency`)."""
    x = model_input(graph, inputs)
    name = sess.get_inputs()[0].name
    feeds = [{name: x[i : i + 1]} for i in range(min(len(x), runs))]
    for i in range(WARMUP_RUNS):
        sess.run([onnx_export.LOGITS_NAME], feeds[i % len(feeds)])
    times = []
    for i in range(runs):
        feed = feeds[i % len(feeds)]
        start = time.perf_counter_ns()
        sess.run([onnx_export.LOGITS_NAME], feed)
        times.append((time.perf_counter_ns() - start) / 1000.0)
    return Latency.of(times)


def float_figures(run_dir: Path, graph: QGraph, pixels: np.ndarray) -> dict[str, Any]:
    """Max |logit difference| of `<run>/model.onnx` vs the PyTorch model on pixels / 255."""
    from .. import fgraph as fgraph_mod

    path = run_dir / onnx_export.FLOAT_FILE
    try:
        if not path.exists():
            fg = fgraph_mod.load(fgraph_mod.find_in_run(run_dir))
            onnx_export.export_float(fg, path, graph.content_hash())
    except MnistEdgeError as exc:
        return {"float_max_abs_diff_vs_pytorch": None, "float_note": str(exc)}
    x = model_input(graph, pixels).astype(np.float32)
    if graph.input_encoding == "int8":  # features: the float model reads their real values
        images = (x - np.float32(graph.input.zero_point)) * np.float32(graph.input.scale)
    else:
        images = x / np.float32(255)
    sess = session(path)
    name = sess.get_inputs()[0].name
    onnx_logits = np.concatenate([sess.run(None, {name: images[i:i + BATCH]})[0]
                                  for i in range(0, len(images), BATCH)])
    reference, source = _float_reference(run_dir, images)
    diff = float(np.abs(onnx_logits - reference).max(initial=0.0))
    return {"float_max_abs_diff_vs_pytorch": diff, "float_reference": source}


def _float_reference(run_dir: Path, images: np.ndarray) -> tuple[np.ndarray, str]:
    """PyTorch logits if the trainer can load the checkpoint, else the folded float graph."""
    try:
        import torch

        from ..trainer import load_model

        model = load_model(run_dir)
    except (ImportError, AttributeError, FileNotFoundError, MnistEdgeError):
        from .. import fgraph as fgraph_mod

        fg = fgraph_mod.load(fgraph_mod.find_in_run(run_dir))
        return fgraph_mod.run_float(fg, images), "fgraph.run_float (PyTorch model unavailable)"
    with torch.no_grad():
        out = [model(torch.from_numpy(images[i:i + BATCH])).numpy()
               for i in range(0, len(images), BATCH)]
    return np.concatenate(out), "pytorch"


def cpu_has_vnni() -> bool | None:
    """True/False on Linux x86 (from /proc/cpuinfo), None where we cannot tell."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    if "avx2" not in flags:
        return None
    return "avx512_vnni" in flags or "avx_vnni" in flags


def run(run_dir: Path, graph: QGraph, pixels: np.ndarray, options: dict[str, Any]) -> BackendResult:
    """Validation backend: int8 logits from onnxruntime, latency at batch 1 on one thread."""
    run_dir = Path(run_dir)
    model_file = options.get("model_file")
    path = Path(model_file) if model_file else run_dir / onnx_export.INT8_FILE
    if not model_file and not path.exists():
        onnx_export.export_int8(graph, path, options.get("activations", "uint8"))
    meta = check_int8_model(path, graph)
    logits = run_logits(session(path), graph, pixels)
    timing = latency(session(path, threads=1), graph, pixels) if len(pixels) else None
    extra: dict[str, Any] = {**(timing.figures() if timing else {}),
                             "model_file": path.name, "format": meta.get("format"),
                             "activations": meta.get("activations"),
                             "onnxruntime_version": _import_ort().__version__,
                             "cpu_vnni": cpu_has_vnni()}
    if not options.get("skip_float") and graph.input_encoding == "uint8":  # float: pixels
        extra.update(float_figures(run_dir, graph, pixels))
    return BackendResult(logits=logits, latency_us=timing.median_us if timing else None,
                         extra=extra)
