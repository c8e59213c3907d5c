"""Shared fixtures: the MNIST folder and one small trained run (tiny model, data subset)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "mnist"
# The four longest files (4 to 8 minutes each on two busy cores, measured with
# --durations=0), run first, the rest after in file order: scripts/test.sh hands out whole
# files (`--dist loadfile --no-loadscope-reorder`) in this order, so the two workers end
# together. xdist's own order (most tests first) left one worker idle for the last ~70 s.
# The notebooks (2.5 min) stay in file order: first, beside these four's parallel builds,
# their two-thread torch training took 2-3x as long.
LONGEST_FIRST = ("test_c_tflite.py", "test_c_backend.py", "test_zoo_matrix.py", "test_rtl.py")
# Two workers and their compilers share two cores: OpenMP threads (torch's) that spin while
# they wait lose their core's time slices to them (a 2-thread training step 3x slower under
# load, measured here); passive threads sleep instead. Set before any test imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ.get("MNIST_EDGE_DATA", DEFAULT_DATA))
    if not (path / "t10k-images-idx3-ubyte.gz").exists() and not (
        path / "t10k-images-idx3-ubyte"
    ).exists():
        pytest.skip(f"MNIST files not found in {path}: set MNIST_EDGE_DATA")
    return path


@pytest.fixture(scope="session")
def tiny_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained and quantized `tiny` run on 3,000 images (about 10 s): a real QGraph."""
    from mnist_edge.quantize import quantize_run
    from mnist_edge.trainer import train_model

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train_model("tiny", run_dir, str(mnist_dir), epochs=1, train_limit=3000, quiet=True,
                threads=2)
    quantize_run(run_dir, str(mnist_dir), "percentile", 300)
    return run_dir


@pytest.fixture(scope="module")
def mlperf_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each MLPerf Tiny int8 model present in ../shared, imported once per test module."""
    from helpers import MLPERF, MODELS

    from mnist_edge.importers import import_tflite

    runs = tmp_path_factory.mktemp("mlperf")
    return {key: import_tflite(MLPERF / f"{stem}.tflite", runs, None)[0]
            for key, stem in MODELS.items() if (MLPERF / f"{stem}.tflite").exists()}
