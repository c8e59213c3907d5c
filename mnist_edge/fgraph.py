"""The folded float graph: the trained or imported model with BatchNorm folded, Dropout gone.

The quantizer calibrates on it and turns it into a QGraph; the float ONNX export
and the float accuracy come from it. Same op vocabulary as the QGraph, plus
explicit activation ops. Ops name the tensors they read (a DAG: residual `add`,
channel `concat`); a chain written without inputs still loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MnistEdgeError
from .golden import conv_sum, pad_hw, run_batched, windows
from .npz import read_npz
from .paths import atomic_write
from .qgraph import canonical_json, npz_bytes

ACTIVATIONS = ("relu", "selu", "gelu", "tanh", "sigmoid", "leaky_relu", "elu", "hardsigmoid",
               "hardswish", "silu", "clip")
LAYER_KINDS = ("conv2d", "linear", "maxpool2d", "avgpool2d", "global_avgpool", "flatten", "add",
               "concat")
MULTI_INPUT = ("add", "concat")
INPUT = "input"  # the graph input tensor; every op's output tensor is named by the op
SCHEMA = "mnist-edge.fgraph"
# What the model's input is. "pixels": uint8 bytes p, the float model reads p/255 (or an
# affine normalization of it); "features": float values, quantized to int8 with a scale and
# zero point calibrated like any other tensor.
INPUT_KINDS = ("pixels", "features")
DEFAULT_INPUT_SHAPE = (1, 28, 28)  # what files written before the input spec existed hold
DEFAULT_INPUT_KIND = "pixels"
# (mean, std): a float each, or one float per channel (an RGB model's Normalize).
Norm = tuple[float | tuple[float, ...], float | tuple[float, ...]]
# Attributes each parametrized activation needs, with the defaults ONNX and PyTorch use.
ACTIVATION_DEFAULTS: dict[str, dict[str, float]] = {
    "leaky_relu": {"alpha": 0.01}, "elu": {"alpha": 1.0},
    "hardsigmoid": {"alpha": 0.2, "beta": 0.5}, "clip": {"min": 0.0, "max": 6.0},
}
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _sigmoid(v):
    with np.errstate(over="ignore"):  # exp(-v) = inf for very negative v: the result is 0
        return 1.0 / (1.0 + np.exp(-v))


def _hardsigmoid(v, alpha: float, beta: float):
    return np.clip(alpha * v + beta, 0.0, 1.0)


def activation_fn(name: str, attrs: dict[str, Any] | None = None):
    """The float64 reference of each activation (also what LUTs are built from)."""
    a = {**ACTIVATION_DEFAULTS.get(name, {}), **(attrs or {})}
    if name == "relu":
        return lambda v: np.maximum(v, 0.0)
    if name == "tanh":
        return np.tanh
    if name == "sigmoid":
        return _sigmoid
    if name == "selu":
        return lambda v: SELU_SCALE * np.where(v > 0, v, SELU_ALPHA * np.expm1(np.minimum(v, 0)))
    if name == "gelu":
        erf = np.vectorize(math.erf, otypes=[np.float64])
        return lambda v: 0.5 * v * (1.0 + erf(np.asarray(v, np.float64) / math.sqrt(2.0)))
    if name == "leaky_relu":
        alpha = float(a["alpha"])
        return lambda v: np.where(v >= 0, v, alpha * v)
    if name == "elu":
        alpha = float(a["alpha"])
        return lambda v: np.where(v > 0, v, alpha * np.expm1(np.minimum(v, 0)))
    if name == "hardsigmoid":
        return lambda v: _hardsigmoid(v, float(a["alpha"]), float(a["beta"]))
    if name == "hardswish":
        return lambda v: v * _hardsigmoid(v, 1.0 / 6.0, 0.5)
    if name == "silu":
        return lambda v: v * _sigmoid(v)
    if name == "clip":
        lo, hi = float(a["min"]), float(a["max"])
        return lambda v: np.clip(v, lo, hi)
    raise MnistEdgeError(f"unsupported activation {name!r}; supported: {', '.join(ACTIVATIONS)}")


@dataclass
class FOp:
    """One float op. `inputs` names the tensors it reads ("input" or an earlier op's name);
    None means the previous op's output, so chain builders need not spell it out."""

    name: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[str] | None = None


@dataclass
class FloatGraph:
    """Ops in topological order; the last op's output is the logits [N, classes].

    The input is `input_shape` (C,H,W or K) of `input_kind` ("pixels" or "features").
    `input_norm = (mean, std)` (floats, or one per channel) when a pixel model expects
    `(p/255 - mean)/std`; `run_float` still takes pixels in 0..1 and normalizes them itself.
    """

    name: str
    ops: list[FOp]
    input_norm: Norm | None = None
    input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE
    input_kind: str = DEFAULT_INPUT_KIND

    def __post_init__(self) -> None:
        previous = INPUT
        for op in self.ops:
            if op.inputs is None:
                op.inputs = [previous]
            op.inputs = [str(t) for t in op.inputs]
            previous = op.name
        self.input_shape = tuple(int(d) for d in self.input_shape)
        if self.input_norm is not None:
            self.input_norm = (_norm_value(self.input_norm[0]), _norm_value(self.input_norm[1]))
        self.check()

    def check(self) -> None:
        """The input spec is coherent; every input names the graph input or an earlier op;
        names are unique."""
        if self.input_kind not in INPUT_KINDS:
            raise MnistEdgeError(f"float graph {self.name}: input kind {self.input_kind!r}; "
                                 f"choose from {', '.join(INPUT_KINDS)}")
        if len(self.input_shape) not in (1, 3) or min(self.input_shape) < 1:
            raise MnistEdgeError(f"float graph {self.name}: input shape {list(self.input_shape)}"
                                 " is neither a vector (K) nor an image (C,H,W)")
        if self.input_norm is not None:
            if self.input_kind != "pixels":
                raise MnistEdgeError(f"float graph {self.name}: an input normalization applies "
                                     "to pixel inputs only")
            for v in self.input_norm:
                if isinstance(v, tuple) and (len(self.input_shape) != 3
                                             or len(v) != self.input_shape[0]):
                    raise MnistEdgeError(f"float graph {self.name}: per-channel normalization "
                                         f"of {len(v)} values does not fit input "
                                         f"{list(self.input_shape)}")
        known = {INPUT}
        for op in self.ops:
            if op.name in known:
                raise MnistEdgeError(f"float graph {self.name}: duplicate tensor name {op.name!r}")
            missing = [t for t in op.inputs or [] if t not in known]
            if missing:
                raise MnistEdgeError(f"float graph {self.name}: op {op.name} reads {missing}, "
                                     "which no earlier op writes")
            count = len(op.inputs or [])
            if op.kind == "add" and count != 2 or op.kind == "concat" and count < 2 or (
                    op.kind not in MULTI_INPUT and count != 1):
                need = {"add": "two", "concat": "two or more"}.get(op.kind, "exactly one")
                raise MnistEdgeError(f"float graph {self.name}: op {op.name} ({op.kind}) reads "
                                     f"{need} tensors, not {count}")
            known.add(op.name)

    @property
    def per_channel_norm(self) -> bool:
        return self.input_norm is not None and any(isinstance(v, tuple)
                                                   for v in self.input_norm)

    def to_json(self) -> dict[str, Any]:
        norm = None if self.input_norm is None else [
            list(v) if isinstance(v, tuple) else v for v in self.input_norm]
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "name": self.name,
            "input_norm": norm,
            "ops": [{"name": o.name, "kind": o.kind, "attrs": o.attrs, "inputs": o.inputs,
                     "arrays": sorted(o.arrays)} for o in self.ops],
        }
        # Written only when not the MNIST default, so that older files load and read the same.
        if self.input_shape != DEFAULT_INPUT_SHAPE or self.input_kind != DEFAULT_INPUT_KIND:
            doc["input"] = {"shape": list(self.input_shape), "kind": self.input_kind}
        return doc


def _norm_value(v: Any) -> float | tuple[float, ...]:
    """A mean or std as stored: a float, or a tuple of per-channel floats (one value of a
    per-channel list collapses to a float)."""
    if isinstance(v, (list, tuple, np.ndarray)):
        values = tuple(float(x) for x in np.asarray(v, np.float64).reshape(-1))
        if len(set(values)) == 1:
            return values[0]
        return values
    return float(v)


def norm_arrays(graph: FloatGraph) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) as float64 arrays broadcasting against [N, *input_shape]."""
    assert graph.input_norm is not None
    shape = (-1,) + (1,) * (len(graph.input_shape) - 1)
    return tuple(np.asarray(v, np.float64).reshape(shape) if isinstance(v, tuple)
                 else np.float64(v) for v in graph.input_norm)  # type: ignore[return-value]


def float_input(graph: FloatGraph, raw: np.ndarray) -> np.ndarray:
    """Raw data as the loaders give it (uint8 pixels, float features) -> what `run_float`
    takes: pixels / 255 in 0..1, features as float32."""
    raw = np.asarray(raw)
    if graph.input_kind == "pixels":
        return raw.astype(np.float32) / np.float32(255.0)
    return raw.astype(np.float32)


def normalize_input(graph: FloatGraph, images: np.ndarray) -> np.ndarray:
    """Images in 0..1 -> what the model's first op reads (float32)."""
    x = np.asarray(images, dtype=np.float32)
    if graph.input_norm is None:
        return x
    if not graph.per_channel_norm:
        mean, std = graph.input_norm
        return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)
    mean, std = (a.astype(np.float32) for a in norm_arrays(graph))
    return ((x - mean) / std).astype(np.float32)


def run_float(graph: FloatGraph, inputs: np.ndarray, trace: bool = False):
    """Float32 logits for a batch [N, *input_shape] (pixels in 0..1, see `float_input`; a
    one-channel image also as [N,H,W]); with trace, every op's output too."""
    x = np.asarray(inputs, dtype=np.float32)
    shape = graph.input_shape
    if len(shape) == 3 and shape[0] == 1 and x.ndim == 3:
        x = x[:, None]
    if tuple(x.shape[1:]) != shape:
        raise MnistEdgeError(f"float graph {graph.name} takes input [N,"
                             f"{','.join(map(str, shape))}], got {list(x.shape)}")
    return run_batched(normalize_input(graph, x), graph.ops,
                       lambda i, ins: _float_op(graph.ops[i], *ins), trace)


def _float_op(op: FOp, h: np.ndarray, *rest: np.ndarray) -> np.ndarray:
    a = op.attrs
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
    if op.kind == "add":
        return h + rest[0]
    if op.kind == "concat":
        return np.concatenate([h, *rest], axis=int(a.get("axis", 1)))
    if op.kind in ACTIVATIONS:
        return activation_fn(op.kind, a)(h.astype(np.float64)).astype(np.float32)
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
    stored = read_npz(stem + ".fgraph.npz")
    try:
        ops = [FOp(str(o["name"]), str(o["kind"]), dict(o["attrs"]),
                   {k: stored[f"{o['name']}.{k}"] for k in o["arrays"]}, o.get("inputs"))
               for o in doc["ops"]]
        norm = doc.get("input_norm")
        spec = doc.get("input") or {}
        return FloatGraph(str(doc.get("name", "")), ops,
                          tuple(norm) if norm is not None else None,
                          tuple(spec.get("shape", DEFAULT_INPUT_SHAPE)),
                          str(spec.get("kind", DEFAULT_INPUT_KIND)))
    except (KeyError, ValueError, TypeError) as exc:
        raise MnistEdgeError(f"{stem}.fgraph.json: malformed float graph ({exc!r})") from None


def find_in_run(run_dir: str | Path) -> Path:
    found = sorted(Path(run_dir).glob("*.fgraph.json"))
    if len(found) != 1:
        raise MnistEdgeError(f"{run_dir}: expected one *.fgraph.json, found {len(found)}; "
                             "run `mnist-edge quantize` first")
    return found[0]
