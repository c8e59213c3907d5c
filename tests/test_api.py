"""The Python API (`import mnist_edge as me`): the same scenario through the API and the
CLI gives identical files, results are plain objects, and errors are MnistEdgeError with
the CLI's line."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mnist_edge as me

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf-tiny"
TRAIN = {"epochs": 1, "train_limit": 2000, "threads": 1, "seed": 3}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_edge.cli", *args], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=600)


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


STABLE_FIGURES = ("model", "test_images", "float_accuracy", "int8_accuracy",
                  "int8_float_agreement", "params", "macs", "weight_bytes",
                  "peak_activation_bytes", "c_arena_bytes", "int8_confusion", "qgraph_hash")


def test_api_and_cli_give_identical_files(tmp_path: Path, mnist_dir: Path) -> None:
    data = str(mnist_dir)
    a = me.train("tiny", "api", tmp_path / "a", data, progress=False, **TRAIN)
    a.quantize(calib_images=200, qat_epochs=0, data=data, progress=False)
    evaluation = a.evaluate(data, limit=500)
    c_dir = a.generate("c", vectors=5, data=data)
    validation = a.validate("c", data=data, limit=100, progress=False)

    b_runs = tmp_path / "b"
    steps = [["train", "--model", "tiny", "--name", "cli", "--runs", str(b_runs), "--epochs", "1",
              "--train-limit", "2000", "--threads", "1", "--seed", "3", "--data", data],
             ["quantize", str(b_runs / "cli"), "--calib-images", "200", "--qat-epochs", "0",
              "--data", data],
             ["evaluate", str(b_runs / "cli"), "--limit", "500", "--data", data],
             ["generate", "c", str(b_runs / "cli"), "--vectors", "5"],
             ["validate", str(b_runs / "cli"), "--backend", "c", "--limit", "100", "--data", data]]
    for step in steps:
        r = cli(*step)
        assert r.returncode == 0, (step, r.stderr)
    b = me.load(b_runs / "cli")

    assert a.qgraph.content_hash() == b.qgraph.content_hash()
    assert tree_digest(c_dir) == tree_digest(b.run_dir / "c")
    ra, rb = (json.loads((m.run_dir / "report.json").read_text()) for m in (a, b))
    assert {k: ra.get(k) for k in STABLE_FIGURES} == {k: rb.get(k) for k in STABLE_FIGURES}
    strip = {"seconds", "latency_us_per_image", "latency_p10_us", "latency_p90_us"}
    assert ({k: v for k, v in ra["backends"]["c"].items() if k not in strip}
            == {k: v for k, v in rb["backends"]["c"].items() if k not in strip})
    # the returned objects carry what report.json holds
    assert evaluation.int8_accuracy == ra["int8_accuracy"] and evaluation.inputs == 500
    assert validation.all_exact and validation.backends["c"]["images"] == 100
    assert "c" in validation._repr_html_() and "int8" in evaluation._repr_html_()


def test_predict_matches_golden_and_c(tiny_run: Path, mnist_dir: Path,
                                      tmp_path: Path) -> None:
    from mnist_edge import data

    m = me.load(shutil.copytree(tiny_run, tmp_path / "tiny"))
    images, labels = data.load_mnist("test", str(mnist_dir))
    golden = m.predict(images[:20])
    assert golden.logits.dtype == np.int8 and golden.logits.shape == (20, 10)
    assert np.array_equal(golden.classes, np.argmax(golden.logits, axis=1))
    graph = m.qgraph
    assert np.allclose(golden.scores, (golden.logits.astype(np.float32)
                                       - graph.output.zero_point) * graph.output.scale)
    assert np.array_equal(m.predict(images[:20], backend="c").logits, golden.logits)
    floats = m.predict(images[:20], backend="float")
    assert floats.logits is None and np.mean(floats.classes == golden.classes) >= 0.9
    assert "20 inputs" in repr(golden)
    # channels-last and a batch of one are taken as the .npz reader takes them
    assert np.array_equal(m.predict(images[:1, :, :, None]).logits, golden.logits[:1])
    analysis = m.analyze()
    assert analysis.totals["macs"] > 0 and "total:" in str(analysis)
    assert "<table>" in analysis._repr_html_()


def test_arrays_as_data(tiny_run: Path, mnist_dir: Path, tmp_path: Path) -> None:
    """`data=(x, y)` from a notebook is checked and used exactly like an .npz."""
    from mnist_edge import data

    m = me.load(shutil.copytree(tiny_run, tmp_path / "tiny"))
    x, y = data.load_mnist("test", str(mnist_dir))
    from_arrays = m.evaluate((x[:300], y[:300]))
    from_files = m.evaluate(str(mnist_dir), limit=300)
    assert from_arrays.int8_accuracy == from_files.int8_accuracy
    assert np.array_equal(from_arrays.confusion, from_files.confusion)
    no_labels = m.evaluate(x[:50])
    assert no_labels.int8_accuracy is None and no_labels.inputs == 50
    with pytest.raises(me.MnistEdgeError, match="the model takes"):
        m.evaluate(x[:5].astype(np.float32))


def test_errors_are_one_exception_with_the_cli_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(me.MnistEdgeError) as info:
        me.load(missing)
    r = cli("analyze", str(missing))
    assert r.returncode == 2
    assert r.stderr.strip() == f"mnist-edge: error: {info.value}"

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.qgraph.json").write_text("{ not json")
    (broken / "x.qgraph.npz").write_bytes(b"junk")
    with pytest.raises(me.MnistEdgeError) as info:
        me.load(broken).analyze()
    r = cli("analyze", str(broken))
    assert r.returncode == 2 and r.stderr.strip() == f"mnist-edge: error: {info.value}"
    with pytest.raises(me.MnistEdgeError, match="unknown model"):
        me.train("resnet-9000", runs=tmp_path)


def test_from_torch_imports_and_is_exact(tmp_path: Path, mnist_dir: Path) -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 13 * 13, 10))
    m = me.from_torch(net, torch.zeros(1, 1, 28, 28), "net", tmp_path, data=str(mnist_dir))
    assert (m.run_dir / "source.onnx").is_file()
    # the float graph answers before quantization: the import can be checked first
    from mnist_edge import data

    images = data.load_mnist("test", str(mnist_dir))[0][:8]
    with torch.no_grad():
        expected = net(torch.from_numpy(images[:, None].astype(np.float32) / 255)).numpy()
    assert np.allclose(m.predict(images, backend="float").scores, expected, atol=1e-4)
    info = json.loads((m.run_dir / "import.json").read_text())
    assert info["source"] == str((m.run_dir / "source.onnx").resolve())
    m.quantize(calib_images=100, data=str(mnist_dir), progress=False)
    assert m.validate("c", data=str(mnist_dir), limit=50, progress=False).all_exact
    # a notebook cell run twice imports again under the same name: a fresh run
    again = me.from_torch(net, torch.zeros(1, 1, 28, 28), "net", tmp_path, data=str(mnist_dir))
    assert again.run_dir == m.run_dir and not again.quantized


def test_from_tflite(tmp_path: Path) -> None:
    model = SHARED / "ad01_int8.tflite"
    if not model.exists():
        pytest.skip(f"{model} not found (the MLPerf Tiny models live in ../shared)")
    m = me.from_tflite(model, runs=tmp_path)
    assert m.qgraph.arithmetic == "tflite" and m.analyze().totals["macs"] > 0
    with pytest.raises(me.MnistEdgeError, match="already"):
        m.quantize()


def test_public_names_are_documented() -> None:
    for name in me.__all__:
        obj = getattr(me, name)
        if name != "__version__":
            assert obj.__doc__ and obj.__doc__.strip(), name
    for name, member in vars(me.Model).items():
        if not name.startswith("_") and callable(member):
            assert member.__doc__, f"Model.{name}"
    assert (Path(me.__file__).parent / "py.typed").exists()
