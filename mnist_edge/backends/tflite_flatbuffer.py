"""The one `.tflite` writer: plain tensor / operator dicts -> a TFL3 flatbuffer.

Uses the schema's generated builder functions from the `tflite` package (independent of
the field table in `tflite_reader`, so a wrong slot number there shows up as a mismatch
when a written file is read back) and the `flatbuffers` Builder, whose output is a pure
function of the calls made: the same dicts give the same bytes. `export tflite`
(`backends.tflite`) and the test fixtures both write through `build`.
Tensors and operators are plain dicts:

    tensor:   name, shape, dtype ("int8", "int32", "float32", "int16"), scale, zero_point,
              axis, data (constant contents), signature (shape_signature), buffer (override)
    operator: op (builtin name), inputs, outputs, options (reader names), custom (name)
"""

from __future__ import annotations

import importlib
from typing import Any

import flatbuffers
import numpy as np
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

from ..importers.tflite_reader import ACTIVATIONS, OPTION_FIELDS, PADDINGS

_FIELD_NAMES = {"padding": "Padding", "stride_w": "StrideW", "stride_h": "StrideH",
                "fused_activation": "FusedActivationFunction", "dilation_w": "DilationWFactor",
                "dilation_h": "DilationHFactor", "depth_multiplier": "DepthMultiplier",
                "weights_format": "WeightsFormat", "keep_num_dims": "KeepNumDims",
                "asymmetric_quantize_inputs": "AsymmetricQuantizeInputs",
                "filter_w": "FilterWidth", "filter_h": "FilterHeight",
                "pot_scale_int16": "PotScaleInt16", "axis": "Axis", "beta": "Beta",
                "keep_dims": "KeepDims", "alpha": "Alpha"}
_VECTOR_OPTIONS = {"new_shape": "NewShape", "squeeze_dims": "SqueezeDims"}
_TYPES = {"float32": TensorType.FLOAT32, "int8": TensorType.INT8, "int16": TensorType.INT16,
          "int32": TensorType.INT32, "int64": TensorType.INT64, "uint8": TensorType.UINT8}


def _mod(name: str) -> Any:
    return importlib.import_module(f"tflite.{name}")


def _int_vector(b: flatbuffers.Builder, values, width: str = "i") -> int:
    values = list(values)
    b.StartVector(4 if width == "i" else 8, len(values), 4 if width == "i" else 8)
    for v in reversed(values):
        (b.PrependInt32 if width == "i" else b.PrependInt64)(int(v))
    return b.EndVector()


def _float_vector(b: flatbuffers.Builder, values) -> int:
    values = list(values)
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _options(b: flatbuffers.Builder, op: str, options: dict) -> tuple[int, int]:
    table, fields = OPTION_FIELDS[op]
    if table is None:
        return 0, 0
    m = _mod(table)
    vectors = {k: _int_vector(b, v) for k, v in options.items() if k in _VECTOR_OPTIONS
               and v is not None}
    getattr(m, f"{table}Start")(b)
    for key, _, _ in fields:
        if key in options:
            v = options[key]
            v = {"padding": {n: c for c, n in PADDINGS.items()},
                 "fused_activation": {n: c for c, n in ACTIVATIONS.items()}}.get(key, {}).get(v, v)
            getattr(m, f"{table}Add{_FIELD_NAMES[key]}")(b, v)
    for key, off in vectors.items():
        getattr(m, f"{table}Add{_VECTOR_OPTIONS[key]}")(b, off)
    return getattr(BuiltinOptions, table), getattr(m, f"{table}End")(b)


def _tensor(b: flatbuffers.Builder, t: dict, buffer_index: int) -> int:
    T = _mod("Tensor")
    Q = _mod("QuantizationParameters")
    name = b.CreateString(t["name"])
    shape = _int_vector(b, t["shape"])
    sig = _int_vector(b, t["signature"]) if t.get("signature") is not None else None
    quant = None
    if t.get("scale") is not None:
        scale = _float_vector(b, np.atleast_1d(t["scale"]))
        zp = _int_vector(b, np.atleast_1d(t.get("zero_point", 0)), "q")
        Q.QuantizationParametersStart(b)
        Q.QuantizationParametersAddScale(b, scale)
        Q.QuantizationParametersAddZeroPoint(b, zp)
        Q.QuantizationParametersAddQuantizedDimension(b, int(t.get("axis", 0)))
        quant = Q.QuantizationParametersEnd(b)
    T.TensorStart(b)
    T.TensorAddShape(b, shape)
    T.TensorAddType(b, _TYPES[t["dtype"]])
    T.TensorAddBuffer(b, t.get("buffer", buffer_index))
    T.TensorAddName(b, name)
    if quant is not None:
        T.TensorAddQuantization(b, quant)
    if sig is not None:
        T.TensorAddShapeSignature(b, sig)
    return T.TensorEnd(b)


def _table_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _subgraph(b: flatbuffers.Builder, tensors: list[dict], operators: list[dict],
              inputs: list[int], outputs: list[int], opcode_of: dict) -> int:
    S = _mod("SubGraph")
    Op = _mod("Operator")
    t_offs, next_buffer = [], 1
    for t in tensors:
        has_data = t.get("data") is not None
        t_offs.append(_tensor(b, t, next_buffer if has_data else 0))
        next_buffer += has_data
    o_offs = []
    for op in operators:
        kind, opts = _options(b, op["op"], op.get("options", {})) if op["op"] in OPTION_FIELDS \
            else (0, 0)
        ins, outs = _int_vector(b, op["inputs"]), _int_vector(b, op["outputs"])
        Op.OperatorStart(b)
        Op.OperatorAddOpcodeIndex(b, opcode_of[(op["op"], op.get("custom"))])
        Op.OperatorAddInputs(b, ins)
        Op.OperatorAddOutputs(b, outs)
        if kind:
            Op.OperatorAddBuiltinOptionsType(b, kind)
            Op.OperatorAddBuiltinOptions(b, opts)
        o_offs.append(Op.OperatorEnd(b))
    tv, ov = _table_vector(b, t_offs), _table_vector(b, o_offs)
    iv, outv = _int_vector(b, inputs), _int_vector(b, outputs)
    S.SubGraphStart(b)
    S.SubGraphAddTensors(b, tv)
    S.SubGraphAddInputs(b, iv)
    S.SubGraphAddOutputs(b, outv)
    S.SubGraphAddOperators(b, ov)
    return S.SubGraphEnd(b)


def build(tensors: list[dict], operators: list[dict], inputs: list[int], outputs: list[int],
          subgraphs: int = 1, description: str | None = None) -> bytes:
    """A complete TFL3 flatbuffer; constant tensors get buffers 1..n (buffer 0 is empty).
    `subgraphs` > 1 repeats the subgraph (hostile-file tests: the reader refuses it)."""
    b = flatbuffers.Builder(1024)
    M, C, B = _mod("Model"), _mod("OperatorCode"), _mod("Buffer")
    keys = list(dict.fromkeys((op["op"], op.get("custom")) for op in operators))
    opcode_of = {k: i for i, k in enumerate(keys)}
    code_offs = []
    for op, custom in keys:
        code = getattr(BuiltinOperator, op)
        custom_off = b.CreateString(custom) if custom else None
        C.OperatorCodeStart(b)
        C.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        C.OperatorCodeAddBuiltinCode(b, code)
        if custom_off is not None:
            C.OperatorCodeAddCustomCode(b, custom_off)
        code_offs.append(C.OperatorCodeEnd(b))
    buf_offs = []
    for data in [None] + [t["data"] for t in tensors if t.get("data") is not None]:
        raw = b.CreateByteVector(np.ascontiguousarray(data).tobytes()) if data is not None \
            else None
        B.BufferStart(b)
        if raw is not None:
            B.BufferAddData(b, raw)
        buf_offs.append(B.BufferEnd(b))
    sgs = [_subgraph(b, tensors, operators, inputs, outputs, opcode_of)
           for _ in range(subgraphs)]
    codes_v, sg_v, buf_v = (_table_vector(b, code_offs), _table_vector(b, sgs),
                            _table_vector(b, buf_offs))
    desc = b.CreateString(description) if description is not None else None
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    if desc is not None:
        M.ModelAddDescription(b, desc)
    M.ModelAddOperatorCodes(b, codes_v)
    M.ModelAddSubgraphs(b, sg_v)
    M.ModelAddBuffers(b, buf_v)
    b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
