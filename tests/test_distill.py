"""Knowledge distillation: the loss, where the teacher comes from, and a run that uses one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mnist_edge.errors import MnistEdgeError
from mnist_edge.trainer import (
    CHECKPOINT,
    DISTILL_WEIGHT,
    distillation_loss,
    resolve_teacher,
    train_model,
)


def test_loss_is_cross_entropy_plus_the_distance_to_the_teacher() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=gen)
    labels = torch.randint(0, 10, (16,), generator=gen)
    same = distillation_loss(logits, labels, logits)
    assert torch.allclose(same, (1 - DISTILL_WEIGHT) * F.cross_entropy(logits, labels))
    other = distillation_loss(logits, labels, torch.randn(16, 10, generator=gen))
    assert other > same


def test_teacher_resolution(tmp_path: Path, tiny_run: Path, capsys) -> None:
    student = tmp_path / "gapnet"
    assert resolve_teacher("gapnet", student, None) is None  # default run absent: says so
    assert "no teacher run" in capsys.readouterr().out
    (tmp_path / "edge").mkdir()
    shutil.copy(tiny_run / CHECKPOINT, tmp_path / "edge" / CHECKPOINT)
    assert resolve_teacher("gapnet", student, None) == tmp_path / "edge"
    assert resolve_teacher("gapnet", student, "none") is None
    assert resolve_teacher("tiny", student, None) is None  # tiny has no default teacher
    assert resolve_teacher("tiny", student, tiny_run) == tiny_run
    with pytest.raises(MnistEdgeError, match="teacher"):
        resolve_teacher("tiny", student, tmp_path / "missing")


def test_a_distilled_run_records_its_teacher(tmp_path: Path, tiny_run: Path,
                                             mnist_dir: Path) -> None:
    history = train_model("tiny", tmp_path / "student", str(mnist_dir), epochs=1,
                          train_limit=500, quiet=True, threads=1, teacher=tiny_run)
    assert history["teacher"] == str(tiny_run)
    saved = json.loads((tmp_path / "student" / "history.json").read_text())
    assert saved["teacher"] == str(tiny_run) and saved["epochs"][0]["train_loss"] > 0
