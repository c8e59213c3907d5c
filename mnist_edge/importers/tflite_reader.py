"""Reading a `.tflite` file into plain dataclasses, trusting none of its offsets.

The format reader only: it turns the flatbuffer into tensors (shape, dtype, quantization,
constant data) and operators (builtin name, tensor indices, decoded options) of the one
subgraph, and refuses what TFLite Micro's int8 path cannot run or what is malformed, each
as a one-line `MnistEdgeError` naming the operator. Mapping to the QGraph is a separate,
format-neutral step. Field numbers follow TFLite's schema.fbs; enum names come from the
`tflite` package (the schema's generated Python), so new builtin names need no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MnistEdgeError
from .flatbuf import Buffer, FlatBufferError, Table

MAX_ELEMENTS = 1 << 26  # per tensor: far above any MCU model, far below a memory blow-up

_NUMPY_TYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64",
                "INT8": "int8", "UINT8": "uint8", "INT16": "int16", "UINT16": "uint16",
                "INT32": "int32", "UINT32": "uint32", "INT64": "int64", "UINT64": "uint64",
                "BOOL": "bool"}
PADDINGS = {0: "SAME", 1: "VALID"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}

# builtin op -> (options table in the BuiltinOptions union, its fields in schema order:
# (name, struct format, default)). Ops without options have an empty field list.
_I, _B, _F = "i", "B", "f"
OPTION_FIELDS: dict[str, tuple[str | None, list[tuple[str, str, Any]]]] = {
    "CONV_2D": ("Conv2DOptions", [("padding", "b", 0), ("stride_w", _I, 0),
                                  ("stride_h", _I, 0), ("fused_activation", "b", 0),
                                  ("dilation_w", _I, 1), ("dilation_h", _I, 1)]),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions",
                          [("padding", "b", 0), ("stride_w", _I, 0), ("stride_h", _I, 0),
                           ("depth_multiplier", _I, 0), ("fused_activation", "b", 0),
                           ("dilation_w", _I, 1), ("dilation_h", _I, 1)]),
    "FULLY_CONNECTED": ("FullyConnectedOptions",
                        [("fused_activation", "b", 0), ("weights_format", "b", 0),
                         ("keep_num_dims", _B, 0), ("asymmetric_quantize_inputs", _B, 0)]),
    "AVERAGE_POOL_2D": ("Pool2DOptions", [("padding", "b", 0), ("stride_w", _I, 0),
                                          ("stride_h", _I, 0), ("filter_w", _I, 0),
                                          ("filter_h", _I, 0), ("fused_activation", "b", 0)]),
    "ADD": ("AddOptions", [("fused_activation", "b", 0), ("pot_scale_int16", _B, 1)]),
    "SUB": ("SubOptions", [("fused_activation", "b", 0), ("pot_scale_int16", _B, 1)]),
    "MUL": ("MulOptions", [("fused_activation", "b", 0)]),
    "CONCATENATION": ("ConcatenationOptions", [("axis", _I, 0), ("fused_activation", "b", 0)]),
    "SOFTMAX": ("SoftmaxOptions", [("beta", _F, 0.0)]),
    "MEAN": ("ReducerOptions", [("keep_dims", _B, 0)]),
    "LEAKY_RELU": ("LeakyReluOptions", [("alpha", _F, 0.0)]),
    "RESHAPE": ("ReshapeOptions", []),  # new_shape is a vector, read separately
    "SQUEEZE": ("SqueezeOptions", []),  # squeeze_dims likewise
    "PAD": ("PadOptions", []), "PADV2": ("PadV2Options", []),
    "HARD_SWISH": ("HardSwishOptions", []), "QUANTIZE": ("QuantizeOptions", []),
    "DEQUANTIZE": ("DequantizeOptions", []),
    "RELU": (None, []), "RELU6": (None, []), "LOGISTIC": (None, []), "TANH": (None, []),
}
OPTION_FIELDS["MAX_POOL_2D"] = OPTION_FIELDS["AVERAGE_POOL_2D"]
SUPPORTED_OPS = frozenset(OPTION_FIELDS)


@dataclass(frozen=True)
class Quantization:
    """real = scale * (q - zero_point), per tensor (length 1) or along `axis`."""

    scale: np.ndarray  # float32
    zero_point: np.ndarray  # int64
    axis: int  # quantized_dimension

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # NumPy name ("int8", "int32", "float32", ...) or the TFLite name if none
    quantization: Quantization | None
    data: np.ndarray | None = None  # constant contents (read-only copy), else None

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class Operator:
    index: int
    op: str  # builtin name, e.g. "CONV_2D"
    inputs: tuple[int, ...]  # -1 marks an absent optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return f"operator {self.index} ({self.op})"


@dataclass(frozen=True)
class TFLiteModel:
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""


def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _enums() -> tuple[dict[int, str], dict[int, str], dict[str, int]]:
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.BuiltinOptions import BuiltinOptions
    from tflite.TensorType import TensorType

    return (_enum_names(BuiltinOperator), _enum_names(TensorType),
            {v: k for k, v in _enum_names(BuiltinOptions).items()})


def read_tflite(path: str | Path) -> TFLiteModel:
    """The model in `path`, checked; a one-line MnistEdgeError for anything we cannot take."""
    path = Path(path)
    if not path.is_file():
        raise MnistEdgeError(f"{path}: no such file")
    return parse_tflite(path.read_bytes(), str(path))


def parse_tflite(data: bytes, name: str = "<tflite>") -> TFLiteModel:
    try:
        model = _parse(Buffer(data))
    except FlatBufferError as exc:
        raise MnistEdgeError(f"{name}: not a valid TFLite flatbuffer ({exc}); a truncated "
                             "or corrupted file?") from None
    except _Refused as exc:
        raise MnistEdgeError(f"{name}: {exc}") from None
    from .tflite_checks import check_model

    try:
        check_model(model)
    except _Refused as exc:
        raise MnistEdgeError(f"{name}: {exc}") from None
    return model


class _Refused(Exception):
    """A well-formed file with something we do not take (message without the path)."""


def _parse(buf: Buffer) -> TFLiteModel:
    if buf.size < 8 or buf.data[4:8] != b"TFL3":
        raise FlatBufferError("no TFL3 file identifier at bytes 4..8")
    ops_names, type_names, option_ids = _enums()
    root = buf.root()
    version = root.scalar(0, "I")
    if version != 3:
        raise _Refused(f"schema version {version}; only version 3 files are supported")
    subgraphs = root.tables(2, "subgraphs")
    if len(subgraphs) != 1:
        raise _Refused(f"{len(subgraphs)} subgraphs; only single-subgraph models are "
                       "supported (no control flow)")
    buffers = root.tables(4, "buffers")
    codes = [_opcode(t, ops_names) for t in root.tables(1, "operator_codes")]
    sg = subgraphs[0]
    tensors = tuple(_tensor(i, t, buffers, buf, type_names)
                    for i, t in enumerate(sg.tables(0, "tensors")))
    n = len(tensors)
    inputs = _indices(sg.array(1, "i4", "subgraph inputs"), n, "subgraph input")
    outputs = _indices(sg.array(2, "i4", "subgraph outputs"), n, "subgraph output")
    operators = tuple(_operator(i, t, codes, n, option_ids)
                      for i, t in enumerate(sg.tables(3, "operators")))
    description = root.string(3, "description") or ""
    return TFLiteModel(tensors, operators, inputs, outputs, description)


def _indices(arr: np.ndarray | None, n: int, what: str, optional: bool = False
             ) -> tuple[int, ...]:
    vals = tuple(int(v) for v in (arr if arr is not None else ()))
    for v in vals:
        if not (0 <= v < n or (optional and v == -1)):
            raise _Refused(f"{what} index {v} is out of range (the subgraph has {n} tensors)")
    return vals


def _opcode(t: Table, names: dict[int, str]) -> tuple[str, str | None]:
    """(builtin name, custom code) of one OperatorCode; the larger of the two code fields
    is the real one (TFLite's GetBuiltinCode: the deprecated byte holds codes < 127)."""
    deprecated = t.scalar(0, "b", 0)
    code = max(int(deprecated), int(t.scalar(3, "i", 0)))
    custom = t.string(1, "custom_code")
    return names.get(code, f"BUILTIN_{code}"), custom


def _tensor(index: int, t: Table, buffers: list[Table], buf: Buffer,
            type_names: dict[int, str]) -> Tensor:
    what = f"tensor {index}"
    name = t.string(3, f"{what} name") or f"tensor{index}"
    shape_arr = t.array(0, "i4", f"{what} shape")
    shape = tuple(int(d) for d in (shape_arr if shape_arr is not None else ()))
    label = f"tensor {index} '{name}'"
    signature = t.array(7, "i4", f"{what} shape_signature")
    # A -1 in the leading (batch) dimension of shape_signature is what every converter
    # writes for Keras models; TFLM runs `shape` (batch 1) and so do we. A -1 elsewhere,
    # or a signature disagreeing with the shape, is a truly dynamic tensor.
    sig = [] if signature is None else [int(d) for d in signature]
    dynamic = any(d < 0 for d in shape) or (sig and (
        len(sig) != len(shape) or any(s != d for s, d in zip(sig[1:], shape[1:], strict=True))
        or sig[0] not in (-1, shape[0])))
    if dynamic:
        raise _Refused(f"{label} has a dynamic shape (shape {list(shape)}, signature {sig}); "
                       "only static shapes (a dynamic batch at most) are supported")
    if int(np.prod(shape, dtype=object)) > MAX_ELEMENTS:
        raise _Refused(f"{label} has {int(np.prod(shape, dtype=object))} elements "
                       f"(more than {MAX_ELEMENTS})")
    if t.table(6, f"{what} sparsity") is not None:
        raise _Refused(f"{label} is sparse; sparse tensors are not supported")
    code = int(t.scalar(1, "b", 0))
    tname = type_names.get(code, f"TYPE_{code}")
    dtype = _NUMPY_TYPES.get(tname, tname)
    quant = _quantization(t.table(4, f"{what} quantization"), shape, label)
    buffer_index = int(t.scalar(2, "I", 0))
    if buffer_index >= len(buffers):
        raise _Refused(f"{label} names buffer {buffer_index}, but the file has "
                       f"{len(buffers)} buffers")
    raw = _buffer_bytes(buffers[buffer_index], buf, f"buffer {buffer_index}")
    data = None
    if raw is not None and len(raw):
        if dtype not in _NUMPY_TYPES.values():
            raise _Refused(f"{label} holds constant data of type {tname}, which is not "
                           "supported")
        dt = np.dtype(dtype).newbyteorder("<")
        expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if len(raw) != expected:
            raise _Refused(f"{label}: shape {list(shape)} of {dtype} needs {expected} bytes, "
                           f"but buffer {buffer_index} holds {len(raw)}")
        data = np.frombuffer(raw, dt).astype(dt.newbyteorder("=")).reshape(shape)
        data.flags.writeable = False
    return Tensor(index, name, shape, dtype, quant, data)


def _buffer_bytes(b: Table, buf: Buffer, what: str) -> bytes | None:
    """A buffer's bytes: inline `data`, or (files over 2 GB) `offset`/`size` in the file."""
    vec = b.vector(0, 1, f"{what} data")
    if vec is not None and vec[1]:
        start, count = vec
        return buf.data[start:start + count]
    offset, size = int(b.scalar(1, "Q", 0)), int(b.scalar(2, "Q", 0))
    if offset > 1:
        buf.need(offset, size, f"{what} (offset {offset}, size {size})")
        return buf.data[offset:offset + size]
    return None


def _quantization(q: Table | None, shape: tuple[int, ...], label: str) -> Quantization | None:
    if q is None:
        return None
    scale = q.array(2, "f4", f"{label} scale")
    zp = q.array(3, "i8", f"{label} zero_point")
    if scale is None or scale.size == 0:
        return None
    if q.table(5, f"{label} quantization details") is not None:
        raise _Refused(f"{label} uses custom quantization details, which are not supported")
    if zp is None or zp.size != scale.size:
        raise _Refused(f"{label} has {scale.size} scales but "
                       f"{0 if zp is None else zp.size} zero points")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise _Refused(f"{label} has a scale that is not a finite positive number")
    axis = int(q.scalar(6, "i", 0))
    if scale.size > 1 and not (0 <= axis < len(shape) and shape[axis] == scale.size):
        raise _Refused(f"{label}: {scale.size} per-channel scales along dimension {axis} "
                       f"do not match its shape {list(shape)}")
    return Quantization(scale.astype(np.float32), zp.astype(np.int64), axis)


def _operator(index: int, t: Table, codes: list[tuple[str, str | None]], n: int,
              option_ids: dict[str, int]) -> Operator:
    what = f"operator {index}"
    code_index = int(t.scalar(0, "I", 0))
    if code_index >= len(codes):
        raise _Refused(f"{what} names opcode {code_index}, but the file has {len(codes)}")
    op, custom = codes[code_index]
    label = f"{what} ({op})"
    if op == "CUSTOM":
        raise _Refused(f"{what} is the custom op {custom!r}; custom ops are not supported")
    if op not in SUPPORTED_OPS:
        raise _Refused(f"{label} is not supported (supported: {', '.join(sorted(SUPPORTED_OPS))})")
    inputs = _indices(t.array(1, "i4", f"{what} inputs"), n, f"{label} input", optional=True)
    outputs = _indices(t.array(2, "i4", f"{what} outputs"), n, f"{label} output")
    if not outputs:
        raise _Refused(f"{label} has no output")
    return Operator(index, op, inputs, outputs, _options(t, op, label, option_ids))


def _options(t: Table, op: str, label: str, option_ids: dict[str, int]) -> dict[str, Any]:
    table_name, fields = OPTION_FIELDS[op]
    kind = int(t.scalar(3, "B", 0))
    opts_table = t.table(4, f"{label} options") if kind else None
    if opts_table is not None and (table_name is None or kind != option_ids.get(table_name)):
        raise _Refused(f"{label} carries options of union type {kind}, expected "
                       f"{table_name or 'none'}")
    opts: dict[str, Any] = {}
    for slot, (key, fmt, default) in enumerate(fields):
        opts[key] = default if opts_table is None else opts_table.scalar(slot, fmt, default)
    if "padding" in opts:
        opts["padding"] = _enum(PADDINGS, opts["padding"], "padding", label)
    if "fused_activation" in opts:
        opts["fused_activation"] = _enum(ACTIVATIONS, opts["fused_activation"],
                                         "fused activation", label)
    for key in ("keep_num_dims", "keep_dims", "pot_scale_int16", "asymmetric_quantize_inputs"):
        if key in opts:
            opts[key] = bool(opts[key])
    if op in ("RESHAPE", "SQUEEZE") and opts_table is not None:
        vec = opts_table.array(0, "i4", f"{label} options")
        opts["new_shape" if op == "RESHAPE" else "squeeze_dims"] = (
            None if vec is None else tuple(int(v) for v in vec))
    return opts


def _enum(table: dict[int, str], value: int, what: str, label: str) -> str:
    if value not in table:
        raise _Refused(f"{label} has an unknown {what} code {value}")
    return table[value]
