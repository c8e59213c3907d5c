"""Every zoo model through every validation backend, exact against golden (issue 25).

The matrix is built from the two registries, `models.MODEL_NAMES` and `validate.BACKENDS`,
so a new zoo model or backend joins it by construction; a backend that is neither in
IMAGES nor in LEFT_OUT fails `test_every_backend_is_in_the_matrix`. Weights come from a
seeded random initialisation (calibrated on 256 real training images): exactness does
not depend on training, and a full training run would not fit the suite's budget
(scripts/bench_zoo_matrix.py runs the trained models on more images).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mnist_edge import data, qgraph
from mnist_edge.backends.onnx import QDQ_FILE, export_qdq
from mnist_edge.errors import MnistEdgeError
from mnist_edge.models import MODEL_NAMES
from mnist_edge.testing import seeded_zoo_qgraph
from mnist_edge.validate import BACKENDS, validate_backend

# Images per backend and model: every host backend on a few hundred, every emulated
# core and the RTL simulation (one Verilator build per model) on a few.
HOST_IMAGES, RTL_IMAGES, CORE_IMAGES = 300, 4, 2
IMAGES = {"golden": HOST_IMAGES, "onnxruntime": HOST_IMAGES, "onnxruntime-qdq": HOST_IMAGES,
          "c": HOST_IMAGES, "c-x86": HOST_IMAGES, "c-int": HOST_IMAGES, "hls": HOST_IMAGES,
          "wasm": HOST_IMAGES, "rtl": RTL_IMAGES,
          **{b: CORE_IMAGES for b in BACKENDS if b.startswith(("qemu-", "unicorn-"))}}
# Backends the matrix leaves to their own tests, and why.
LEFT_OUT = {
    "rtl-uart": "the UART top around the same engine: tests/test_rtl.py, 3 images",
    "rtl-netlist": "a gate-level simulation of minutes per image, iCE40 only: tests/test_rtl.py",
    "tflm": "runs the .tflite a run was imported from (zoo models are not): "
            "tests/test_tflite_qgraph.py",
    "litert": "runs the .tflite a run was imported from in LiteRT: tests/test_litert.py",
    "litert-ref": "LiteRT's reference kernels on that .tflite: tests/test_litert.py",
}
# The matrix's columns beyond the backend names: the onnxruntime backend on the QDQ export.
COLUMNS = {"onnxruntime-qdq": "onnxruntime"}
# Where a model cannot run on a target, the one-line refusal the user gets instead.
# mlp: 1.5 MB of weights; the micro:bit has 256 KB of flash, AN547's ITCM 512 KB.
REFUSED = {("mlp", "qemu-m0"): "does not fit qemu-m0", ("mlp", "qemu-m55"): "does not fit qemu-m55"}


def test_every_backend_is_in_the_matrix() -> None:
    covered = {COLUMNS.get(b, b) for b in IMAGES} | set(LEFT_OUT)
    assert covered == set(BACKENDS), set(BACKENDS) ^ covered


@pytest.fixture(scope="module")
def zoo(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run folder per zoo model holding its seeded QGraph and the QDQ export."""
    calibration = data.load_mnist("train", str(mnist_dir))[0][:256]
    root = tmp_path_factory.mktemp("zoo")
    runs = {}
    for name in MODEL_NAMES:
        graph = seeded_zoo_qgraph(name, calibration)
        run = root / name
        qgraph.save(graph, run / name)
        export_qdq(graph, run / QDQ_FILE)
        runs[name] = run
    return runs


def _tool_for(backend: str) -> str | None:
    if backend.startswith("qemu-rv"):
        return "qemu-system-riscv32"
    if backend.startswith("qemu-"):
        return "qemu-system-arm"
    if backend.startswith("unicorn-"):
        return "arm-none-eabi-gcc"
    return {"rtl": "verilator", "wasm": "emcc", "hls": "g++", "c": "gcc", "c-x86": "gcc",
            "c-int": "gcc"}.get(backend)


@pytest.mark.parametrize("column", sorted(IMAGES))
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_zoo_model_is_exact_on_backend(zoo: dict[str, Path], mnist_dir: Path, model: str,
                                       column: str) -> None:
    tool = _tool_for(column)
    if tool and shutil.which(tool) is None:
        pytest.skip(f"{tool} not found: install with scripts/setup.sh")
    backend = COLUMNS.get(column, column)
    options = {"model_file": str(zoo[model] / QDQ_FILE)} if column == "onnxruntime-qdq" else {}
    options["skip_float"] = True  # no float model in these runs: int8 only
    images, labels = data.load_mnist("test", str(mnist_dir))
    n = IMAGES[column]
    if (model, column) in REFUSED:
        with pytest.raises(MnistEdgeError, match=REFUSED[model, column]):
            validate_backend(zoo[model], backend, images[:n], labels[:n], options)
        return
    figures = validate_backend(zoo[model], backend, images[:n], labels[:n], options)
    assert figures["images"] == n
    assert figures["exact_logit_fraction"] == 1.0, figures.get("first_mismatch")
    assert np.isfinite(figures["accuracy"])


def test_demo_engine_is_exact_on_the_mlp(zoo: dict[str, Path], mnist_dir: Path) -> None:
    """The demo's every backend on the mlp (the Gradio seed's model, whose first layer is
    fully connected): the page marks the answer bit-exact across all of them."""
    from mnist_edge.demo.engine import DEMO_BACKENDS, Engine

    engine = Engine(zoo["mlp"], DEMO_BACKENDS)
    try:
        assert not engine.missing, engine.missing
        for image in data.load_mnist("test", str(mnist_dir))[0][:3]:
            panel = engine.panel(image, trace=False)
            assert panel.exact_backends == len(DEMO_BACKENDS), panel.first_difference
    finally:
        engine.close()
