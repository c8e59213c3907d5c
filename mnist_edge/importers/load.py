"""Reading an ONNX file as exporters write it: one protobuf, maybe with external weight files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MnistEdgeError

OPSETS = (8, 21)  # default-domain opsets the importer maps (what torch, Keras and tf2onnx write)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _external_files(model, base: Path) -> None:
    """Every external-data reference must name an existing file that is long enough."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        target = (base / info.location).resolve()
        if not target.is_relative_to(base.resolve()):
            raise MnistEdgeError(f"initializer {tensor.name!r}: external data file "
                                 f"{info.location!r} lies outside the model's folder {base}; "
                                 "refused (a model file may only read files beside it)")
        if not target.is_file():
            raise MnistEdgeError(f"initializer {tensor.name!r}: external data file "
                                 f"{info.location!r} not found in {base}; copy it next to "
                                 "the .onnx file")
        size = target.stat().st_size
        if info.length is not None and (info.offset or 0) + info.length > size:
            raise MnistEdgeError(f"initializer {tensor.name!r}: external data file "
                                 f"{info.location!r} is truncated ({size} bytes, needs "
                                 f"{(info.offset or 0) + info.length})")


@dataclass
class Loaded:
    """A model file as read: `model` repaired and checked, `original` as stored (what
    onnxruntime runs in the float check), `repaired` what `repair.repair` changed."""

    model: Any
    original: Any
    repaired: list[dict[str, Any]] = field(default_factory=list)


def load_onnx(path: str | Path):
    """The model with all weights in memory, repaired and checked; one-line errors for what
    users get wrong."""
    return read_onnx(path).model


def read_onnx(path: str | Path) -> Loaded:
    """`load_onnx`, keeping the file's own graph and what was repaired."""
    import onnx
    from google.protobuf.message import DecodeError

    from .repair import repair

    path = Path(path)
    if not path.is_file():
        raise MnistEdgeError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MnistEdgeError(f"{path}: not a readable ONNX model ({reason}); "
                             "a truncated or non-ONNX file?") from None
    if not model.graph.node or not model.opset_import or model.ir_version <= 0:
        raise MnistEdgeError(f"{path}: not an ONNX model (no graph nodes or no opset); "
                             "a truncated or non-ONNX file?")
    _external_files(model, path.parent)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise MnistEdgeError(f"{path}: cannot read its external data ({exc})") from None
    version = opset_of(model)
    if not OPSETS[0] <= version <= OPSETS[1]:
        raise MnistEdgeError(f"{path}: opset {version} is not supported (supported: "
                             f"{OPSETS[0]}..{OPSETS[1]}); re-export with opset_version=18")
    original = onnx.ModelProto()
    original.CopyFrom(model)
    repaired = repair(model, path.stem or "main")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise MnistEdgeError(f"{path}: invalid ONNX model "
                             f"({str(exc).strip().splitlines()[0]})") from None
    return Loaded(model, original if repaired else model, repaired)


def opset_of(model) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise MnistEdgeError("the model imports no default-domain (ai.onnx) opset")
