"""The committed generated/ trees are exactly what the committed QGraph regenerates."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_edge import data, qgraph
from mnist_edge.pipeline import generate

GENERATED = Path(__file__).resolve().parent.parent / "generated"
MODELS = sorted(p.name for p in GENERATED.iterdir() if p.is_dir()) if GENERATED.exists() else []


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("target", ["c", "hls"])
def test_generated_tree_regenerates_byte_identically(model: str, target: str, mnist_dir: Path,
                                                     tmp_path: Path) -> None:
    committed = GENERATED / model / target
    if not committed.exists():
        pytest.fail(f"{committed} missing: run scripts/regenerate.sh")
    out = generate(GENERATED / model, target, str(tmp_path / target), data_dir=str(mnist_dir))
    fresh, old = _tree(out), _tree(committed)
    assert sorted(fresh) == sorted(old), "file lists differ: run scripts/regenerate.sh"
    changed = [name for name in fresh if fresh[name] != old[name]]
    assert not changed, f"regenerated files differ: {changed}; run scripts/regenerate.sh"


def test_generated_qgraph_is_valid() -> None:
    assert MODELS, "generated/ holds no model"
    for model in MODELS:
        graph = qgraph.load_run(GENERATED / model)
        assert graph.name == model
    assert data.SHA256  # the vectors come from the checksummed MNIST test set
