"""One input through every backend this machine can run, without rebuilding.

`mnist-edge validate` builds each backend per call; a demo answering one drawing at a
time cannot wait for gcc or QEMU firmware builds. `Engine` builds every backend once,
at start-up, into one temporary folder with the same building blocks the validation
runners use (generate_c + compile_runner, generate_hls + compile_csim, build_firmware,
the onnxruntime export), then each request only runs them. A backend whose tool is
missing stays in the table with the reason, so the page can say so.

An input is one row in the QGraph's layout and encoding: uint8 [C, H, W] pixels of any
size, int8 [C, H, W] features or an int8 vector [K]; the C runners get it HWC.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import fgraph, golden, qgraph
from ..errors import MnistEdgeError

# The backends the demo offers, in display order (names as in validate.BACKENDS).
DEMO_BACKENDS = ("golden", "onnxruntime", "c", "c-int", "hls", "qemu-m4")
# A batch [N, *input shape] in the graph's encoding -> int8 logits [N, classes].
Runner = Callable[[np.ndarray], np.ndarray]


def _prepare_golden(graph: qgraph.QGraph, run_dir: Path, work: Path) -> Runner:
    return lambda pixels: golden.run_int8(graph, pixels)


def _prepare_onnxruntime(graph: qgraph.QGraph, run_dir: Path, work: Path) -> Runner:
    from ..backends import onnx as onnx_export
    from ..targets import onnxrt

    path = run_dir / onnx_export.INT8_FILE
    if not path.exists():
        path = onnx_export.export_int8(graph, work / onnx_export.INT8_FILE)
    onnxrt.check_int8_model(path, graph)
    sess = onnxrt.session(path, threads=1)
    return lambda pixels: onnxrt.run_logits(sess, graph, pixels)


def _prepare_host_c(mode: str) -> Callable[[qgraph.QGraph, Path, Path], Runner]:
    def prepare(graph: qgraph.QGraph, run_dir: Path, work: Path) -> Runner:
        from ..backends.c import c_inputs, generate_c
        from ..targets import host_c

        src = generate_c(graph, work / f"c-{mode}" / "src", mode)
        exe = work / f"c-{mode}" / "runner"
        host_c.compile_runner(src, exe)
        return lambda pixels: host_c.run_runner(exe, c_inputs(graph, pixels),
                                                graph.output.size)[0]
    return prepare


def _prepare_hls(graph: qgraph.QGraph, run_dir: Path, work: Path) -> Runner:
    from ..backends.c import c_inputs
    from ..backends.hls import generate_hls
    from ..targets import hls_csim

    src = generate_hls(graph, work / "hls")
    exe = hls_csim.compile_csim(src, work / "hls-csim" / "mnist_edge_csim")
    return lambda pixels: hls_csim.run_csim(exe, c_inputs(graph, pixels), graph.output.size,
                                            jobs=1)


def _prepare_qemu(target: str) -> Callable[[qgraph.QGraph, Path, Path], Runner]:
    def prepare(graph: qgraph.QGraph, run_dir: Path, work: Path) -> Runner:
        from ..backends.c import c_inputs
        from ..targets import qemu
        from ..targets.boards import get_target
        from ..targets.firmware import build_firmware
        from ..targets.tools import require_tool

        require_tool("qemu-system-arm")
        fw = build_firmware(graph, get_target(target), work / target, "qemu")
        return lambda pixels: qemu.run_firmware(fw, c_inputs(graph, pixels), None,
                                                graph.output.size)[0]
    return prepare


PREPARE: dict[str, Callable[[qgraph.QGraph, Path, Path], Runner]] = {
    "golden": _prepare_golden,
    "onnxruntime": _prepare_onnxruntime,
    "c": _prepare_host_c("float"),
    "c-int": _prepare_host_c("int"),
    "hls": _prepare_hls,
    "qemu-m4": _prepare_qemu("qemu-m4"),
}


@dataclass
class BackendRow:
    """One backend's answer for one input (or why it has none)."""

    name: str
    logits: list[int] | None = None
    probabilities: list[float] | None = None
    predicted: int | None = None
    milliseconds: float | None = None
    status: str = "ok"          # ok | missing | error
    message: str = ""


@dataclass
class Panel:
    """Everything the page shows for one input (`pixels`: in the QGraph's layout and
    encoding, [C, H, W] or [K])."""

    pixels: np.ndarray
    rows: list[BackendRow]
    float_probabilities: list[float] | None
    exact_backends: int
    first_difference: dict[str, Any] | None = None
    trace: list[np.ndarray] = field(default_factory=list)

    @property
    def golden(self) -> BackendRow:
        return self.rows[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


class Engine:
    """Every demo backend built once; `panel(x)` runs one input through all."""

    def __init__(self, run_dir: Path, backends: tuple[str, ...] | list[str] = DEMO_BACKENDS,
                 log: Callable[[str], None] | None = None) -> None:
        unknown = [b for b in backends if b not in PREPARE]
        if unknown:
            raise MnistEdgeError(f"unknown demo backend(s) {', '.join(unknown)}; choose from: "
                                 f"{', '.join(PREPARE)}")
        if "golden" not in backends:
            backends = ["golden", *backends]
        self.run_dir = Path(run_dir)
        self.graph = qgraph.load_run(self.run_dir)
        try:
            self.float_graph = fgraph.load(fgraph.find_in_run(self.run_dir))
        except MnistEdgeError:
            self.float_graph = None
        self.work = Path(tempfile.mkdtemp(prefix="mnist-edge-demo-"))
        self.runners: dict[str, Runner] = {}
        self.missing: dict[str, str] = {}
        for name in backends:
            start = time.perf_counter()
            try:
                self.runners[name] = PREPARE[name](self.graph, self.run_dir, self.work)
            except MnistEdgeError as exc:
                self.missing[name] = str(exc).splitlines()[0]
            if log:
                took = time.perf_counter() - start
                state = "ready" if name in self.runners else f"missing ({self.missing[name]})"
                log(f"  {name}: {state} [{took:.1f} s]")
        self.backends = list(backends)

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def float_input(self, px: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """What the float model reads for the batch `px`: pixels / 255, float features as
        given (or the int8 ones dequantized)."""
        if features is not None:
            return np.asarray(features, np.float32).reshape(px.shape)
        if self.graph.input_encoding == "uint8":
            return fgraph.float_input(self.float_graph, px)
        return golden.dequantize(px, self.graph.input)

    def logit_probabilities(self, logits: np.ndarray) -> np.ndarray:
        out = self.graph.output
        return softmax(np.float64(out.scale) * (np.asarray(logits, np.float64) - out.zero_point))

    def panel(self, pixels: np.ndarray, trace: bool = True,
              features: np.ndarray | None = None) -> Panel:
        """Run one input (the QGraph's layout and encoding: uint8 pixels, int8 features)
        through every backend; golden first. `features`: the same input as float
        features, for the float model (else the int8 one, dequantized)."""
        shape = tuple(self.graph.input.shape)
        x = np.asarray(pixels)
        if x.dtype != self.graph.input_dtype or x.size != self.graph.input.size:
            raise MnistEdgeError(f"model {self.graph.name} takes {self.graph.input_encoding} "
                                 f"[{','.join(map(str, shape))}], got {x.dtype} "
                                 f"[{','.join(map(str, x.shape))}]")
        px = np.ascontiguousarray(x).reshape(1, *shape)
        rows: list[BackendRow] = []
        traced: list[np.ndarray] = []
        for name in self.backends:
            if name not in self.runners:
                rows.append(BackendRow(name, status="missing", message=self.missing[name]))
                continue
            start = time.perf_counter()
            try:
                if name == "golden" and trace:
                    logits, traced = golden.run_int8(self.graph, px, trace=True)
                else:
                    logits = self.runners[name](px)
            except MnistEdgeError as exc:
                rows.append(BackendRow(name, status="error", message=str(exc).splitlines()[0]))
                continue
            ms = (time.perf_counter() - start) * 1000.0
            q = np.asarray(logits, dtype=np.int64).reshape(-1)
            rows.append(BackendRow(name, [int(v) for v in q],
                                   [float(p) for p in self.logit_probabilities(q)],
                                   int(golden.predict(q[None])[0]), round(ms, 2)))
        reference = rows[0].logits
        exact, first = 0, None
        for row in rows:
            if row.logits is None:
                continue
            diff = [i for i, (a, b) in enumerate(zip(reference, row.logits, strict=True))
                    if a != b]
            if not diff:
                exact += 1
            elif first is None:
                first = {"backend": row.name, "logit": diff[0], "golden": reference[diff[0]],
                         "value": row.logits[diff[0]]}
        float_probs = None
        if self.float_graph is not None:
            f_logits = fgraph.run_float(self.float_graph, self.float_input(px, features))
            float_probs = [float(p) for p in softmax(f_logits[0])]
        return Panel(px[0], rows, float_probs, exact, first, [t[0] for t in traced])
