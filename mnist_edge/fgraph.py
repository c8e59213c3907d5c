"""The folded float graph: the trained model with BatchNorm folded, Dropout gone.

The quantizer calibrates on it and turns it into a QGraph; the float ONNX export
and the float accuracy come from it. Same op vocabulary as the QGraph, plus
explicit activation ops.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MnistEdgeError
from .golden import conv_sum, pad_hw, run_batched, windows
from .paths import atomic_write
from .qgraph import INPUT_NAME, canonical_json, npz_bytes

ACTIVATIONS = ("relu", "selu", "gelu", "tanh", "sigmoid")
LAYER_KINDS = ("conv2d", "linear", "maxpool2d", "avgpool2d", "global_avgpool", "flatten")
SCHEMA = "mnist-edge.fgraph"


def activation_fn(name: str, attrs: dict[str, Any] | None = None):
    """The float64 reference of each activation (also what LUTs are built from)."""
    if name == "relu":
        return lambda v: np.maximum(v, 0.0)
    if name == "tanh":
        return np.tanh
    if name == "sigmoid":
        return lambda v: 1.0 / (1.0 + np.exp(-v))
    if name == "selu":
        alpha, scale = 1.6732632423543772, 1.0507009873554805
        return lambda v: scale * np.where(v > 0, v, alpha * np.expm1(np.minimum(v, 0)))
    if name == "gelu":
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return lambda v: 0.5 * v * (1.0 + erf(np.asarray(v, np.float64) / math.sqrt(2.0)))
    raise MnistEdgeError(f"unsupported activation {name!r}; supported: {', '.join(ACTIVATIONS)}")


@dataclass
class FOp:
    """One float op; `inputs` names the tensors it reads (None: the previous op's output)."""

    name: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[str] | None = None


@dataclass
class FloatGraph:
    """`input_norm` = (mean, std) when the model expects (p/255 - mean) / std."""

    name: str
    ops: list[FOp]
    input_norm: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        previous = INPUT_NAME
        for op in self.ops:
            if op.inputs is None:
                op.inputs = [previous]
            previous = op.name

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "input_norm": list(self.input_norm) if self.input_norm else None,
            "ops": [{"name": o.name, "kind": o.kind, "inputs": o.inputs, "attrs": o.attrs,
                     "arrays": sorted(o.arrays)} for o in self.ops],
        }


def run_float(graph: FloatGraph, images: np.ndarray, trace: bool = False):
    """Float32 logits for inputs in 0..1 ([N,1,28,28]); with trace, every op's output too."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if graph.input_norm:
        mean, std = graph.input_norm
        x = (x - np.float32(mean)) / np.float32(std)

    def whole_graph(h: np.ndarray) -> list[np.ndarray]:
        live = {INPUT_NAME: h}
        for op in graph.ops:
            live[op.name] = _float_op(op, *(live[n] for n in op.inputs))
        return [live[op.name] for op in graph.ops]

    return run_batched(x, whole_graph, trace)


def _float_op(op: FOp, h: np.ndarray, *more: np.ndarray) -> np.ndarray:
    a = op.attrs
    if op.kind == "add":
        return h + more[0]
    if op.kind == "concat":
        return np.concatenate([h, *more], axis=1)
    if op.kind == "conv2d":
        y = conv_sum(pad_hw(h, a["padding"]), op.arrays["weight"].astype(np.float32), a)
        return y + op.arrays["bias"].astype(np.float32)[None, :, None, None]
    if op.kind == "linear":
        return h @ op.arrays["weight"].T.astype(np.float32) + op.arrays["bias"].astype(np.float32)
    if op.kind == "maxpool2d":
        return windows(h, a["kernel"], a["stride"]).max(axis=(4, 5))
    if op.kind == "avgpool2d":
        return windows(h, a["kernel"], a["stride"]).mean(axis=(4, 5), dtype=np.float32)
    if op.kind == "global_avgpool":
        return h.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    if op.kind == "flatten":
        return h.reshape(h.shape[0], -1)
    if op.kind in ACTIVATIONS:
        return activation_fn(op.kind)(h.astype(np.float64)).astype(np.float32)
    raise MnistEdgeError(f"float graph: unsupported op {op.kind!r}")


def save(graph: FloatGraph, stem: str | Path) -> None:
    stem = str(stem)
    arrays = [(f"{o.name}.{k}", o.arrays[k]) for o in graph.ops for k in sorted(o.arrays)]
    with atomic_write(Path(stem + ".fgraph.npz")) as f:
        f.write(npz_bytes(arrays))
    with atomic_write(Path(stem + ".fgraph.json"), "w") as f:
        f.write(canonical_json(graph.to_json()))


def load(stem: str | Path) -> FloatGraph:
    import json

    stem = str(stem).removesuffix(".fgraph.json")
    try:
        doc = json.loads(Path(stem + ".fgraph.json").read_text())
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise MnistEdgeError(f"{stem}.fgraph.json: unreadable float graph ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise MnistEdgeError(f"{stem}.fgraph.json: not a mnist-edge float graph")
    try:
        with np.load(stem + ".fgraph.npz", allow_pickle=False) as npz:
            stored = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        why = str(exc) or type(exc).__name__
        raise MnistEdgeError(f"{stem}.fgraph.npz: unreadable arrays ({why})") from None
    try:
        ops = [FOp(str(o["name"]), str(o["kind"]), dict(o["attrs"]),
                   {k: stored[f"{o['name']}.{k}"] for k in o["arrays"]}, o.get("inputs"))
               for o in doc["ops"]]
        norm = doc.get("input_norm")
        return FloatGraph(str(doc.get("name", "")), ops, tuple(norm) if norm else None)
    except (KeyError, ValueError, TypeError) as exc:
        raise MnistEdgeError(f"{stem}.fgraph.json: malformed float graph ({exc!r})") from None


def find_in_run(run_dir: str | Path) -> Path:
    found = sorted(Path(run_dir).glob("*.fgraph.json"))
    if len(found) != 1:
        raise MnistEdgeError(f"{run_dir}: expected one *.fgraph.json, found {len(found)}; "
                             "run `mnist-edge quantize` first")
    return found[0]
