"""`mnist-edge generate web`: a static page running the generated C as WebAssembly.

The web backend has no lowering table of its own: it is the C backend's output
(`backends.c.generate_c`, unchanged, so every op kind the C backend lowers works here)
compiled by emscripten into a module with no imports, plus templates/web/:

  index.html        the page: what the model takes (H x W x C as the C reads it), a drawing
                    canvas (models of one channel of pixels, preprocessed MNIST-style to
                    the model's own H x W), an image upload (grey or RGB models: read as a
                    drawing, or taken whole and area-resized), the test vectors (every
                    model; the only input of a features or vector model), the model's
                    input, class and int8 logits (classes are indices)
  mnist_edge.js     preprocessing (preprocess.js, the same integer algorithms as
                    mnist_edge/demo/preprocess.py), the test vectors with their golden
                    logits, the UI (app.js) and the loader
  mnist_edge.wasm   the model; over http(s) the page fetches it, from file:// (where
                    browsers refuse to fetch files) it uses the same bytes embedded in
                    mnist_edge.js as base64
  manifest.json     generator, QGraph hash, emcc version and flags, sha256 of every file

It needs no server and no network. Output is deterministic for the same QGraph and
the same emcc.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .. import __version__
from ..demo.preprocess import CANVAS, image_shape
from ..errors import MnistEdgeError
from ..paths import TEMPLATES_DIR, template_env, write_tree
from ..qgraph import QGraph
from ..targets.tools import require_tool
from .c import C_WARNINGS, SOURCES, generate_c, input_doc, self_test_vectors
from .inputs import require_arithmetic

WASM_FILE = "mnist_edge.wasm"
JS_FILE = "mnist_edge.js"
SHIM = TEMPLATES_DIR / "web" / "web_main.c"
EXPORTS = ("_web_input", "_web_logits", "_web_predict")
# The test vectors embedded in the page: the C self-test's, as many as fit in this many
# input bytes (at least one), so that a large input does not make a huge page.
MAX_VECTOR_BYTES = 2 * 1024 * 1024
EMCC_FLAGS = ("-std=c99", "-O2", *C_WARNINGS,
              "-sSTANDALONE_WASM", "--no-entry")
# Debian's emcc runs its JS tools with the system node, which finds their modules
# (acorn, ...) only through NODE_PATH.
NODE_MODULE_DIRS = ("/usr/share/nodejs", "/usr/lib/nodejs", "/usr/lib/node_modules")


def emcc_env() -> dict[str, str]:
    env = dict(os.environ)
    extra = [d for d in NODE_MODULE_DIRS if Path(d).is_dir()]
    if extra:
        env["NODE_PATH"] = os.pathsep.join(
            [p for p in (env.get("NODE_PATH"), *extra) if p])
    return env


def emcc_version(emcc: str) -> str:
    proc = subprocess.run([emcc, "--version"], capture_output=True, text=True, env=emcc_env())
    return proc.stdout.splitlines()[0].strip() if proc.returncode == 0 and proc.stdout else "?"


def compile_wasm(src_dir: Path, out: Path) -> list[str]:
    """Compile the generated C plus the page's entry points into a standalone .wasm."""
    emcc = require_tool("emcc", "install Debian's emscripten (scripts/setup.sh installs it)",
                        "emscripten (emcc)")
    cmd = [emcc, *EMCC_FLAGS, f"-sEXPORTED_FUNCTIONS={','.join(EXPORTS)}", "-I", str(src_dir),
           "-o", str(out), str(SHIM), *(str(src_dir / s) for s in SOURCES)]
    # emcc may leave a.out.* helper files in its working folder: run it in the scratch one.
    proc = subprocess.run(cmd, capture_output=True, text=True, env=emcc_env(), cwd=out.parent)
    if proc.returncode != 0 or not out.exists():
        said = (proc.stderr or proc.stdout).strip()[-2000:]
        raise MnistEdgeError(f"compiling the generated C to WebAssembly failed "
                             f"({Path(emcc).name}):\n{said}")
    return cmd


def page_input(graph: QGraph) -> dict:
    """What the page offers for the graph's input: draw (one channel of pixels), upload
    (grey or RGB pixels), and always the test vectors."""
    x = graph.input
    img = image_shape(graph)
    c, h, w = img if img is not None else (0, 0, 0)
    dims = (*x.shape[1:], x.shape[0]) if len(x.shape) == 3 else tuple(x.shape)
    return {"layout": "&times;".join(str(int(d)) for d in dims)
            + (" (H&times;W&times;C)" if len(x.shape) == 3 else ""),
            "shape": [int(d) for d in x.shape], "encoding": graph.input_encoding,
            "size": int(x.size), "image": img is not None, "draw": img is not None and c == 1,
            "channels": c, "height": h, "width": w, "doc": input_doc(graph)}


def page_vectors(rows: np.ndarray, logits: np.ndarray) -> dict:
    """The test vectors as the page embeds them: each input's bytes (the C's layout, int8
    as two's complement) in base64, and golden's int8 logits."""
    rows = np.ascontiguousarray(rows).reshape(len(rows), -1)
    keep = max(1, min(len(rows), MAX_VECTOR_BYTES // max(1, rows.shape[1])))
    return {"inputs": [base64.b64encode(r.tobytes()).decode() for r in rows[:keep]],
            "logits": np.asarray(logits[:keep], np.int64).tolist()}


def render_site(graph: QGraph, wasm: bytes, requant: str, emcc: str,
                vectors: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, bytes]:
    """index.html, mnist_edge.js, mnist_edge.wasm and manifest.json, as bytes."""
    require_arithmetic(graph, "web", ("onnx", "tflite"))
    tflite = graph.arithmetic == "tflite"
    if tflite:
        requant = "int"  # TFLM's requantization is integer only: the mode does not apply
    out = graph.output
    rows, logits = vectors if vectors is not None else self_test_vectors(graph, None)
    page = page_input(graph)
    embedded = page_vectors(rows, logits)
    model = {"name": graph.name, "classes": int(out.size), "outputScale": float(out.scale),
             "outputZeroPoint": int(out.zero_point), "wasmFile": WASM_FILE,
             "canvas": CANVAS, "qgraphHash": graph.content_hash(), "input": page,
             "vectors": embedded}
    sha = hashlib.sha256(wasm).hexdigest()
    ctx = {"model": graph.name, "qhash": graph.content_hash(), "version": __version__,
           "classes": int(out.size), "canvas": CANVAS, "input": page,
           "requant": "TFLite Micro's integer (tflite arithmetic)" if tflite else requant,
           "vector_count": len(embedded["inputs"]),
           "model_json": json.dumps(model, sort_keys=True), "wasm_sha256": sha,
           "wasm_base64": base64.b64encode(wasm).decode()}
    env = template_env("web")
    files = {"index.html": env.get_template("index.html.j2").render(ctx).encode(),
             JS_FILE: env.get_template("mnist_edge.js.j2").render(ctx).encode(),
             WASM_FILE: wasm}
    manifest = {
        "generator": f"mnist-edge {__version__}",
        "model": graph.name,
        "qgraph_hash": graph.content_hash(),
        "requant": requant,
        **({"arithmetic": "tflite"} if tflite else {}),
        "emcc": emcc,
        "emcc_flags": list(EMCC_FLAGS),
        "input": page["doc"],
        "test_vectors": len(embedded["inputs"]),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return files


def build_wasm(graph: QGraph, requant: str = "float",
               vector_pixels: np.ndarray | None = None) -> tuple[bytes, str]:
    """(wasm bytes, emcc version) of the generated C for `graph` (either arithmetic: the
    `wasm` validation backend runs it, and the page)."""
    require_arithmetic(graph, "WebAssembly", ("onnx", "tflite"))
    with tempfile.TemporaryDirectory(prefix="mnist-edge-web-") as tmp:
        src = generate_c(graph, Path(tmp) / "c", requant, vector_pixels)
        wasm = Path(tmp) / WASM_FILE
        cmd = compile_wasm(src, wasm)
        return wasm.read_bytes(), emcc_version(cmd[0])


def generate_web(graph: QGraph, out_dir: Path, requant: str = "float",
                 vector_pixels: np.ndarray | None = None) -> Path:
    """Write the static site to `out_dir` atomically."""
    wasm, emcc = build_wasm(graph, requant, vector_pixels)
    files = render_site(graph, wasm, requant, emcc, self_test_vectors(graph, vector_pixels))
    return write_tree(out_dir, files)
