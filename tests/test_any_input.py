"""Any model in: non-MNIST inputs (RGB 3x32x32, 1x49x10 float features, a [N,784,1] MLP)
through import -> quantize -> validate on the user's own data (.npz, image folders), and
the one-line refusals of inputs and data that do not fit.

Models are built on the fly with PyTorch and exported with the real exporters
(`tests/exporters.py`); weights are seeded, not trained: exactness does not need accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import exporters as E
import numpy as np
import pytest

from mnist_edge import fgraph, qgraph
from mnist_edge.cli import main

BACKENDS = "onnxruntime,c,c-x86,c-int,hls"  # hls takes any input (HWC stream, CHW store)
CHECK = 200
CORES = "qemu-m4,qemu-m0"  # the same C on a Cortex-M4 (DSP) and a Cortex-M0 (micro:bit)


def _rgb_residual():
    """Per-channel Normalize inside the model, a residual block whose shortcut is a 1x1
    stride-2 conv, global average pool, linear."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU())
            self.body = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, padding=1))
            self.short = nn.Conv2d(8, 16, 1, stride=2)
            self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(16, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem((x - self.mean) / self.std)
            return self.head(self.body(h) + self.short(h))

    return Net()


def _ds_cnn():
    """A keyword-spotting style depthwise-separable CNN on 49x10 audio features."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, (5, 3), stride=(2, 1), padding=(2, 1)), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 12))


def _mlp():
    """An MLP whose input is [N,784,1] (flattened inside)."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def _person_cnn():
    """A 96x96 grey image classifier (person / no person), strided like MLPerf's VWW model
    but small enough for a Cortex-M0's 16 KB of RAM."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=4, padding=2), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))


def _export(tmp_path: Path, build, shape: tuple[int, ...], name: str,
            exporter: str = "torchscript") -> Path:
    import torch

    torch.manual_seed(0)
    model = build().eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return E.export_torch(model, tmp_path / f"{name}.onnx", exporter, shape=shape)


def _image_folder(root: Path, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """class_name/*.png of smooth random RGB images at another size (so they get resized)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BILINEAR).save(folder / f"{i}.png")
    return root


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _through(tmp_path: Path, capsys, model: Path, name: str, calib: Path, test: Path,
             *import_args: str, backends: str = BACKENDS, cores: str = CORES) -> dict:
    """import -> quantize (calibrated on `calib`) -> validate on `test`: every backend exact;
    then the emulated cores on 20 inputs."""
    runs = tmp_path / "runs"
    code, out, err = _cli(capsys, "import", str(model), "--name", name, "--runs", str(runs),
                          *import_args)
    assert code == 0, err
    run = runs / name
    code, out, err = _cli(capsys, "quantize", str(run), "--data", str(calib),
                          "--calib-images", "64")
    assert code == 0, err
    code, out, err = _cli(capsys, "validate", str(run), "--data", str(test), "--limit", "40",
                          "--backend", backends)
    assert code == 0, out + err
    code, out, err = _cli(capsys, "validate", str(run), "--data", str(test), "--limit", "20",
                          "--backend", cores)
    assert code == 0, out + err
    report = json.loads((run / "report.json").read_text())
    for b in [*backends.split(","), *cores.split(",")]:
        assert report["backends"][b]["exact_logit_fraction"] == 1.0, (b, report["backends"][b])
    return report


def test_rgb_residual_cnn(tmp_path: Path, capsys) -> None:
    """3x32x32 RGB, per-channel normalization inside the model (a depthwise 1x1 conv on the
    pixels), calibrated on an image folder of 48x40 PNGs, validated on a labelled npz."""
    path = _export(tmp_path, _rgb_residual, (3, 32, 32), "rgb")
    calib = _image_folder(tmp_path / "images", 30, (48, 40))
    rng = np.random.default_rng(1)
    npz = tmp_path / "rgb.npz"
    np.savez(npz, x=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),  # channels last
             y=rng.integers(0, 10, 40))
    report = _through(tmp_path, capsys, path, "rgb", calib, npz)
    assert report["backends"]["c"]["accuracy"] >= 0
    graph = qgraph.load_run(tmp_path / "runs" / "rgb")
    assert graph.input.shape == (3, 32, 32) and graph.input_encoding == "uint8"
    assert graph.ops[0].kind == "conv2d" and graph.ops[0].attrs["groups"] == 3
    folded = fgraph.load(fgraph.find_in_run(tmp_path / "runs" / "rgb"))
    mean, std = folded.input_norm
    assert mean == pytest.approx((0.49, 0.48, 0.45)) and std == pytest.approx((0.25, 0.24, 0.26))
    assert "add" in [op.kind for op in folded.ops]
    code, out, err = _cli(capsys, "evaluate", str(tmp_path / "runs" / "rgb"), "--data",
                          str(npz))
    assert code == 0 and "int8" in out, err


def test_feature_ds_cnn_without_labels(tmp_path: Path, capsys) -> None:
    """1x49x10 float features (int8 input at a calibrated scale), npz without labels."""
    path = _export(tmp_path, _ds_cnn, (1, 49, 10), "kws", "dynamo")
    rng = np.random.default_rng(2)
    npz = tmp_path / "features.npz"
    np.savez(npz, x=rng.normal(0.0, 2.0, (80, 1, 49, 10)).astype(np.float32))
    report = _through(tmp_path, capsys, path, "kws", npz, npz, "--input", "features",
                      "--data", str(npz))
    assert "accuracy" not in report["backends"]["c"]
    graph = qgraph.load_run(tmp_path / "runs" / "kws")
    assert graph.input_encoding == "int8" and graph.input.shape == (1, 49, 10)
    assert graph.input.scale != qgraph.INPUT_SCALE
    code, out, err = _cli(capsys, "evaluate", str(tmp_path / "runs" / "kws"), "--data",
                          str(npz))
    assert code == 0 and "no labels" in out, err


def test_96x96_image_model(tmp_path: Path, capsys) -> None:
    """1x96x96 grey pixels, 2 classes."""
    path = _export(tmp_path, _person_cnn, (1, 96, 96), "person")
    rng = np.random.default_rng(4)
    npz = tmp_path / "person.npz"
    np.savez(npz, x=rng.integers(0, 256, (60, 96, 96), dtype=np.uint8), y=rng.integers(0, 2, 60))
    _through(tmp_path, capsys, path, "person", npz, npz, "--data", str(npz),
             cores="qemu-m4")
    # The micro:bit's 16 KB cannot hold a 9,216 B image beside the arena and the stack:
    # refused before building, in one line with the figures.
    _refused(capsys, tmp_path, ["validate", str(tmp_path / "runs" / "person"), "--data",
                                str(npz), "--limit", "2", "--backend", "qemu-m0"],
             "does not fit qemu-m0", "16,384 B")
    # The same Cortex-M0 build on a larger memory map, in unicorn's Cortex-M0 model.
    code, out, err = _cli(capsys, "validate", str(tmp_path / "runs" / "person"), "--data",
                          str(npz), "--limit", "20", "--backend", "unicorn-m0")
    assert code == 0, out + err
    report = json.loads((tmp_path / "runs" / "person" / "report.json").read_text())
    assert report["backends"]["unicorn-m0"]["exact_logit_fraction"] == 1.0
    assert report["backends"]["unicorn-m0"]["images"] == 20
    graph = qgraph.load_run(tmp_path / "runs" / "person")
    assert graph.input.shape == (1, 96, 96) and graph.output.shape == (2,)


def _conv_head():
    """Ends on a flattened 3x13x13 conv output (no linear): the C holds it HWC, the QGraph
    (and ONNX) CHW, so the generated predict() must reorder it."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 3, 3, stride=2), nn.ReLU(), nn.Flatten())


def test_convolutional_output_in_chw_order(tmp_path: Path, capsys) -> None:
    path = _export(tmp_path, _conv_head, (1, 28, 28), "head")
    rng = np.random.default_rng(5)
    npz = tmp_path / "head.npz"
    np.savez(npz, x=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8))
    _through(tmp_path, capsys, path, "head", npz, npz, "--data", str(npz),
             cores="qemu-m4")
    graph = qgraph.load_run(tmp_path / "runs" / "head")
    assert graph.output.size == 3 * 13 * 13


def test_mlp_vector_input(tmp_path: Path, capsys) -> None:
    """[N,784,1]: a vector input of 784 pixels; npz given as [N,784]."""
    path = _export(tmp_path, _mlp, (784, 1), "mlp")
    rng = np.random.default_rng(3)
    npz = tmp_path / "vec.npz"
    np.savez(npz, x=rng.integers(0, 256, (60, 784), dtype=np.uint8), y=rng.integers(0, 10, 60))
    _through(tmp_path, capsys, path, "mlp", npz, npz, "--data", str(npz))
    graph = qgraph.load_run(tmp_path / "runs" / "mlp")
    assert graph.input.shape == (784,) and graph.ops[0].kind == "linear"


# ------------------------------------------------------------------ refusals
def _onnx_input(tmp_path: Path, dims: list, name: str) -> Path:
    """A one-node model (Relu) whose input has shape `dims`."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _refused(capsys, tmp_path: Path, args: list[str], *words: str) -> str:
    code, _, err = _cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("dims,words", [
    (["N", 4, 3, 32, 32], ("rank-5", "[N,C,H,W]")),
    (["N", 3, "H", "W"], ("dynamic",)),
    (["N", 28, 28], ("neither a vector",)),
])
def test_bad_model_inputs(tmp_path: Path, capsys, dims: list, words: tuple[str, ...]) -> None:
    path = _onnx_input(tmp_path, dims, "bad")
    runs = tmp_path / "runs"
    _refused(capsys, tmp_path, ["import", str(path), "--runs", str(runs)], *words)
    assert not runs.exists() or not any(runs.iterdir())


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory) -> Path:
    """An imported (not yet quantized) RGB run for the data refusals."""
    tmp = tmp_path_factory.mktemp("rgb")
    path = _export(tmp, _rgb_residual, (3, 32, 32), "rgb")
    assert main(["import", str(path), "--name", "rgb", "--runs", str(tmp / "runs")]) == 0
    return tmp / "runs" / "rgb"


def _bad_npz(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.npz"
    rng = np.random.default_rng(0)
    if kind == "shape":
        np.savez(path, x=rng.integers(0, 256, (5, 1, 28, 28), dtype=np.uint8))
    elif kind == "dtype":
        np.savez(path, x=rng.random((5, 3, 32, 32)).astype(np.float32))
    elif kind == "pickle":
        np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    elif kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip file" * 10)
    elif kind == "no_x":
        np.savez(path, images=rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8))
    elif kind == "labels":
        np.savez(path, x=rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8), y=np.zeros(4))
    return path


@pytest.mark.parametrize("kind,words", [
    ("shape", ("[5,1,28,28] uint8", "[N,3,32,32] uint8 pixels")),
    ("dtype", ("float32", "uint8")),
    ("pickle", ("Python objects",)),
    ("corrupt", ("unreadable .npz",)),
    ("no_x", ("no array 'x'",)),
    ("labels", ("labels",)),
    ("empty_folder", ("no images",)),
    ("mnist", ("MNIST", "[N,3,32,32]")),
])
def test_bad_data(tmp_path: Path, capsys, request, rgb_run: Path, kind: str,
                  words: tuple[str, ...]) -> None:
    """quantize on data that does not fit: one line, exit 2, no QGraph written."""
    if kind == "empty_folder":
        data = tmp_path / "empty"
        (data / "cats").mkdir(parents=True)
        (data / "cats" / "notes.txt").write_text("no images here")
    elif kind == "mnist":
        data = request.getfixturevalue("mnist_dir")
    else:
        data = _bad_npz(tmp_path, kind)
    before = sorted(p.name for p in rgb_run.iterdir())
    _refused(capsys, tmp_path, ["quantize", str(rgb_run), "--data", str(data)], *words)
    assert sorted(p.name for p in rgb_run.iterdir()) == before


def _nhwc_cnn():
    """Takes channels-last [N,32,32,3] and permutes first, as Keras/tf2onnx files do."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(),
                                      nn.Linear(4 * 15 * 15, 5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x.permute(0, 3, 1, 2))

    return Net()


def _row_mlp():
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 1))


@pytest.mark.parametrize("build,shape,layout,ir_shape", [
    (_nhwc_cnn, (32, 32, 3), "nhwc", (3, 32, 32)),
    (_row_mlp, (1, 64), "flat", (64,)),
])
def test_layouts_import(tmp_path: Path, build, shape: tuple[int, ...], layout: str,
                        ir_shape: tuple[int, ...]) -> None:
    """NHWC detected from the first node (a Transpose); [N,1,K] is a vector; a one-value
    output is a vector too. The float check runs on seeded random inputs."""
    from mnist_edge.importers import import_onnx

    path = _export(tmp_path, build, shape, "m")
    run_dir, doc = import_onnx(path, tmp_path / "runs", "m", check_images=CHECK)
    assert doc["layout"] == layout and tuple(doc["input_shape"]) == ir_shape
    assert doc["float_check"]["relative_diff"] <= 1e-4
    assert "random" in doc["float_check"]["data"]
    assert fgraph.load(fgraph.find_in_run(run_dir)).input_shape == ir_shape


def test_per_channel_normalize_option(tmp_path: Path, capsys) -> None:
    """--normalize M1,M2,M3/S1,S2,S3 (torchvision's Normalize outside the model) is checked
    against onnxruntime and quantizes to a depthwise 1x1 conv on the pixels."""
    path = _export(tmp_path, _nhwc_cnn, (32, 32, 3), "n")
    runs = tmp_path / "runs"
    code, out, err = _cli(capsys, "import", str(path), "--name", "n", "--runs", str(runs),
                          "--normalize", "0.5,0.4,0.3/0.2,0.25,0.3")
    assert code == 0, err
    rng = np.random.default_rng(4)
    npz = tmp_path / "n.npz"
    np.savez(npz, x=rng.integers(0, 256, (30, 3, 32, 32), dtype=np.uint8))
    assert main(["quantize", str(runs / "n"), "--data", str(npz), "--calib-images", "30"]) == 0
    graph = qgraph.load_run(runs / "n")
    assert graph.ops[0].kind == "conv2d" and graph.ops[0].attrs["groups"] == 3
    assert main(["validate", str(runs / "n"), "--data", str(npz), "--backend", "c"]) == 0
    _refused(capsys, tmp_path, ["import", str(path), "--name", "n2", "--runs", str(runs),
                                "--normalize", "0.5,0.4/0.2"], "M1,M2,M3/S1,S2,S3")
