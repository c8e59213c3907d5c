"""Bring your own model: a float ONNX file (PyTorch, Keras, tf2onnx), a Keras file (`.keras`,
legacy `.h5`: see `keras_file`) or an int8 `.tflite` -> a run folder.

`import_onnx` loads the file (external data too), maps it to the FloatGraph the zoo's
folding produces (`convert`), checks it against onnxruntime on test images (`check`) and
writes `runs/<name>/` atomically: `<name>.fgraph.*`, `import.json`, `report.json`.
After that every command that starts from a float graph works on the run.

`import_tflite` reads an int8 `.tflite` (already quantized: no float graph, no
calibration) straight into `<name>.qgraph.*` in the `tflite` arithmetic, plus
`import.json` (the source's path and sha256, which `validate --backend tflm` runs). A
float `.tflite` (nothing quantized) becomes `<name>.fgraph.*` instead, checked against
TFLite Micro's float kernels, for `quantize` to take like an ONNX import.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from .. import fgraph, inputs
from ..errors import MnistEdgeError
from ..paths import atomic_dir, atomic_write, write_manifest
from ..report import update_report

IMPORT_FILE = "import.json"
SOURCE_ONNX = "source.onnx"
LAYOUTS = ("auto", "nchw", "nhwc")
CHECK_IMAGES = 1000


def parse_normalize(text: str | None) -> tuple[Any, Any] | None:
    """'MEAN,STD' -> (mean, std), as torchvision's Normalize((mean,), (std,)); per channel
    'M1,M2,M3/S1,S2,S3' -> ((m1, m2, m3), (s1, s2, s3)), as Normalize(mean, std)."""
    if text is None:
        return None
    try:
        if "/" in text:
            mean, std = (tuple(float(v) for v in part.split(",")) for part in text.split("/"))
            if len(mean) != len(std):
                raise ValueError
        else:
            mean, std = (float(v) for v in text.split(","))
    except ValueError:
        raise MnistEdgeError(f"--normalize {text!r}: expected MEAN,STD (e.g. 0.1307,0.3081) "
                             "or one per channel, M1,M2,M3/S1,S2,S3") from None
    if not all(s > 0 for s in (std if isinstance(std, tuple) else (std,))):
        raise MnistEdgeError(f"--normalize {text!r}: STD must be positive")
    return mean, std


def is_imported(run_dir: str | Path) -> bool:
    return (Path(run_dir) / IMPORT_FILE).exists()


def load_import_info(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / IMPORT_FILE).read_text())


SUFFIXES = (".onnx", ".tflite", ".keras", ".h5", ".hdf5")


def default_name(path: str | Path) -> str:
    stem = Path(path).name
    for suffix in SUFFIXES:
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "imported"


def import_onnx(path: str | Path, runs: str | Path = "runs", name: str | None = None,
                normalize: tuple[float, float] | None = None, layout: str = "auto",
                data_dir: str | None = None, check_images: int = CHECK_IMAGES,
                input_kind: str = "pixels", keep_source: bool = False,
                extra: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Import `path` into `<runs>/<name>`; returns the run folder and import.json's content.

    `keep_source` copies the file (and `*.data` external weights beside it) into the run as
    `source.onnx`, which import.json then names: for files exported into a temporary folder
    (`import_exported`). `extra` adds entries to import.json (and its `imported_from`,
    if it has one, to report.json)."""
    from .check import float_check
    from .convert import convert
    from .load import opset_of, read_onnx, sha256

    if layout not in LAYOUTS:
        raise MnistEdgeError(f"--layout {layout!r}: choose from {', '.join(LAYOUTS)}")
    start = time.time()
    path = Path(path)
    name, run_dir = _run_for(path, runs, name)
    loaded = read_onnx(path)
    model = loaded.model
    if input_kind not in fgraph.INPUT_KINDS:
        raise MnistEdgeError(f"--input {input_kind!r}: choose from "
                             f"{', '.join(fgraph.INPUT_KINDS)}")
    if normalize is not None and input_kind != "pixels":
        raise MnistEdgeError("--normalize applies to pixel inputs, not to --input features")
    graph, info = convert(model, name, layout, normalize, input_kind)
    check_x, check_source = inputs.sample(data_dir, inputs.spec_of(graph), check_images)
    # onnxruntime runs the file as stored: the check covers the repairs too
    check = float_check(loaded.original, graph, info, check_x, normalize)
    check["data"] = check_source
    doc = {
        "source": str(path.resolve()), "sha256": sha256(path),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "opset": opset_of(model), "layout": info["layout"], "input": info["input_name"],
        "input_shape": list(graph.input_shape), "input_kind": graph.input_kind,
        "normalize": list(normalize) if normalize else None,
        "input_norm": graph.to_json()["input_norm"],
        "dropped": info["dropped"], "folded": info["folded"], "repaired": loaded.repaired,
        "ops": [op.kind for op in graph.ops], "float_check": check,
        "argmax_unchanged": bool(info["presoftmax"]) or None,
        **(extra or {}),
    }
    imported_from = doc.pop("imported_from", None)
    if keep_source:
        doc["source"] = str((run_dir / SOURCE_ONNX).resolve())
    with atomic_dir(run_dir) as tmp:
        write_manifest(tmp, {"imported_from": doc["source"]})  # a re-import replaces it
        if keep_source:
            shutil.copyfile(path, tmp / SOURCE_ONNX)
            for extra_data in path.parent.glob("*.data"):  # external weights, if any
                shutil.copyfile(extra_data, tmp / extra_data.name)
        fgraph.save(graph, tmp / name)
        with atomic_write(tmp / IMPORT_FILE, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        update_report(tmp, {"model": name, "imported_from": imported_from or doc["source"],
                            "import": {"float_max_abs_diff_vs_onnxruntime":
                                       check["max_abs_logit_diff"],
                                       "float_relative_diff": check["relative_diff"],
                                       "dropped": [d["op_type"] for d in info["dropped"]],
                                       "layout": info["layout"]},
                            "seconds": {"import": round(time.time() - start, 2)}})
    return run_dir, doc


def import_exported(path: str | Path, runs: str | Path, name: str,
                    normalize: tuple[Any, Any] | None = None, input_kind: str = "pixels",
                    data_dir: Any = None, extra: dict[str, Any] | None = None,
                    check_images: int = CHECK_IMAGES) -> tuple[Path, dict[str, Any]]:
    """Import an ONNX file just exported into a temporary folder (torch.onnx, Keras) and
    keep it in the run as source.onnx."""
    return import_onnx(path, runs, name, normalize, "auto", data_dir, check_images,
                       input_kind, keep_source=True, extra=extra)


def _run_for(path: Path, runs: str | Path, name: str | None) -> tuple[str, Path]:
    """The run's name and folder, checked before any work."""
    name = name or default_name(path)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise MnistEdgeError(f"--name {name!r}: use letters, digits, '_', '-', '.'")
    run_dir = Path(runs) / name
    if run_dir.exists() and any(run_dir.iterdir()) and not is_imported(run_dir):
        raise MnistEdgeError(f"{run_dir} exists and is not an imported run; choose another "
                             "--name or remove it")
    return name, run_dir


def import_tflite(path: str | Path, runs: str | Path = "runs", name: str | None = None
                  ) -> tuple[Path, dict[str, Any]]:
    """Import an int8 `.tflite` into `<runs>/<name>`: the QGraph and import.json, written
    only when the whole file mapped (a refused or hostile file leaves nothing behind)."""
    from .. import qgraph
    from .load import sha256
    from .tflite_fgraph import is_float_model
    from .tflite_qgraph import tflite_to_qgraph
    from .tflite_reader import read_tflite

    start = time.time()
    path = Path(path)
    name, run_dir = _run_for(path, runs, name)
    model = read_tflite(path)
    if is_float_model(model):
        return _import_float_tflite(path, model, name, run_dir, start)
    graph, mapped = tflite_to_qgraph(model, name)
    t_in, t_out = (model.tensors[model.inputs[0]], model.tensors[model.outputs[0]])
    doc = {
        "format": "tflite", "source": str(path.resolve()), "sha256": sha256(path),
        "arithmetic": graph.arithmetic, "description": model.description,
        "input": {"tflite_shape": list(t_in.shape), "dtype": t_in.dtype,
                  "qgraph_shape": list(graph.input.shape), "encoding": graph.input_encoding},
        "output": {"tflite_shape": list(t_out.shape), "dtype": t_out.dtype,
                   "qgraph_shape": list(graph.output.shape)},
        "float_edges": graph.meta.get("float_edges"),
        "ops": mapped,
    }
    with atomic_dir(run_dir) as tmp:
        write_manifest(tmp, {"imported_from": doc["source"]})  # a re-import replaces it
        qgraph.save(graph, tmp / name)
        with atomic_write(tmp / IMPORT_FILE, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        update_report(tmp, {"model": name, "imported_from": doc["source"],
                            "import": {"format": "tflite", "arithmetic": graph.arithmetic,
                                       "operators": len(model.operators),
                                       "qgraph_ops": len(graph.ops)},
                            "seconds": {"import": round(time.time() - start, 2)}})
    return run_dir, doc


def _import_float_tflite(path: Path, model, name: str, run_dir: Path, start: float
                         ) -> tuple[Path, dict[str, Any]]:
    """A float `.tflite` becomes a float graph (`tflite_fgraph`), checked against TFLite
    Micro's float kernels on seeded random inputs, for `quantize` to take like an ONNX
    import (calibration, the onnx arithmetic unless told otherwise)."""
    from .load import sha256
    from .tflite_fgraph import tflite_to_fgraph

    graph, mapped, dropped = tflite_to_fgraph(model, name)
    check = _float_tflite_check(path, graph, bool(dropped))
    doc = {
        "format": "tflite", "float": True, "source": str(path.resolve()),
        "sha256": sha256(path), "description": model.description,
        "input_shape": list(graph.input_shape), "input_kind": graph.input_kind,
        "input_norm": None, "dropped": dropped, "ops": mapped, "float_check": check,
        "argmax_unchanged": bool(dropped) or None,
    }
    with atomic_dir(run_dir) as tmp:
        write_manifest(tmp, {"imported_from": doc["source"]})
        fgraph.save(graph, tmp / name)
        with atomic_write(tmp / IMPORT_FILE, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        update_report(tmp, {"model": name, "imported_from": doc["source"],
                            "import": {"format": "tflite (float)",
                                       "float_max_abs_diff_vs_tflm": check["max_abs_diff"],
                                       "dropped": dropped},
                            "seconds": {"import": round(time.time() - start, 2)}})
    return run_dir, doc


def _float_tflite_check(path: Path, graph, softmax_dropped: bool, count: int = 16
                        ) -> dict[str, Any]:
    """The float graph against TFLite Micro running the file (float kernels) on seeded
    random inputs: the largest difference of the file's output (a dropped SOFTMAX is
    applied to ours first) and how often the argmax agrees."""
    import numpy as np

    from ..targets.tflm import run_tflm

    x = inputs.synthetic(inputs.spec_of(graph), count).astype(np.float32)
    ours = fgraph.run_float(graph, x).astype(np.float64)
    if softmax_dropped:
        ours = np.exp(ours - ours.max(axis=1, keepdims=True))
        ours /= ours.sum(axis=1, keepdims=True)
    nhwc = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    ref = run_tflm(path, np.ascontiguousarray(nhwc)).reshape(count, -1).astype(np.float64)
    return {"inputs": f"{count} seeded random inputs",
            "max_abs_diff": float(np.abs(ours - ref).max()),
            "argmax_agreement": float(np.mean(ours.argmax(1) == ref.argmax(1)))}


def is_tflite_run(run_dir: str | Path) -> bool:
    """A run imported from an int8 `.tflite` (a float one became a float graph)."""
    if not is_imported(run_dir):
        return False
    info = load_import_info(run_dir)
    return info.get("format") == "tflite" and not info.get("float")
