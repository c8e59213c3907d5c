"""Keras models -> the ONNX route: an in-memory Keras 3 model, a `.keras` file or a legacy
HDF5 `.h5` (Keras 2.x / TF-Keras `model.save()`).

Every Keras model, in memory or loaded from a file, takes one path: Keras 3 on the torch
backend (KERAS_BACKEND=torch, no TensorFlow) exports it with `model.export(format="onnx")`
into a temporary folder, and `import_exported` imports that file like any ONNX model and
keeps it in the run as source.onnx. A file therefore becomes exactly the float graph its
in-memory model's ONNX export gives.

A model file is untrusted. Keras can deserialize Python code from it (a `Lambda` layer
carries marshalled bytecode) and can look up custom classes by name, so nothing in the
file reaches Keras before this module has read it itself, with the standard library's
`zipfile` and `json` and with h5py:

* the file is copied, size-bounded, into a private temporary folder, and only that copy
  is checked and loaded (what Keras reads is what was checked);
* a `.keras` zip must hold config.json and model.weights.h5 (metadata.json allowed),
  nothing else; config.json (bounded size) must be JSON; Keras reads a fresh zip holding
  only the checked config.json (compile_config dropped) and the weights file;
* a `.h5` must be HDF5 with a `model_config` attribute (a weights-only file is not a
  model); its JSON is checked the same way;
* the config is walked in full: every layer's class must be a built-in this importer maps
  (`LAYERS`), with no `module` outside keras and no custom `registered_name`; every nested
  object (dtype policies, initializers, regularizers, constraints, functional-graph
  tensors) must be in `OBJECTS`; every `activation` must be one the ONNX route maps;
  a `Lambda`, a `function` object or a custom class is refused by name;
* every HDF5 file (the .keras weights, the .h5) is walked without following links:
  soft or external links, external or virtual datasets, non-numeric datasets, filters
  other than the built-in compressors and datasets over the size bound are refused;
* the checks run in a child process (`check_file_isolated`): a crash of libhdf5 on
  malformed bytes kills the child, not mnist-edge, and is refused in one line; Keras
  then reads only bytes libhdf5 has already walked in full without crashing;
* then Keras loads the copy with `safe_mode=True, compile=False`.

Refusals are `MnistEdgeError` one-liners naming the file and, for layers, the layer.
Keras and h5py are imported only when a Keras model is imported.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MnistEdgeError

SUFFIXES = (".keras", ".h5", ".hdf5")
MAX_FILE_BYTES = 256 << 20  # an MNIST-class model is well under 10 MB
MAX_CONFIG_BYTES = 4 << 20
MAX_DEPTH = 64  # nesting of the config's JSON
CONFIG, WEIGHTS, METADATA = "config.json", "model.weights.h5", "metadata.json"
ZIP_MEMBERS = {CONFIG, WEIGHTS, METADATA}

# The built-in layers whose ONNX export the importer maps (tests/test_keras_files.py
# exports each). Anything else is refused before Keras loads the file.
LAYERS = frozenset({
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "ZeroPadding2D",
    "Flatten", "Reshape", "Dropout", "BatchNormalization", "Activation", "ReLU",
    "LeakyReLU", "ELU", "Softmax", "Add", "Concatenate", "Rescaling", "Normalization",
})
MODELS = frozenset({"Sequential", "Functional", "Model"})  # containers of layers
# Values inside a layer's config: dtype policies (Keras 3, and Keras 2 mixed precision),
# initializers, regularizers, constraints, and the tensors of a functional graph.
OBJECTS = frozenset({
    "DTypePolicy", "FloatDTypePolicy", "Policy",
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity",
    "IdentityInitializer", "LecunNormal", "LecunUniform", "Ones", "Orthogonal",
    "OrthogonalInitializer", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "Zeros",
    "L1", "L2", "L1L2", "OrthogonalRegularizer",
    "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm",
    "__keras_tensor__", "__tuple__",
})
# `activation=` values the ONNX route maps (Softmax and LogSoftmax as the last op only).
ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "sigmoid", "tanh", "elu", "selu", "gelu", "silu", "swish",
    "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu", "softmax", "log_softmax",
})
CODE_CLASSES = {"Lambda": "a Lambda layer (Python code in the file)",
                "TFOpLambda": "a TensorFlow-op Lambda layer (Python code in the file)",
                "__lambda__": "a lambda (marshalled Python code)",
                "function": "a Python function referenced by name"}
# HDF5 filters: deflate, shuffle, fletcher32, szip, scaleoffset, nbit, lzf.
H5_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})
H5_DTYPE_KINDS = frozenset("fiub")


@dataclass
class KerasFile:
    """What the checks read from a Keras file before Keras saw it."""

    path: Path
    format: str                # "keras" or "h5"
    keras_version: str | None
    layers: list[str]          # "name (Class)" in the file's order
    sha256: str                # of the bytes checked (and loaded)

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.path.resolve()), "sha256": self.sha256, "format": self.format,
                "keras_version": self.keras_version, "layers": self.layers}


def is_keras_file(path: str | Path) -> bool:
    return str(path).lower().endswith(SUFFIXES)


# ---------------------------------------------------------------------------- the checks
def check_config(config: Any, where: str) -> list[str]:
    """Refuse a model config holding anything but the mapped built-in layers; returns
    the layers as "name (Class)"."""
    if not isinstance(config, dict) or config.get("class_name") not in MODELS:
        kind = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise MnistEdgeError(f"{where}: the model is a {kind!r}, not a Keras Sequential or "
                             "functional model")
    found: list[str] = []
    _check_model(config, where, found, 0)
    if not found:
        raise MnistEdgeError(f"{where}: the model has no layers")
    return found


def _check_model(obj: dict[str, Any], where: str, found: list[str], depth: int) -> None:
    _check_identity(obj, where, f"model {_name_of(obj)!r}", allow_models=True)
    config = obj.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise MnistEdgeError(f"{where}: model {_name_of(obj)!r} has no list of layers")
    what = f"model {_name_of(obj)!r}"
    for key, value in obj.items():  # build_config, a nested model's inbound_nodes, ...
        if key not in ("class_name", "module", "registered_name", "config", "compile_config"):
            _check_value(value, where, what, depth + 1)
    for key, value in config.items():
        if key != "layers":
            _check_value(value, where, what, depth + 1)
    for layer in config["layers"]:
        if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
            raise MnistEdgeError(f"{where}: a layer of model {_name_of(obj)!r} is not a "
                                 "serialized Keras layer")
        if layer["class_name"] in MODELS:  # a nested Sequential or functional model
            _check_model(layer, where, found, depth + 1)
            continue
        _check_layer(layer, where, found, depth + 1)


def _check_layer(layer: dict[str, Any], where: str, found: list[str], depth: int) -> None:
    cls, name = layer["class_name"], _name_of(layer)
    what = f"layer {name!r}"
    if cls in CODE_CLASSES:
        raise MnistEdgeError(f"{where}: {what} is {CODE_CLASSES[cls]}: refused, never loaded "
                             "or run")
    _check_identity(layer, where, what)
    if cls not in LAYERS:
        raise MnistEdgeError(f"{where}: {what} ({cls}) cannot be imported; supported Keras "
                             f"layers: {', '.join(sorted(LAYERS))}")
    config = layer.get("config")
    if not isinstance(config, dict):
        raise MnistEdgeError(f"{where}: {what} ({cls}) has no config")
    for key, value in layer.items():  # inbound_nodes, build_config, ...
        if key not in ("class_name", "module", "registered_name", "config"):
            _check_value(value, where, what, depth + 1)
    _check_value(config, where, what, depth + 1)  # refuses functions and custom objects
    activation = config.get("activation")
    if activation is not None and (not isinstance(activation, str)
                                   or activation not in ACTIVATIONS):
        shown = activation if isinstance(activation, str) else _class_of(activation)
        raise MnistEdgeError(f"{where}: {what} ({cls}) uses activation {shown!r}, which "
                             f"cannot be imported; supported: {', '.join(sorted(ACTIVATIONS))}")
    found.append(f"{name} ({cls})")


def _check_value(value: Any, where: str, what: str, depth: int) -> None:
    """Any value inside a layer: plain JSON, or serialized objects from `OBJECTS`."""
    if depth > MAX_DEPTH:
        raise MnistEdgeError(f"{where}: {what}: the config nests deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        if "class_name" in value:
            cls = value["class_name"]
            if cls in CODE_CLASSES:
                raise MnistEdgeError(f"{where}: {what} holds {CODE_CLASSES[cls]}: refused, "
                                     "never loaded or run")
            _check_identity(value, where, what, nested=True)
            if cls not in OBJECTS:
                raise MnistEdgeError(f"{where}: {what} holds an object of class {cls!r}, not "
                                     "a built-in initializer, regularizer, constraint or "
                                     "dtype policy: refused, never loaded or run")
        for item in value.values():
            _check_value(item, where, what, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, where, what, depth + 1)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise MnistEdgeError(f"{where}: {what}: unexpected {type(value).__name__} in the config")


def _check_identity(obj: dict[str, Any], where: str, what: str,
                    allow_models: bool = False, nested: bool = False) -> None:
    """A built-in's identity: `module` keras or keras.*, no custom `registered_name`.
    `nested`: `obj` is a value inside `what` (an initializer, ...), not `what` itself."""
    cls = obj.get("class_name")
    module, registered = obj.get("module"), obj.get("registered_name")
    if not isinstance(cls, str) or not cls.replace("_", "").isalnum():
        raise MnistEdgeError(f"{where}: {what} has a malformed class name {cls!r}")
    subject = f"{what} holds {cls!r}," if nested else f"{what} ({cls}) is"
    if module is not None and (not isinstance(module, str)
                               or not (module == "keras" or module.startswith("keras."))):
        raise MnistEdgeError(f"{where}: {subject} a custom class from module {module!r}: "
                             "refused, never loaded or run")
    if registered is not None and registered != cls:
        raise MnistEdgeError(f"{where}: {subject} a custom object registered as "
                             f"{registered!r}: refused, never loaded or run")
    if not allow_models and cls in MODELS:
        raise MnistEdgeError(f"{where}: {what} holds a model: refused")


def _name_of(obj: dict[str, Any]) -> str:
    config = obj.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return str(name if name is not None else obj.get("name", "?"))[:80]


def _class_of(value: Any) -> str:
    return str(value.get("class_name", "?")) if isinstance(value, dict) else type(value).__name__


def _parse_json(text: bytes | str, where: str, what: str) -> Any:
    if len(text) > MAX_CONFIG_BYTES:
        raise MnistEdgeError(f"{where}: {what} is over {MAX_CONFIG_BYTES >> 20} MiB; not a "
                             "small model's config")

    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError too
        raise MnistEdgeError(f"{where}: {what} is not valid JSON ({_short(exc)})") from None


def check_h5(source: Any, where: str, what: str) -> None:
    """Walk an HDF5 file without following links; refuse anything a weights file does not
    need (links, external or virtual storage, non-numeric data, unknown filters)."""
    import h5py

    try:
        with h5py.File(source, "r") as f:
            _walk_h5(f, where, what, 0)
    except MnistEdgeError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError, RuntimeError
        raise MnistEdgeError(f"{where}: {what} is not a readable HDF5 file "
                             f"({_short(exc)})") from None


def _walk_h5(group: Any, where: str, what: str, depth: int) -> None:
    import h5py

    if depth > MAX_DEPTH:
        raise MnistEdgeError(f"{where}: {what} nests groups deeper than {MAX_DEPTH}")
    for key in group:
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise MnistEdgeError(f"{where}: {what} holds an HDF5 {type(link).__name__} "
                                 f"({group.name}/{key}): refused")
        item = group[key]
        if isinstance(item, h5py.Group):
            _walk_h5(item, where, what, depth + 1)
        elif isinstance(item, h5py.Dataset):
            _check_dataset(item, where, what)
        else:
            raise MnistEdgeError(f"{where}: {what}: unexpected HDF5 object at {item.name}")


def _check_dataset(ds: Any, where: str, what: str) -> None:
    if ds.external or ds.is_virtual:
        raise MnistEdgeError(f"{where}: {what}: dataset {ds.name} reads its data from other "
                             "files: refused")
    if ds.dtype.kind not in H5_DTYPE_KINDS:
        raise MnistEdgeError(f"{where}: {what}: dataset {ds.name} holds {ds.dtype} values, "
                             "not numbers")
    size = ds.dtype.itemsize
    for dim in ds.shape or ():
        size *= dim
    if size > MAX_FILE_BYTES:
        raise MnistEdgeError(f"{where}: {what}: dataset {ds.name} declares {size:,} bytes")
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in H5_FILTERS:
            raise MnistEdgeError(f"{where}: {what}: dataset {ds.name} uses HDF5 filter "
                                 f"{code}, not a built-in compressor: refused")


def _read_bounded(path: Path) -> bytes:
    if not path.is_file():
        raise MnistEdgeError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise MnistEdgeError(f"{path}: over {MAX_FILE_BYTES >> 20} MiB; not a small model")
    return data


def _check_keras_zip(data: bytes, where: str) -> tuple[dict[str, Any], bytes, str | None]:
    """The .keras zip's checked config, its weights file's bytes and the Keras version."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise MnistEdgeError(f"{where}: not a .keras file (not a zip archive: "
                             f"{_short(exc)})") from None
    with zf:
        names = [info.filename for info in zf.infolist()]
        extra = sorted(set(names) - ZIP_MEMBERS)
        if extra:
            raise MnistEdgeError(f"{where}: not a plain .keras file: it holds "
                                 f"{', '.join(map(repr, extra[:5]))}; expected only "
                                 f"{CONFIG}, {WEIGHTS} and {METADATA}")
        if len(names) != len(set(names)):
            raise MnistEdgeError(f"{where}: the zip names a member twice: refused")
        for member in (CONFIG, WEIGHTS):
            if member not in names:
                raise MnistEdgeError(f"{where}: not a .keras model file (no {member} in the "
                                     "zip)")
        members: dict[str, bytes] = {}
        for info in zf.infolist():
            limit = MAX_CONFIG_BYTES if info.filename != WEIGHTS else MAX_FILE_BYTES
            if info.file_size > limit or info.flag_bits & 0x1:
                raise MnistEdgeError(f"{where}: {info.filename} is encrypted or over "
                                     f"{limit >> 20} MiB: refused")
            try:
                with zf.open(info) as member:
                    members[info.filename] = member.read(limit + 1)
            except Exception as exc:  # BadZipFile (CRC), zlib.error, EOFError, ...
                raise MnistEdgeError(f"{where}: unreadable {info.filename} "
                                     f"({_short(exc)})") from None
            if len(members[info.filename]) > limit:
                raise MnistEdgeError(f"{where}: {info.filename} is over {limit >> 20} MiB")
    config = _parse_json(members[CONFIG], where, CONFIG)
    version = None
    if METADATA in members:
        meta = _parse_json(members[METADATA], where, METADATA)
        if isinstance(meta, dict) and isinstance(meta.get("keras_version"), str):
            version = meta["keras_version"][:40]
    return config, members[WEIGHTS], version


def check_file(path: str | Path, copy_to: Path | None = None) -> KerasFile:
    """Check a Keras file without Keras. With `copy_to` (a private folder), write there the
    checked model Keras may load (`model.keras` or `model.h5`)."""
    path = Path(path)
    where = str(path)
    data = _read_bounded(path)
    digest = hashlib.sha256(data).hexdigest()
    if path.name.lower().endswith(".keras"):
        config, weights, version = _check_keras_zip(data, where)
        layers = check_config(config, where + ": " + CONFIG)
        check_h5(io.BytesIO(weights), where, WEIGHTS)
        if copy_to is not None:
            config = {**config, "compile_config": None}  # never compiled, never read
            with zipfile.ZipFile(copy_to / "model.keras", "w") as zf:
                zf.writestr(CONFIG, json.dumps(config))
                zf.writestr(WEIGHTS, weights)
        return KerasFile(path, "keras", version, layers, digest)
    if not data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise MnistEdgeError(f"{where}: not a Keras .h5 file (no HDF5 signature)")
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version")
    except Exception as exc:
        raise MnistEdgeError(f"{where}: not a readable HDF5 file ({_short(exc)})") from None
    if raw is None:
        raise MnistEdgeError(f"{where}: no model_config attribute: a weights-only file, not a "
                             "saved Keras model")
    if not isinstance(raw, (bytes, str)):
        raise MnistEdgeError(f"{where}: model_config is not a JSON string")
    layers = check_config(_parse_json(raw, where, "model_config"), where + ": model_config")
    check_h5(io.BytesIO(data), where, "the file")  # model_weights (training_config unread)
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    if copy_to is not None:
        (copy_to / "model.h5").write_bytes(data)
    return KerasFile(path, "h5", str(version)[:40] if version is not None else None, layers,
                     digest)


CHECK_TIMEOUT_S = 120.0

_CHILD = """
import json, sys
from pathlib import Path
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers.keras_file import check_file
request = json.load(sys.stdin)
try:
    info = check_file(request["path"], Path(request["copy_to"]))
except MnistEdgeError as exc:
    json.dump({"error": str(exc)}, sys.stdout)
else:
    json.dump({"format": info.format, "keras_version": info.keras_version,
               "layers": info.layers, "sha256": info.sha256}, sys.stdout)
"""


def check_file_isolated(path: str | Path, copy_to: Path) -> KerasFile:
    """`check_file` in a child Python: libhdf5 is C code parsing untrusted bytes, and a
    crash there (a segfault, an abort, a hang) must end in a one-line refusal, not take
    the importing process down."""
    path = Path(path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    request = json.dumps({"path": str(path), "copy_to": str(copy_to)})
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD], input=request, text=True,
                               capture_output=True, timeout=CHECK_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise MnistEdgeError(f"{path}: reading the HDF5 structure took over "
                             f"{CHECK_TIMEOUT_S:.0f} s: refused") from None
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        raise MnistEdgeError(f"{path}: libhdf5 crashed reading the file ({name}): a "
                             "malformed HDF5 file, refused")
    try:
        answer = json.loads(child.stdout)
    except ValueError:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        raise MnistEdgeError(f"{path}: checking the file failed (exit {child.returncode}: "
                             f"{_short(last)})") from None
    if "error" in answer:
        raise MnistEdgeError(answer["error"])
    return KerasFile(path, answer["format"], answer["keras_version"], answer["layers"],
                     answer["sha256"])


# ---------------------------------------------------------------------------- Keras
def keras_module() -> Any:
    """Keras 3 on the torch backend (chosen before its first import)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        raise MnistEdgeError("Keras models need Keras 3 on the torch backend: pip install "
                             f"'keras>=3.8' (no TensorFlow needed) ({_short(exc)})") from None
    except Exception as exc:  # e.g. KERAS_BACKEND=tensorflow without TensorFlow
        raise MnistEdgeError(f"Keras does not start ({_short(exc)}); mnist-edge runs it on "
                             "the torch backend: KERAS_BACKEND=torch") from None
    backend = keras.backend.backend()
    if backend != "torch":
        raise MnistEdgeError(f"Keras runs on the {backend} backend; mnist-edge exports Keras "
                             "models on the torch backend: set KERAS_BACKEND=torch")
    return keras


def load_file(path: str | Path) -> tuple[Any, KerasFile]:
    """The Keras model in a checked file, loaded by Keras 3 (safe_mode, not compiled)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-keras-") as tmp:
        info = check_file_isolated(path, Path(tmp))
        keras = keras_module()
        copy = Path(tmp) / ("model.keras" if info.format == "keras" else "model.h5")
        try:
            model = keras.saving.load_model(str(copy), compile=False, safe_mode=True)
        except Exception as exc:
            raise MnistEdgeError(f"{path}: Keras could not load the model ({_short(exc)})"
                                 ) from None
    return model, info


def export_onnx(model: Any, path: Path) -> None:
    """Keras 3's own ONNX export (through torch.onnx on the torch backend). A model never
    called (a loaded file, or built but not trained) is first called once on zeros."""
    import warnings

    import numpy as np

    try:
        shape = tuple(model.inputs[0].shape[1:])
    except Exception:  # not a built functional/Sequential model: let export say why
        shape = None
    try:
        with warnings.catch_warnings():
            # on the torch backend the export traces the model: Keras's own shape arithmetic
            # raises TracerWarnings that say nothing about the user's model
            warnings.simplefilter("ignore")
            if shape is not None and all(isinstance(d, int) for d in shape):
                model(np.zeros((1, *shape), np.float32), training=False)
            model.export(str(path), format="onnx", verbose=False)
    except MnistEdgeError:
        raise
    except Exception as exc:
        raise MnistEdgeError(f"Keras export to ONNX failed: {_short(exc)}") from exc


def import_keras(model: Any, runs: str | Path = "runs", name: str | None = None,
                 normalize: tuple[Any, Any] | None = None, input_kind: str = "pixels",
                 data_dir: Any = None, check_images: int | None = None
                 ) -> tuple[Path, dict[str, Any]]:
    """A Keras model (in memory, or a `.keras`/`.h5` path) -> `<runs>/<name>`, through its
    ONNX export; import.json's `keras` entry describes the file it came from."""
    from . import CHECK_IMAGES, _run_for, import_exported

    extra: dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        name, _ = _run_for(path, runs, name)  # before any work
        model, info = load_file(path)
        extra = {"keras": info.to_json(), "imported_from": str(path.resolve())}
    name = name or "keras-model"
    with tempfile.TemporaryDirectory(prefix="mnist-edge-keras-") as tmp:
        onnx_path = Path(tmp) / f"{name}.onnx"
        export_onnx(model, onnx_path)
        return import_exported(onnx_path, runs, name, normalize, input_kind, data_dir, extra,
                               check_images or CHECK_IMAGES)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
