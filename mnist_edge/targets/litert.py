"""Running a `.tflite` in LiteRT (`ai-edge-litert`, the TensorFlow Lite runtime for PCs).

LiteRT is what most users validate their `.tflite` with before deploying it; its kernels are
not TFLite Micro's, and on some models and inputs they compute other int8 numbers (see the
LiteRT-vs-TFLM table in docs/BENCHMARKS.md). Two kernel sets:

* ``optimized``: LiteRT's builtin kernels (the default resolver without its default
  delegates, so XNNPACK does not step in): what a user's ``tf.lite.Interpreter`` runs;
* ``reference``: LiteRT's reference kernels (BUILTIN_REF), closer to TFLM's.

As the validate backends `litert` and `litert-ref` they run the run's `.tflite` (as the
`tflm` backend does) one input at a time, like a chip, and golden is compared with them
like with any backend: where LiteRT disagrees with TFLM the figures say so, they are never
adjusted. `scripts/tflm_parity.py --litert` uses the same functions for its table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MnistEdgeError

KERNELS = ("optimized", "reference")


def litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"


def interpreter(model: str | Path | bytes, kernels: str = "optimized",
                preserve_all: bool = False):
    """A LiteRT interpreter on one thread with `kernels` ("optimized" or "reference");
    `preserve_all` keeps every intermediate tensor readable after invoke."""
    if kernels not in KERNELS:
        raise MnistEdgeError(f"LiteRT kernels must be one of {', '.join(KERNELS)}, "
                             f"got {kernels!r}")
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise MnistEdgeError("the ai-edge-litert package is not installed: pip install "
                             "ai-edge-litert (or scripts/setup.sh)") from None
    resolver = {"reference": OpResolverType.BUILTIN_REF,
                "optimized": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[kernels]
    source = ({"model_content": model} if isinstance(model, bytes)
              else {"model_path": str(model)})
    try:
        it = Interpreter(**source, experimental_op_resolver_type=resolver, num_threads=1,
                         experimental_preserve_all_tensors=preserve_all)
        it.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MnistEdgeError(f"LiteRT cannot load the model ({first})") from None
    return it


def run_litert(it, x: np.ndarray) -> np.ndarray:
    """The first output for each input in `x` [N, ...] in the file's layout and type, each
    run as a batch of one."""
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    outs = []
    for i in range(len(x)):
        it.set_tensor(inp, x[i:i + 1])
        it.invoke()
        outs.append(it.get_tensor(out)[0].copy())
    return np.stack(outs)


def _run(run_dir: Path, graph, inputs: np.ndarray, options: dict[str, Any], kernels: str):
    from ..importers.tflite_reader import read_tflite
    from ..validate import BackendResult
    from .tflm import from_tflite_output, tflite_source, to_tflite_input

    path = tflite_source(run_dir, options.get("model_file"))
    model = read_tflite(path)
    t_in, t_out = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
    x = to_tflite_input(graph, graph.input_to_int8(inputs), t_in)
    it = interpreter(path, kernels)
    start = time.perf_counter()
    y = run_litert(it, x) if len(x) else np.zeros((0, *t_out.shape[1:]), np.int8)
    seconds = time.perf_counter() - start
    return BackendResult(from_tflite_output(graph, y, t_out),
                         latency_us=1e6 * seconds / max(len(x), 1),
                         extra={"tflite": str(path), "litert_kernels": kernels,
                                "litert_version": litert_version()})


def run(run_dir: Path, graph, inputs: np.ndarray, options: dict[str, Any]):
    """The validate backend `litert`: LiteRT's optimized builtin kernels."""
    return _run(run_dir, graph, inputs, options, "optimized")


def run_reference(run_dir: Path, graph, inputs: np.ndarray, options: dict[str, Any]):
    """The validate backend `litert-ref`: LiteRT's reference kernels."""
    return _run(run_dir, graph, inputs, options, "reference")
