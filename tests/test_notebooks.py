"""The tutorial notebooks in examples/ run top to bottom, as a user runs them, and their
cells assert real results (exact logits against golden, accuracy floors), so a broken API
fails here. They are committed without outputs (scripts/strip_notebooks.py)."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
EXPECTED = ("01_train_and_deploy", "02_pytorch_model", "03_keras_model", "04_c_firmware")
CELL_TIMEOUT = 600  # seconds; each notebook takes one to three minutes on two cores

nbformat = pytest.importorskip("nbformat")


def _strip_module():
    spec = importlib.util.spec_from_file_location("strip_notebooks",
                                                  REPO / "scripts" / "strip_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_tutorial_is_there() -> None:
    assert tuple(p.stem for p in NOTEBOOKS) == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] for c in code), f"{path.name} has outputs"
    assert all(c.execution_count is None for c in code), f"{path.name} has execution counts"
    assert nb.metadata.kernelspec.name == "python3"
    assert path.read_text() == _strip_module().stripped_text(path), (
        f"{path.name} is not stripped: run python scripts/strip_notebooks.py")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, mnist_dir: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Execute every cell in a fresh kernel (python3 of this interpreter), in an empty
    folder: the notebook's runs/ goes there, not into the checkout."""
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if path.stem == "03_keras_model" and importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed (the dev extras)")
    # the kernel inherits the environment: this checkout's mnist_edge, the test data,
    # and the notebooks' own quick sizes
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("MNIST_EDGE_DATA", str(mnist_dir))
    monkeypatch.delenv("MNIST_EDGE_NOTEBOOK_FULL", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.monotonic()
    client.execute()  # raises CellExecutionError, with the cell and its traceback
    print(f"{path.name}: {time.monotonic() - start:.0f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    assert (tmp_path / "runs").is_dir()
