"""Backend-vs-golden comparison: every backend must reproduce golden's int8 logits."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import golden, qgraph
from .errors import MnistEdgeError
from .report import set_backend_figures


@dataclass(frozen=True)
class Latency:
    """Batch-1 latency from single calls timed one by one, in microseconds.

    Every backend that times itself reports this one quantity (the C runner's own
    timer, onnxruntime's session.run), so their figures compare: the median call, and
    the 10th and 90th percentiles as the spread. A median of single calls leaves a time
    slice lost to another process in the tail; a pass's mean would not."""

    median_us: float
    p10_us: float
    p90_us: float
    calls: int

    @classmethod
    def of(cls, samples_us: Sequence[float]) -> Latency:
        """From the samples, with the nearest rank below as templates/c/host/runner.c."""
        s = sorted(samples_us)
        if not s:
            raise MnistEdgeError("no latency samples")
        p10, median, p90 = (float(s[int(q * (len(s) - 1))]) for q in (0.1, 0.5, 0.9))
        return cls(median, p10, p90, len(s))

    def figures(self) -> dict[str, Any]:
        """The report.json keys beside latency_us_per_image (which is the median)."""
        return {"latency_p10_us": self.p10_us, "latency_p90_us": self.p90_us,
                "latency_calls": self.calls}


@dataclass
class BackendResult:
    """What a backend runner returns: int8 logits [N, classes] and optional timing."""

    logits: np.ndarray
    latency_us: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# name -> "module:function"; each function is run(run_dir, graph, pixels, options) -> BackendResult
BACKENDS: dict[str, str] = {
    "golden": "mnist_edge.validate:run_golden",
    "tflm": "mnist_edge.targets.tflm:run",
    "litert": "mnist_edge.targets.litert:run",
    "litert-ref": "mnist_edge.targets.litert:run_reference",
    "onnxruntime": "mnist_edge.targets.onnxrt:run",
    "c": "mnist_edge.targets.host_c:run_float",
    "c-x86": "mnist_edge.targets.host_c:run_x86",
    "c-int": "mnist_edge.targets.host_c:run_int",
    "hls": "mnist_edge.targets.hls_csim:run",
    "wasm": "mnist_edge.targets.wasm:run",
    "qemu-m4": "mnist_edge.targets.qemu:run_m4",
    "qemu-m3": "mnist_edge.targets.qemu:run_m3",
    "qemu-m7": "mnist_edge.targets.qemu:run_m7",
    "qemu-m0": "mnist_edge.targets.qemu:run_m0",
    "qemu-m33": "mnist_edge.targets.qemu:run_m33",
    "qemu-m55": "mnist_edge.targets.qemu:run_m55",
    "unicorn-m0": "mnist_edge.targets.qemu:run_unicorn_m0",
    "qemu-rv32imc": "mnist_edge.targets.qemu:run_rv32imc",
    "qemu-rv32imfc": "mnist_edge.targets.qemu:run_rv32imfc",
    "rtl": "mnist_edge.targets.verilator:run",
    "rtl-uart": "mnist_edge.targets.verilator:run_uart",
    "rtl-netlist": "mnist_edge.targets.verilator:run_netlist",
}


def run_golden(run_dir: Path, graph: qgraph.QGraph, pixels: np.ndarray,
               options: dict[str, Any]) -> BackendResult:
    return BackendResult(golden.run_int8(graph, pixels))


def _backend_module(name: str) -> tuple[Any, str]:
    """The module implementing backend `name`, and its runner's name there."""
    if name not in BACKENDS:
        raise MnistEdgeError(f"unknown backend {name!r}; choose from: {', '.join(BACKENDS)}")
    module, func = BACKENDS[name].split(":")
    return importlib.import_module(module), func


def get_runner(name: str):
    module, func = _backend_module(name)
    return getattr(module, func)


def check_backend(name: str, run_dir: Path, graph: qgraph.QGraph,
                  options: dict[str, Any]) -> None:
    """A backend's refusals that need no inputs (its module's optional `check`), so that
    they come before the test set is read or fetched."""
    check = getattr(_backend_module(name)[0], "check", None)
    if check is not None:
        check(run_dir, graph, options)


def compare(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray | None
            ) -> dict[str, Any]:
    """The figures every backend reports, plus the first mismatch for debugging; accuracy
    only when there are labels (a user's data set without them, probe inputs)."""
    if logits.shape != reference.shape:
        raise MnistEdgeError(f"backend returned logits of shape {logits.shape}, "
                             f"golden has {reference.shape}")
    diff = np.abs(logits.astype(np.int16) - reference.astype(np.int16))
    pred, ref_pred = golden.predict(logits), golden.predict(reference)
    figures: dict[str, Any] = {
        "images": int(len(reference)),
        **({"accuracy": float(np.mean(pred == labels))} if labels is not None else {}),
        "top1_agreement_with_golden": float(np.mean(pred == ref_pred)),
        "exact_logit_fraction": float(np.mean(diff == 0)),
        "exact_input_fraction": (float(np.mean(~np.any(diff.reshape(len(diff), -1) > 0,
                                                       axis=1))) if len(diff) else 1.0),
        "max_abs_logit_diff": int(diff.max(initial=0)),
    }
    bad = np.argwhere(diff > 0)
    if len(bad):
        img, idx = (int(v) for v in bad[0])
        figures["first_mismatch"] = {"image": img, "logit": idx,
                                     "golden": int(reference[img, idx]),
                                     "backend": int(logits[img, idx])}
    return figures


def mismatch_message(name: str, figures: dict[str, Any]) -> str:
    m = figures["first_mismatch"]
    share = figures.get("exact_input_fraction")
    inputs = (f" ({1 - share:.2%} of inputs differ)" if share is not None else "")
    return (f"{name}: {figures['exact_logit_fraction']:.6f} of logits exact{inputs}; "
            "first mismatch at "
            f"image {m['image']}, logit {m['logit']}: golden {m['golden']}, {name} {m['backend']}")


def validate_backend(run_dir: str | Path, backend: str, pixels: np.ndarray,
                     labels: np.ndarray | None,
                     options: dict[str, Any] | None = None, *,
                     graph: qgraph.QGraph | None = None,
                     reference: np.ndarray | None = None) -> dict[str, Any]:
    """Run one backend on `pixels`, compare with golden, merge the figures into report.json.

    A caller validating several backends passes the run's `graph` and golden's logits on
    `pixels` (`reference`), so that neither is loaded or computed once per backend."""
    run_dir = Path(run_dir)
    runner = get_runner(backend)
    if graph is None:
        graph = qgraph.load_run(run_dir)
    if reference is None:
        reference = golden.run_int8(graph, pixels)
    result = runner(run_dir, graph, pixels, dict(options or {}))
    figures = compare(reference, np.asarray(result.logits), labels)
    if result.latency_us is not None:
        figures["latency_us_per_image"] = result.latency_us
    figures.update(result.extra)
    set_backend_figures(run_dir, backend, figures)
    return figures
