"""The CLI end to end on a small subset, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_edge.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_edge.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=os.environ.copy(), timeout=600)


def test_train_quantize_evaluate_analyze_report(tmp_path: Path, mnist_dir: Path) -> None:
    runs = tmp_path / "runs"
    r = run_cli("train", "--model", "tiny", "--epochs", "2", "--train-limit", "5000",
                "--runs", str(runs), "--data", str(mnist_dir))
    assert r.returncode == 0, r.stderr
    run = runs / "tiny"
    assert (run / "checkpoint.pt").exists() and (run / "curves.png").exists()
    history = json.loads((run / "history.json").read_text())
    assert len(history["epochs"]) == 2 and history["model"] == "tiny"

    r = run_cli("quantize", str(run), "--calib-images", "200", "--data", str(mnist_dir))
    assert r.returncode == 0, r.stderr
    assert (run / "tiny.qgraph.json").exists() and (run / "tiny.fgraph.json").exists()

    r = run_cli("evaluate", str(run), "--limit", "1000", "--data", str(mnist_dir))
    assert r.returncode == 0, r.stderr
    report = json.loads((run / "report.json").read_text())
    for key in ("float_accuracy", "int8_accuracy", "int8_float_agreement", "params", "macs",
                "weight_bytes", "peak_activation_bytes"):
        assert key in report
    assert report["test_images"] == 1000
    assert report["int8_accuracy"] > 0.75 and report["int8_float_agreement"] > 0.97

    r = run_cli("analyze", str(run))
    assert r.returncode == 0 and "conv2d" in r.stdout and "peak activations" in r.stdout
    r = run_cli("report", str(run))
    assert r.returncode == 0 and (run / "report.html").exists()
    md = (run / "report.md").read_text()
    assert "| epochs run | 2 |" in md and "| teacher (distillation) | none |" in md


def test_training_is_reproducible(tmp_path: Path, mnist_dir: Path) -> None:
    import torch

    from mnist_edge.trainer import train_model

    for name in ("a", "b"):
        train_model("tiny", tmp_path / name, str(mnist_dir), epochs=1, train_limit=500,
                    quiet=True, threads=1)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_weight_average_and_recipe_options_are_seeded_and_recorded(
        tmp_path: Path, mnist_dir: Path) -> None:
    """EMA, label smoothing, AdamW and zoom augmentation keep training reproducible; the
    saved weights are the average's, and the history says which recipe ran."""
    import torch

    from mnist_edge.trainer import train_model

    recipe = {"ema": 0.99, "label_smoothing": 0.1, "weight_decay": 1e-4, "max_scale": 0.1,
              "max_degrees": 8.0}
    for name in ("a", "b"):
        history = train_model("tiny", tmp_path / name, str(mnist_dir), epochs=1,
                              train_limit=500, quiet=True, threads=1, augment_data=True,
                              **recipe)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((tmp_path / "a" / "history.json").read_text())
    assert saved["ema"] == 0.99 and saved["label_smoothing"] == 0.1
    assert saved["augmentation"] == {"max_shift": 2.0, "max_degrees": 8.0, "max_scale": 0.1}
    assert "raw_val_accuracy" in saved["epochs"][0]
    assert history["best_val_accuracy"] == saved["epochs"][0]["val_accuracy"]


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--model", "tiny", "--runs", "{tmp}", "--ema", "1"], "EMA"),
    (["quantize", "{tmp}"], "checkpoint"),
    (["analyze", "{tmp}"], "no QGraph"),
    (["validate", "{tmp}", "--backend", "tpu"], "unknown backend"),
    (["data", "--data", "{tmp}"], "missing"),
    (["train", "--model", "tiny", "--runs", "{tmp}", "--teacher", "{tmp}/nothing"], "teacher"),
])
def test_errors_are_one_line_with_exit_2(tmp_path: Path, args: list[str], message: str,
                                         capsys: pytest.CaptureFixture) -> None:
    code = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_model_is_rejected_by_the_parser() -> None:
    r = run_cli("train", "--model", "resnet50")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_build_runs_every_stage_on_a_subset(tmp_path: Path, mnist_dir: Path) -> None:
    r = run_cli("build", "--model", "tiny", "--epochs", "1", "--train-limit", "2000",
                "--calib-images", "200", "--runs", str(tmp_path), "--data", str(mnist_dir),
                "--backends", "c")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "tiny"
    report = json.loads((run / "report.json").read_text())
    assert report["test_images"] == 10000 and report["backends"]["c"]["images"] == 10000
    assert report["backends"]["c"]["exact_logit_fraction"] == 1.0
    for stage in ("train", "quantize", "evaluate", "export_onnx", "generate_c", "build_total"):
        assert report["seconds"][stage] > 0
    assert (run / "model.int8.onnx").exists() and (run / "report.html").exists()
