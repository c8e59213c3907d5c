"""QGraph: the int8 model, the single source of truth for every backend.

A QGraph is a graph of ops over named int8 tensors, listed in topological order.
The graph input is the tensor ``input``: a vector (features) or CxHxW, with its own
quantization, which callers hand over in one of two encodings: ``uint8`` (raw bytes p
such as pixels, ``q = p - 128``) or ``int8`` (q itself, as feature extractors and
TFLite models give it). Each op reads the tensors it names in ``inputs`` and writes
one tensor named after the op; the last op's output (any vector) is the result.
Each tensor carries its shape (CHW or flat, no batch) and its quantization
``real = scale * (q - zero_point)``. What each op kind means, which attributes it
takes and what it must satisfy lives in the op registry (`mnist_edge.ops`), the one
definition every backend lowers from.

It is stored as ``<stem>.qgraph.json`` (structure, exact scales, schema version,
content hash) and ``<stem>.qgraph.npz`` (arrays, never pickled). Schema version 2
names each op's inputs; version 1 (a plain chain) still loads.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import ops
from .errors import MnistEdgeError
from .npz import read_npz
from .paths import atomic_write

SCHEMA = "mnist-edge.qgraph"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
OP_KINDS = ops.OP_KINDS
INPUT_NAME = "input"
# The zoo's image input: raw pixels p in the uint8 encoding, real p / 255.
INPUT_SCALE = float(np.float32(1.0 / 255.0))
INPUT_ZERO_POINT = -128
# How callers give the input: "uint8" bytes p with q = p - 128, or "int8" q itself.
INPUT_ENCODINGS = ("uint8", "int8")
DEFAULT_ENCODING = "uint8"
# The integer arithmetic every op of a graph follows: "onnx" (what onnxruntime computes, our
# quantizer's) or "tflite" (what TensorFlow Lite Micro's reference kernels compute).
ARITHMETICS = ("onnx", "tflite")
DEFAULT_ARITHMETIC = "onnx"
INT32_LIMIT = 1 << 31  # accumulators are int32: a larger worst case cannot be computed


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class QTensor:
    """An int8 activation: its shape (no batch dimension) and quantization."""

    shape: tuple[int, ...]
    scale: float
    zero_point: int

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "scale": self.scale, "zero_point": self.zero_point}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> QTensor:
        """Exact types only: a fractional shape or zero point is refused, never truncated."""
        if not isinstance(doc, dict):
            raise TypeError(f"a tensor must be an object, got {type(doc).__name__}")
        shape, scale, zero_point = doc["shape"], doc["scale"], doc["zero_point"]
        if not isinstance(shape, list) or not all(_is_int(d) and d > 0 for d in shape):
            raise ValueError(f"shape {shape!r} must be a list of positive integers")
        if not _is_int(zero_point):
            raise ValueError(f"zero point {zero_point!r} is not an integer")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ValueError(f"scale {scale!r} is not a number")
        return QTensor(tuple(shape), float(scale), zero_point)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class QOp:
    """One op: `inputs` names the tensors it reads (None: the previous op's output)."""

    name: str
    kind: str
    output: QTensor
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[str] | None = None

    @property
    def spec(self) -> ops.OpSpec:
        return ops.spec_of(self.kind)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "inputs": list(self.inputs or []),
            "attrs": self.attrs,
            "output": self.output.to_json(),
            "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)}
                       for k, v in sorted(self.arrays.items())},
        }


@dataclass
class QGraph:
    name: str
    input: QTensor
    ops: list[QOp]
    meta: dict[str, Any] = field(default_factory=dict)
    input_encoding: str = DEFAULT_ENCODING
    arithmetic: str = DEFAULT_ARITHMETIC

    def __post_init__(self) -> None:
        self.link_chain_inputs()

    def link_chain_inputs(self) -> None:
        """An op built without `inputs` reads the output of the op before it."""
        previous = INPUT_NAME
        for op in self.ops:
            if op.inputs is None:
                op.inputs = [previous]
            previous = op.name

    # ----------------------------------------------------------------- queries
    def tensor(self, name: str) -> QTensor:
        """The tensor called `name`: the graph input or an op's output."""
        if name == INPUT_NAME:
            return self.input
        for op in self.ops:
            if op.name == name:
                return op.output
        raise MnistEdgeError(f"QGraph has no tensor {name!r}")

    def inputs_of(self, index: int) -> list[QTensor]:
        return [self.tensor(n) for n in self.ops[index].inputs]

    def input_of(self, index: int) -> QTensor:
        """The (first) tensor op `index` reads."""
        return self.tensor(self.ops[index].inputs[0])

    def consumers(self, name: str) -> list[int]:
        """Indices of the ops that read tensor `name`."""
        return [i for i, op in enumerate(self.ops) if name in op.inputs]

    @property
    def is_chain(self) -> bool:
        """True when every op reads just the output before it (the v1 shape of a graph)."""
        names = [INPUT_NAME] + [op.name for op in self.ops]
        return all(op.inputs == [names[i]] for i, op in enumerate(self.ops))

    @property
    def output(self) -> QTensor:
        return self.ops[-1].output

    def multiplier(self, index: int) -> np.ndarray:
        """The float32 requantization multipliers of op `index` (see its registry entry)."""
        op = self.ops[index]
        if op.spec.multiplier is None:
            raise ValueError(f"op {op.name} ({op.kind}) has no requantization")
        return op.spec.multiplier(op, self.inputs_of(index))

    def prepare(self, index: int) -> dict[str, Any]:
        """Op `index`'s constants in the graph's arithmetic, derived from its scales by its
        registry entry (TFLM's Prepare for `tflite`: Q31 multipliers and shifts, offsets,
        clamps). The one place they are computed; golden and every backend read them here.
        The `onnx` arithmetic's constants are the float32 `multiplier`."""
        op = self.ops[index]
        if self.arithmetic != "tflite":
            return {"multiplier": self.multiplier(index)} if op.spec.multiplier else {}
        return op.spec.tflite.prepare(op, self.inputs_of(index))

    def max_accumulator(self, index: int) -> int:
        """The exact worst-case |acc| of op `index` over every int8 input."""
        op = self.ops[index]
        return op.spec.acc_bound(op, self.inputs_of(index))

    def to_json(self) -> dict[str, Any]:
        doc = {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "name": self.name,
            "meta": self.meta,
            "input": self.input.to_json(),
            "ops": [op.to_json() for op in self.ops],
        }
        if self.input_encoding != DEFAULT_ENCODING:  # older graphs keep their hash
            doc["input_encoding"] = self.input_encoding
        if self.arithmetic != DEFAULT_ARITHMETIC:  # likewise
            doc["arithmetic"] = self.arithmetic
        return doc

    def content_hash(self) -> str:
        """sha256 over the canonical structure and every array's dtype, shape and bytes."""
        return _hash(self.to_json(), _flat_arrays(self))

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check every invariant a backend relies on; raise MnistEdgeError naming the op."""
        self.link_chain_inputs()
        _check_quant(self.input, "input")
        if len(self.input.shape) not in (1, 3) or not all(
                _is_int(d) and d > 0 for d in self.input.shape):
            raise MnistEdgeError(f"QGraph input shape {self.input.shape}: must be a vector (N) "
                                 "or an image CxHxW of positive sizes")
        if self.input_encoding not in INPUT_ENCODINGS:
            raise MnistEdgeError(f"QGraph input encoding {self.input_encoding!r}: must be one "
                                 f"of {', '.join(INPUT_ENCODINGS)}")
        if self.arithmetic not in ARITHMETICS:
            raise MnistEdgeError(f"QGraph arithmetic {self.arithmetic!r}: must be one of "
                                 f"{', '.join(ARITHMETICS)}")
        if not self.ops:
            raise MnistEdgeError("QGraph has no ops")
        known = {INPUT_NAME}
        for op in self.ops:
            if not isinstance(op.name, str) or not op.name or op.name in known:
                raise MnistEdgeError(f"QGraph op name {op.name!r} is empty or used twice")
            missing = [n for n in op.inputs if n not in known]
            if missing:
                raise MnistEdgeError(f"op {op.name} ({op.kind}): reads {missing[0]!r}, which "
                                     "no earlier op writes (ops must be in topological order)")
            _check_op(op, [self.tensor(n) for n in op.inputs], self.arithmetic)
            known.add(op.name)
        unread = [op.name for op in self.ops[:-1] if not self.consumers(op.name)]
        if unread:
            raise MnistEdgeError(f"op {unread[0]}: its output is never read (dead op)")
        if len(self.output.shape) != 1:
            raise MnistEdgeError(f"QGraph output must be a vector, got {self.output.shape}")

    # ------------------------------------------------------------------ input
    @property
    def input_dtype(self) -> np.dtype:
        """The dtype callers hand the input over in (the encoding)."""
        return np.dtype(self.input_encoding)

    def input_to_int8(self, x: np.ndarray) -> np.ndarray:
        """A batch in the graph's encoding, [N, *input.shape] (an image of one channel
        also as [N, H, W]) -> the int8 input q, [N, *input.shape]."""
        x = np.asarray(x)
        shape = tuple(self.input.shape)
        if x.dtype != self.input_dtype:
            raise MnistEdgeError(f"model {self.name} takes {self.input_encoding} input, "
                                 f"got {x.dtype}")
        if len(shape) == 3 and shape[0] == 1 and x.ndim == 3:
            x = x[:, None]
        if x.ndim < 1 or tuple(x.shape[1:]) != shape:
            want = ",".join(map(str, shape))
            raise MnistEdgeError(f"model {self.name} takes input of shape [N,{want}], "
                                 f"got {list(x.shape)}")
        if self.input_encoding == "int8":
            return x
        return (x.astype(np.int16) - 128).astype(np.int8)


def pool_window(op: QOp, x: QTensor) -> int:
    return ops.pool.pool_window(op, x)


def pool_weight_scale(op: QOp, x: QTensor) -> np.ndarray:
    return ops.pool.pool_weight_scale(op, x)


conv_output_hw = ops.conv.conv_output_hw


def expected_output_shape(op: QOp, x: QTensor | list[QTensor]) -> tuple[int, ...]:
    """Shape inference for one op from its registry entry; raises on shapes that do not fit."""
    ins = x if isinstance(x, list) else [x]
    try:
        return tuple(op.spec.infer_shape(op, ins))
    except ops.InvalidOp as exc:
        raise MnistEdgeError(f"op {op.name} ({op.kind}): {exc}") from None


def max_abs_accumulator(op: QOp, x: QTensor | list[QTensor]) -> int:
    """The exact worst-case |acc| of one op, per its registry entry."""
    return op.spec.acc_bound(op, x if isinstance(x, list) else [x])


def _check_quant(t: QTensor, what: str) -> None:
    if not (math.isfinite(t.scale) and t.scale > 0):
        raise MnistEdgeError(f"{what}: scale {t.scale} must be positive and finite")
    if float(np.float32(t.scale)) != t.scale:
        raise MnistEdgeError(f"{what}: scale {t.scale!r} is not a float32 value")
    if not -128 <= t.zero_point <= 127:
        raise MnistEdgeError(f"{what}: zero point {t.zero_point} outside int8")


def _check_op(op: QOp, ins: list[QTensor], arithmetic: str = DEFAULT_ARITHMETIC) -> None:
    """Every rule of the op's registry entry, in an order where each check can rely on the last."""
    where = f"op {op.name} ({op.kind})"
    try:
        spec = op.spec
        if arithmetic not in spec.arithmetics:
            raise ops.InvalidOp(f"has no {arithmetic} arithmetic (the kind is defined in "
                                f"{', '.join(spec.arithmetics)} only)")
        if spec.arity and len(ins) != spec.arity or not spec.arity and len(ins) < 2:
            want = spec.arity or "two or more"
            raise ops.InvalidOp(f"reads {len(ins)} input(s), takes {want}")
        spec.check_attrs(op)
        if set(op.arrays) != set(spec.arrays):
            raise ops.InvalidOp(f"arrays {sorted(op.arrays)}, expected {sorted(spec.arrays)}")
        for key, dtype in spec.arrays.items():
            if str(op.arrays[key].dtype) != dtype:
                raise ops.InvalidOp(f"{key} is {op.arrays[key].dtype}, expected {dtype}")
        _check_quant(op.output, where)
        if spec.check is not None:
            spec.check(op, ins)
        extra = spec.onnx_check if arithmetic == "onnx" else spec.tflite.check
        if extra is not None:
            extra(op, ins)
        shape = tuple(spec.infer_shape(op, ins))
        if tuple(op.output.shape) != shape:
            raise ops.InvalidOp(f"output shape {op.output.shape} but inputs give {shape}")
        if spec.keeps_quant and (op.output.scale, op.output.zero_point) != (
                ins[0].scale, ins[0].zero_point):
            raise ops.InvalidOp("must keep its input's scale and zero point")
        acc = spec.acc_bound(op, ins)
    except ops.InvalidOp as exc:
        raise MnistEdgeError(f"{where}: {exc}") from None
    if acc >= INT32_LIMIT:
        raise MnistEdgeError(f"{where}: accumulators could reach {acc} >= 2^31, beyond int32; "
                             "use fewer inputs per output or a narrower input range")
    if arithmetic == "tflite":
        try:
            spec.tflite.prepare(op, ins)
        except (ValueError, ops.InvalidOp) as exc:
            raise MnistEdgeError(f"{where}: {exc}") from None
    elif spec.multiplier is not None:
        mult = spec.multiplier(op, ins)
        if not np.all(np.isfinite(mult)) or np.any(mult < 0):
            raise MnistEdgeError(f"{where}: requantization multiplier {mult} is not a "
                                 "positive float32")


# ------------------------------------------------------------------ storage
def canonical_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"


def _flat_arrays(graph: QGraph) -> list[tuple[str, np.ndarray]]:
    return [(f"{op.name}.{k}", op.arrays[k]) for op in graph.ops for k in sorted(op.arrays)]


def _hash(doc: dict[str, Any], arrays: list[tuple[str, np.ndarray]]) -> str:
    h = hashlib.sha256(canonical_json(doc).encode())
    for key, arr in arrays:
        h.update(f"{key}:{arr.dtype}:{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def npz_bytes(arrays: list[tuple[str, np.ndarray]]) -> bytes:
    """An .npz with fixed timestamps and order, so equal graphs give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays:
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data.getvalue())
    return buf.getvalue()


def paths_for(stem: str | Path) -> tuple[Path, Path]:
    stem = str(stem)
    for suffix in (".qgraph.json", ".qgraph.npz"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return Path(stem + ".qgraph.json"), Path(stem + ".qgraph.npz")


def save(graph: QGraph, stem: str | Path) -> tuple[Path, Path]:
    """Validate, then write `<stem>.qgraph.json` and `<stem>.qgraph.npz` atomically."""
    graph.validate()
    json_path, npz_path = paths_for(stem)
    doc = graph.to_json()
    doc["hash"] = graph.content_hash()
    with atomic_write(npz_path) as f:
        f.write(npz_bytes(_flat_arrays(graph)))
    with atomic_write(json_path, "w") as f:
        f.write(canonical_json(doc))
    return json_path, npz_path


def load(stem: str | Path) -> QGraph:
    """Load and fully validate a QGraph; the content hash of the file as stored must match."""
    json_path, npz_path = paths_for(stem)
    try:
        doc = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise MnistEdgeError(f"{json_path}: no such QGraph file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MnistEdgeError(f"{json_path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise MnistEdgeError(f"{json_path}: not a mnist-edge QGraph")
    version = doc.get("version")
    if not _is_int(version):
        raise MnistEdgeError(f"{json_path}: schema version {version!r} is not an integer "
                             f"(this mnist-edge reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))})")
    if version not in READABLE_VERSIONS:
        raise MnistEdgeError(f"{json_path}: schema version {version} (this mnist-edge reads "
                             f"versions {', '.join(map(str, READABLE_VERSIONS))})")
    if not npz_path.exists():
        raise MnistEdgeError(f"{npz_path}: missing (a QGraph needs its .npz)")
    stored = read_npz(npz_path)
    arithmetic = doc.get("arithmetic", DEFAULT_ARITHMETIC)
    if not isinstance(arithmetic, str) or arithmetic not in ARITHMETICS:
        raise MnistEdgeError(f"{json_path}: arithmetic {arithmetic!r} is unknown (this "
                             f"mnist-edge implements {', '.join(ARITHMETICS)})")
    op_docs = doc.get("ops")
    if not isinstance(op_docs, list) or not all(isinstance(o, dict) for o in op_docs):
        raise MnistEdgeError(f"{json_path}: malformed QGraph (ops must be a list of objects)")
    try:
        ops_ = [_op_from_json(o, stored, version) for o in op_docs]
        body = {k: v for k, v in doc.items() if k != "hash"}
        arrays = [(f"{o['name']}.{k}", stored[f"{o['name']}.{k}"])
                  for o in op_docs for k in sorted(o.get("arrays", {}))]
        if _hash(body, arrays) != doc.get("hash"):
            raise MnistEdgeError(f"{json_path}: content hash mismatch (file edited or arrays "
                                 "swapped)")
        meta = doc.get("meta", {})
        if not isinstance(meta, dict):
            raise TypeError("'meta' must be an object")
        encoding = doc.get("input_encoding", DEFAULT_ENCODING)
        if not isinstance(encoding, str):
            raise TypeError("'input_encoding' must be a string")
        graph = QGraph(name=str(doc["name"]), input=QTensor.from_json(doc["input"]), ops=ops_,
                       meta=dict(meta), input_encoding=encoding, arithmetic=arithmetic)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MnistEdgeError(f"{json_path}: malformed QGraph ({exc!r})") from None
    graph.validate()
    return graph


def _op_from_json(o: dict[str, Any], stored: dict[str, np.ndarray], version: int) -> QOp:
    if not isinstance(o.get("name"), str) or not isinstance(o.get("kind"), str):
        raise TypeError("every op needs a string 'name' and 'kind'")
    arrays = {}
    specs = o.get("arrays", {})
    if not isinstance(specs, dict) or not isinstance(o.get("attrs", {}), dict):
        raise TypeError(f"op {o['name']}: 'arrays' and 'attrs' must be objects")
    for key, spec in specs.items():
        arr = stored.get(f"{o['name']}.{key}")
        if arr is None:
            raise KeyError(f"{o['name']}.{key} missing from the .npz")
        if str(arr.dtype) != spec["dtype"] or list(arr.shape) != spec["shape"]:
            raise ValueError(f"{o['name']}.{key} is {arr.dtype}{arr.shape}, JSON says {spec}")
        arrays[key] = arr
    inputs = None
    if version >= 2:
        inputs = o["inputs"]
        if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
            raise TypeError(f"op {o['name']}: 'inputs' must be a list of tensor names")
    return QOp(o["name"], o["kind"], QTensor.from_json(o["output"]), dict(o.get("attrs", {})),
               arrays, inputs)


def find_in_run(run_dir: str | Path) -> Path:
    """The QGraph stem inside a run folder (or a stem / json path given directly)."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        found = sorted(run_dir.glob("*.qgraph.json"))
        if len(found) != 1:
            what = "no QGraph" if not found else f"{len(found)} QGraphs"
            raise MnistEdgeError(f"{run_dir}: {what} (*.qgraph.json); run `mnist-edge quantize` "
                                 "first")
        return found[0]
    return run_dir


def load_run(run_dir: str | Path) -> QGraph:
    return load(find_in_run(run_dir))
