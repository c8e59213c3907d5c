"""The `wasm` validation backend: the static web page's WebAssembly module, run by Node.js.

The module is the one `generate web` embeds (the generated C plus templates/web/web_main.c,
compiled by emscripten with the same warnings as every other build), so validating it
proves the browser computes golden's logits; Node runs the same WebAssembly engine (V8)
as Chromium. Images travel as raw bytes through a temporary file, logits come back the
same way.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.c import c_inputs
from ..backends.web import WASM_FILE, build_wasm
from ..errors import MnistEdgeError
from ..qgraph import QGraph
from ..validate import BackendResult
from .tools import require_tool

# Reads the wasm, the pixels and the sizes from argv; writes every image's logits.
RUNNER_JS = r"""
const fs = require('fs');
const [wasmPath, pixelPath, outPath, inSize, outSize] = process.argv.slice(1);
const pixels = fs.readFileSync(pixelPath);
const n = pixels.length / Number(inSize);
WebAssembly.instantiate(fs.readFileSync(wasmPath), {}).then(({ instance }) => {
  const ex = instance.exports;
  if (ex._initialize) ex._initialize();
  const out = Buffer.alloc(n * Number(outSize));
  for (let i = 0; i < n; i++) {
    new Uint8Array(ex.memory.buffer).set(
      pixels.subarray(i * inSize, (i + 1) * inSize), ex.web_input());
    ex.web_predict();
    out.set(new Uint8Array(ex.memory.buffer, ex.web_logits(), Number(outSize)), i * outSize);
  }
  fs.writeFileSync(outPath, out);
});
"""


def run_wasm(wasm: Path, pixels: np.ndarray, classes: int) -> np.ndarray:
    """int8 logits [N, classes] of the module for N inputs in the C API's layout."""
    node = require_tool("node", "install Node.js (scripts/setup.sh installs it)", "Node.js")
    flat = np.ascontiguousarray(pixels).reshape(len(pixels), -1)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-wasm-") as tmp:
        pix, out = Path(tmp) / "pixels.bin", Path(tmp) / "logits.bin"
        pix.write_bytes(flat.tobytes())
        proc = subprocess.run([node, "-e", RUNNER_JS, str(wasm), str(pix), str(out),
                               str(flat.shape[1]), str(classes)], capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            raise MnistEdgeError(f"running {wasm.name} in Node.js failed (exit "
                                 f"{proc.returncode}): {proc.stderr.strip()[-500:]}")
        return np.frombuffer(out.read_bytes(), np.int8).reshape(len(flat), classes).copy()


def run(run_dir: Path, graph: QGraph, pixels: np.ndarray, options: dict[str, Any]) -> BackendResult:
    # a tflite graph's C is integer only (TFLM's requantization): the mode does not apply
    requant = "int" if graph.arithmetic == "tflite" else str(options.get("requant", "float"))
    wasm_bytes, emcc = build_wasm(graph, requant, np.asarray(pixels[:20]))
    with tempfile.TemporaryDirectory(prefix="mnist-edge-wasm-") as tmp:
        wasm = Path(tmp) / WASM_FILE
        wasm.write_bytes(wasm_bytes)
        logits = run_wasm(wasm, c_inputs(graph, pixels), graph.output.size)
    return BackendResult(logits, None, {"emcc": emcc, "requant": requant,
                                        "wasm_bytes": len(wasm_bytes)})
