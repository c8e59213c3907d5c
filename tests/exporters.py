"""Small PyTorch and Keras models, trained for seconds and exported to ONNX on the fly.

Every file the import tests read is made here by the real exporters, so the tests see what
users' files contain: `torch.onnx.export(..., dynamo=False)` (TorchScript),
`torch.onnx.export(..., dynamo=True)` (the default exporter since torch 2.9, needs
onnxscript) and Keras 3's `model.export(path, format="onnx")` on the torch backend.
Files are cached for the whole test session (`exported(key, exporter)`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

TRAIN_IMAGES = 512
EXPORTERS = ("torchscript", "dynamo")
_CACHE: dict[tuple[str, str, int | None], Path] = {}
_TRAINED: dict[str, object] = {}
_DIR: list[Path] = []


def _workdir() -> Path:
    if not _DIR:
        _DIR.append(Path(tempfile.mkdtemp(prefix="mnist-edge-onnx-")))
    return _DIR[0]


def train_images(data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    from mnist_edge import data

    images, labels = data.load_mnist("train", data_dir)
    return images[:TRAIN_IMAGES], labels[:TRAIN_IMAGES].astype(np.int64)


# ---------------------------------------------------------------------------- PyTorch models
def _torch_models() -> dict[str, Callable[[], object]]:
    import torch
    from torch import nn

    class Residual(nn.Module):
        """conv -> relu -> (conv -> relu) + skip -> pool -> linear: an Add of two tensors."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
            self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            return self.head(h + self.body(h))

    class Inception(nn.Module):
        """Two branches (3x3 and 5x5) concatenated along channels."""

        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.ReLU())
            self.head = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                                      nn.Flatten(), nn.Linear(8 * 6 * 6, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([self.a(x), self.b(x)], dim=1))

    return {
        "plain": lambda: nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 6 * 6, 10)),
        "bn_dropout": lambda: nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 14 * 14, 32),
            nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10)),
        "depthwise": lambda: nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
            nn.Conv2d(8, 16, 1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16), nn.ReLU(),
            nn.Conv2d(16, 16, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)),
        "residual": Residual,
        "concat": Inception,
        "gelu_silu": lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(8 * 7 * 7, 16), nn.GELU(), nn.Linear(16, 10)),
        "activations": lambda: nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU6(), nn.Linear(32, 32), nn.ELU(0.5),
            nn.Linear(32, 32), nn.Hardswish(), nn.Linear(32, 32), nn.Hardsigmoid(),
            nn.Linear(32, 10), nn.LogSoftmax(dim=1)),
    }


TORCH_MODELS = ("plain", "bn_dropout", "depthwise", "residual", "concat", "gelu_silu",
                "activations")


def have_keras() -> bool:
    """Keras 3 importable on the torch backend (set before the first import)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        return False
    return keras.backend.backend() == "torch"


def train_torch(model, data_dir: str | None, seed: int = 0, epochs: int = 3,
                mean: float = 0.0, std: float = 1.0):
    """A few epochs of Adam on TRAIN_IMAGES images: enough for non-trivial weights."""
    import torch

    torch.manual_seed(seed)
    images, labels = train_images(data_dir)
    x = (torch.from_numpy(images[:, None].astype(np.float32) / 255.0) - mean) / std
    y = torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            loss.backward()
            opt.step()
    return model.eval()


def torch_model(key: str, data_dir: str | None = None):
    """The trained module for `key` (cached), e.g. 'plain' or 'normalized'."""
    import torch

    if key not in _TRAINED:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        if key == "normalized":
            model = train_torch(_torch_models()["plain"](), data_dir, mean=0.1307, std=0.3081)
        else:
            model = train_torch(_torch_models()[key](), data_dir)
        _TRAINED[key] = model
    return _TRAINED[key]


def export_torch(model, path: Path, exporter: str, opset: int | None = None,
                 shape: tuple[int, ...] = (1, 28, 28)) -> Path:
    """torch.onnx.export with a dynamic batch axis, as a user would call it; `shape` is the
    input without the batch."""
    import torch

    x = torch.zeros(2, *shape)
    if exporter == "torchscript":
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], opset_version=opset or 17,
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          do_constant_folding=False)
    elif exporter == "dynamo":
        torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=opset,
                          dynamic_shapes=({0: torch.export.Dim("N")},), verbose=False)
    else:
        raise ValueError(exporter)
    return path


def exported(key: str, exporter: str, data_dir: str | None = None,
             opset: int | None = None) -> Path:
    """An ONNX file of model `key` from `exporter` ('torchscript', 'dynamo' or 'keras')."""
    cache_key = (key, exporter, opset)
    if cache_key not in _CACHE:
        path = _workdir() / f"{key}-{exporter}{opset or ''}.onnx"
        if exporter == "keras":
            export_keras(keras_model(key, data_dir), path)
        else:
            export_torch(torch_model(key, data_dir), path, exporter, opset)
        _CACHE[cache_key] = path
    return _CACHE[cache_key]


# ---------------------------------------------------------------------------- Keras models
KERAS_MODELS = ("keras_cnn", "keras_simple")


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()}; set KERAS_BACKEND=torch")
    return keras


def keras_model(key: str, data_dir: str | None = None, epochs: int = 3,
                images: int = TRAIN_IMAGES):
    """The seed notebooks' channels-last Sequential models, small and briefly trained."""
    name = f"{key}:{epochs}:{images}"
    if name in _TRAINED:
        return _TRAINED[name]
    keras = _keras()
    keras.utils.set_random_seed(0)
    L = keras.layers
    if key == "keras_cnn":  # conv32-pool-conv64-pool-dense64, narrower
        layers = [L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
                  L.Dense(32, activation="relu"), L.Dense(10, activation="softmax")]
    elif key == "keras_simple":  # 'same' stride-2 convs (asymmetric pads), BN, Dropout
        layers = [L.Conv2D(8, 3, strides=2, padding="same", use_bias=False),
                  L.BatchNormalization(), L.Activation("relu"),
                  L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
                  L.MaxPooling2D(2), L.Flatten(), L.Dropout(0.2),
                  L.Dense(10, activation="softmax")]
    elif key == "keras_bench":  # the seed notebook's kerascnn at full width
        layers = [L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Flatten(),
                  L.Dropout(0.25), L.Dense(64, activation="relu"),
                  L.Dense(10, activation="softmax")]
    else:
        raise KeyError(key)
    model = keras.Sequential([keras.Input((28, 28, 1)), *layers])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    from mnist_edge import data

    x, y = data.load_mnist("train", data_dir)
    x = x[:images, :, :, None].astype(np.float32) / 255.0
    model.fit(x, y[:images].astype(np.int64), epochs=epochs, batch_size=64 if images <= 5000
              else 128, verbose=0)
    _TRAINED[name] = model
    return model


def export_keras(model, path: Path) -> Path:
    """Keras 3's own ONNX export (on the torch backend it goes through torch.onnx)."""
    model.export(str(path), format="onnx", verbose=False)
    return path
