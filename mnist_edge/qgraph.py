"""QGraph: the int8 model, the single source of truth for every backend.

A QGraph is a sequence of ops over int8 tensors. Each tensor carries its shape
(CHW or flat, no batch) and its quantization ``real = scale * (q - zero_point)``.
It is stored as ``<stem>.qgraph.json`` (structure, exact scales, schema version,
content hash) and ``<stem>.qgraph.npz`` (arrays, never pickled).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MnistEdgeError
from .paths import atomic_write
from .requant import ACC_LIMIT, multiplier

SCHEMA = "mnist-edge.qgraph"
SCHEMA_VERSION = 1
OP_KINDS = ("conv2d", "linear", "maxpool2d", "avgpool2d", "global_avgpool", "lut", "flatten")
INPUT_SCALE = float(np.float32(1.0 / 255.0))
INPUT_ZERO_POINT = -128

# The arrays each op kind carries, with their dtypes.
ARRAY_DTYPES: dict[str, dict[str, str]] = {
    "conv2d": {"weight": "int8", "bias": "int32", "w_scale": "float32"},
    "linear": {"weight": "int8", "bias": "int32", "w_scale": "float32"},
    "lut": {"table": "int8"},
}


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
        if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
            raise ValueError(f"shape {shape!r} must be a list of integers")
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
    """One op. `attrs` holds kernel/stride/padding/groups and the float activation it stands for."""

    name: str
    kind: str
    output: QTensor
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
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

    # ----------------------------------------------------------------- queries
    def input_of(self, index: int) -> QTensor:
        return self.input if index == 0 else self.ops[index - 1].output

    @property
    def output(self) -> QTensor:
        return self.ops[-1].output

    def multiplier(self, index: int) -> np.ndarray:
        """The float32 requantization multiplier M per output channel of op `index`."""
        op = self.ops[index]
        x = self.input_of(index)
        if op.kind in ("conv2d", "linear"):
            return multiplier(x.scale, op.arrays["w_scale"], op.output.scale)
        if op.kind in ("avgpool2d", "global_avgpool"):
            return multiplier(x.scale, pool_weight_scale(op, x), op.output.scale)
        raise ValueError(f"op {op.name} ({op.kind}) has no requantization")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "name": self.name,
            "meta": self.meta,
            "input": self.input.to_json(),
            "ops": [op.to_json() for op in self.ops],
        }

    def content_hash(self) -> str:
        """sha256 over the canonical structure and every array's dtype, shape and bytes."""
        h = hashlib.sha256(canonical_json(self.to_json()).encode())
        for key, arr in _flat_arrays(self):
            h.update(f"{key}:{arr.dtype}:{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check every invariant a backend relies on; raise MnistEdgeError naming the op."""
        _check_quant(self.input, "input")
        if self.input.shape != (1, 28, 28) or self.input.zero_point != INPUT_ZERO_POINT:
            raise MnistEdgeError("QGraph input must be 1x28x28 pixels with zero point -128")
        if not self.ops:
            raise MnistEdgeError("QGraph has no ops")
        names = set()
        for i, op in enumerate(self.ops):
            if op.name in names:
                raise MnistEdgeError(f"QGraph op name {op.name!r} is used twice")
            names.add(op.name)
            _check_op(op, self.input_of(i))
        if len(self.output.shape) != 1:
            raise MnistEdgeError(f"QGraph output must be a vector of logits, "
                                 f"got {self.output.shape}")


def pool_window(op: QOp, x: QTensor) -> int:
    """Number of elements averaged by a pooling op."""
    if op.kind == "global_avgpool":
        return x.shape[1] * x.shape[2]
    kh, kw = op.attrs["kernel"]
    return kh * kw


def pool_weight_scale(op: QOp, x: QTensor) -> np.ndarray:
    """An average pool is a depthwise all-ones conv with weight scale float32(1/N)."""
    return np.full(x.shape[0], np.float32(1.0) / np.float32(pool_window(op, x)), np.float32)


def conv_output_hw(h: int, w: int, attrs: dict[str, Any]) -> tuple[int, int]:
    kh, kw = attrs["kernel"]
    sh, sw = attrs.get("stride", [1, 1])
    pt, pl, pb, pr = attrs.get("padding", [0, 0, 0, 0])
    oh = (h + pt + pb - kh) // sh + 1
    ow = (w + pl + pr - kw) // sw + 1
    return oh, ow


def expected_output_shape(op: QOp, x: QTensor) -> tuple[int, ...]:
    """Shape inference for one op; raises on shapes that do not chain."""
    s = x.shape
    kind = op.kind
    if kind in ("conv2d", "maxpool2d", "avgpool2d"):
        if len(s) != 3:
            raise MnistEdgeError(f"op {op.name}: {kind} needs a CxHxW input, got {s}")
        oh, ow = conv_output_hw(s[1], s[2], op.attrs)
        if oh <= 0 or ow <= 0:
            raise MnistEdgeError(f"op {op.name}: window larger than its {s} input")
        cout = op.arrays["weight"].shape[0] if kind == "conv2d" else s[0]
        return (cout, oh, ow)
    if kind == "global_avgpool":
        if len(s) != 3:
            raise MnistEdgeError(f"op {op.name}: global_avgpool needs a CxHxW input, got {s}")
        return (s[0], 1, 1)
    if kind == "flatten":
        return (math.prod(s),)
    if kind == "linear":
        if len(s) != 1:
            raise MnistEdgeError(f"op {op.name}: linear needs a flat input, got {s}")
        return (op.arrays["weight"].shape[0],)
    if kind == "lut":
        return s
    raise MnistEdgeError(f"op {op.name}: unsupported op kind {kind!r}")


def max_abs_accumulator(op: QOp, x: QTensor) -> int:
    """The exact worst-case |acc| over every int8 input, per the integer contract.

    Each centred input lies in [lo, hi] = [-128 - z, 127 - z] with lo <= 0 <= hi, so the
    largest sum picks hi for positive weights and lo for negative ones. Every term of that
    extreme is >= 0, so no partial sum (in any order) exceeds it either.
    """
    lo, hi = -128 - x.zero_point, 127 - x.zero_point
    if op.kind in ("conv2d", "linear"):
        w = op.arrays["weight"].astype(np.int64).reshape(op.arrays["weight"].shape[0], -1)
        pos, neg = np.maximum(w, 0).sum(axis=1), np.minimum(w, 0).sum(axis=1)
        bias = op.arrays["bias"].astype(np.int64)
        top, bottom = hi * pos + lo * neg, lo * pos + hi * neg
        return int(max(np.abs(top + bias).max(), np.abs(bottom + bias).max(),
                       top.max(), -bottom.min()))
    if op.kind in ("avgpool2d", "global_avgpool"):
        return pool_window(op, x) * max(hi, -lo)
    return 0


def _check_quant(t: QTensor, what: str) -> None:
    if not (math.isfinite(t.scale) and t.scale > 0):
        raise MnistEdgeError(f"{what}: scale {t.scale} must be positive and finite")
    if float(np.float32(t.scale)) != t.scale:
        raise MnistEdgeError(f"{what}: scale {t.scale!r} is not a float32 value")
    if not -128 <= t.zero_point <= 127:
        raise MnistEdgeError(f"{what}: zero point {t.zero_point} outside int8")


def _check_op(op: QOp, x: QTensor) -> None:
    where = f"op {op.name} ({op.kind})"
    if op.kind not in OP_KINDS:
        raise MnistEdgeError(f"{where}: unsupported op kind; supported: {', '.join(OP_KINDS)}")
    _check_quant(op.output, where)
    wanted = ARRAY_DTYPES.get(op.kind, {})
    if set(op.arrays) != set(wanted):
        raise MnistEdgeError(f"{where}: arrays {sorted(op.arrays)}, expected {sorted(wanted)}")
    for key, dtype in wanted.items():
        if str(op.arrays[key].dtype) != dtype:
            raise MnistEdgeError(f"{where}: {key} is {op.arrays[key].dtype}, expected {dtype}")
    shape = expected_output_shape(op, x)
    if tuple(op.output.shape) != shape:
        raise MnistEdgeError(f"{where}: output shape {op.output.shape} but inputs give {shape}")
    if op.kind in ("conv2d", "linear"):
        _check_weights(op, x, where)
    if op.kind in ("maxpool2d", "flatten") and (
        op.output.scale != x.scale or op.output.zero_point != x.zero_point
    ):
        raise MnistEdgeError(f"{where}: must keep its input's scale and zero point")
    if op.kind == "lut" and op.arrays["table"].shape != (256,):
        raise MnistEdgeError(f"{where}: table must have 256 entries")
    acc = max_abs_accumulator(op, x)
    if acc >= ACC_LIMIT:
        raise MnistEdgeError(
            f"{where}: accumulators could reach {acc} >= 2^24, where float32 stops being "
            "exact; use fewer input channels per output or a narrower input range"
        )


def _check_weights(op: QOp, x: QTensor, where: str) -> None:
    w, b, ws = op.arrays["weight"], op.arrays["bias"], op.arrays["w_scale"]
    cout = w.shape[0]
    if op.kind == "conv2d":
        groups = int(op.attrs.get("groups", 1))
        if w.ndim != 4 or w.shape[1] * groups != x.shape[0] or cout % groups:
            raise MnistEdgeError(f"{where}: weight {w.shape} does not fit input {x.shape}")
        if list(w.shape[2:]) != list(op.attrs["kernel"]):
            raise MnistEdgeError(f"{where}: weight {w.shape} does not match kernel")
    elif w.ndim != 2 or w.shape[1] != x.shape[0]:
        raise MnistEdgeError(f"{where}: weight {w.shape} does not fit input {x.shape}")
    if b.shape != (cout,) or ws.shape != (cout,):
        raise MnistEdgeError(f"{where}: bias/w_scale must have {cout} entries")
    if int(w.min(initial=0)) < -127:
        raise MnistEdgeError(f"{where}: weights must be symmetric int8 (-127..127)")
    if not (np.all(np.isfinite(ws)) and np.all(ws > 0)):
        raise MnistEdgeError(f"{where}: weight scales must be positive and finite")


# ------------------------------------------------------------------ storage
def canonical_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n"


def _flat_arrays(graph: QGraph) -> list[tuple[str, np.ndarray]]:
    return [(f"{op.name}.{k}", op.arrays[k]) for op in graph.ops for k in sorted(op.arrays)]


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
    """Load and fully validate a QGraph; the content hash must match."""
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
    if not isinstance(version, int) or isinstance(version, bool):
        raise MnistEdgeError(f"{json_path}: schema version {version!r} is not an integer "
                             f"(this mnist-edge reads version {SCHEMA_VERSION})")
    if version != SCHEMA_VERSION:
        raise MnistEdgeError(f"{json_path}: schema version {version} "
                             f"(this mnist-edge reads {SCHEMA_VERSION})")
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            stored = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise MnistEdgeError(f"{npz_path}: missing (a QGraph needs its .npz)") from None
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        why = str(exc) or type(exc).__name__
        raise MnistEdgeError(f"{npz_path}: unreadable arrays ({why})") from None
    if not isinstance(doc.get("ops"), list) or not all(isinstance(o, dict) for o in doc["ops"]):
        raise MnistEdgeError(f"{json_path}: malformed QGraph (ops must be a list of objects)")
    try:
        graph = QGraph(
            name=str(doc["name"]),
            input=QTensor.from_json(doc["input"]),
            ops=[_op_from_json(o, stored) for o in doc["ops"]],
            meta=dict(doc.get("meta", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MnistEdgeError(f"{json_path}: malformed QGraph ({exc!r})") from None
    graph.validate()
    if graph.content_hash() != doc.get("hash"):
        raise MnistEdgeError(f"{json_path}: content hash mismatch (file edited or arrays swapped)")
    return graph


def _op_from_json(o: dict[str, Any], stored: dict[str, np.ndarray]) -> QOp:
    arrays = {}
    for key, spec in o.get("arrays", {}).items():
        arr = stored.get(f"{o['name']}.{key}")
        if arr is None:
            raise KeyError(f"{o['name']}.{key} missing from the .npz")
        if str(arr.dtype) != spec["dtype"] or list(arr.shape) != spec["shape"]:
            raise ValueError(f"{o['name']}.{key} is {arr.dtype}{arr.shape}, JSON says {spec}")
        arrays[key] = arr
    return QOp(o["name"], o["kind"], QTensor.from_json(o["output"]), dict(o.get("attrs", {})),
               arrays)


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
