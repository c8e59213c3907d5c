"""The data a model runs on, whatever its input: MNIST, an `.npz`, or an image folder.

One loader for every command (`import`'s float check, `quantize`'s calibration, `evaluate`,
`validate`, `generate`'s test vectors, `bench`), so that `--data` means the same thing
everywhere:

- no `--data`, or a folder holding the MNIST IDX files: MNIST, for a model that reads
  1x28x28 pixels (or 784 of them as a vector);
- `FILE.npz` with `x` (N x the model's input: C,H,W or H,W,C, H,W for one channel, K for
  a vector) as uint8 pixels or float features, and optional integer labels `y`. Loaded
  with `allow_pickle=False`: a file holding Python objects is refused, never unpickled;
- from Python (the API), arrays: `x`, `(x, y)` or a `Dataset`, shaped as in an `.npz`;
- a folder of `class_name/*.png|jpg` (the layout torchvision's ImageFolder and Keras's
  image_dataset_from_directory read): each image converted to grey or RGB per the model's
  channels and resized to its H x W with PIL's bilinear filter; labels are the class
  folders' indices in sorted order.

A user's data set serves both calibration and evaluation (MNIST keeps its train/test
split). Without labels, accuracy is left out and exactness is still measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data as mnist
from .errors import MnistEdgeError
from .npz import read_npz

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
RESIZE = "PIL bilinear"  # the stated resize method of image folders
CALIBRATION_HOLDOUT = 5000  # MNIST's validation split, never calibrated on


@dataclass(frozen=True)
class InputSpec:
    """What a model reads: `shape` (C,H,W or K, no batch) and `kind` ("pixels": uint8
    bytes; "features": float values)."""

    shape: tuple[int, ...]
    kind: str

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def describe(self) -> str:
        dtype = "uint8 pixels" if self.kind == "pixels" else "float features"
        return f"[N,{','.join(map(str, self.shape))}] {dtype}"


@dataclass
class Dataset:
    """Inputs `x` [N, *spec.shape] (uint8 pixels or float32 features), labels `y` or None."""

    x: np.ndarray
    y: np.ndarray | None
    source: str

    def head(self, limit: int | None) -> Dataset:
        if limit is None:
            return self
        if limit <= 0:
            raise MnistEdgeError("--limit must be positive")
        return Dataset(self.x[:limit], None if self.y is None else self.y[:limit], self.source)


def spec_of(graph) -> InputSpec:
    """The input of a FloatGraph or a QGraph (a uint8-encoded QGraph reads pixels)."""
    if hasattr(graph, "input_kind"):
        return InputSpec(tuple(graph.input_shape), graph.input_kind)
    kind = "pixels" if graph.input_encoding == "uint8" else "features"
    return InputSpec(tuple(graph.input.shape), kind)


# What `--data` (or the API's `data=`) may be: a path, arrays, or None for MNIST.
DataSource = str | Path | np.ndarray | tuple | Dataset | None


def load(data: DataSource, spec: InputSpec, split: str = "test") -> Dataset:
    """The data set `data` names (see the module docstring), shaped for `spec`: [N, *shape]
    (MNIST keeps its [N,28,28] for a 1x28x28 model, as every stage always had it)."""
    if _is_arrays(data):
        return _from_arrays(data, spec)
    source = _source(data, spec)
    if source == "npz":
        return _load_npz(Path(str(data)).expanduser(), spec)
    if source == "folder":
        return _load_image_folder(Path(str(data)).expanduser(), spec)
    return _load_mnist(data, spec, split)


def calibration_set(data: DataSource, spec: InputSpec, count: int,
                    seed: int = 0) -> np.ndarray:
    """A seeded random subset of `count` inputs (MNIST: of the training images, validation
    split excluded)."""
    x = load(data, spec, "train").x
    if not _is_arrays(data) and _source(data, spec) == "mnist" and len(x) > CALIBRATION_HOLDOUT:
        x = x[:-CALIBRATION_HOLDOUT]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=min(count, len(x)), replace=False))
    return x[idx]


def graph_input(graph, x: np.ndarray) -> np.ndarray:
    """A batch as a QGraph takes it: pixels as they are; float features quantized with the
    graph's input scale and zero point (round half to even and saturate, in float32 as
    ONNX QuantizeLinear does)."""
    x = np.asarray(x)
    if graph.input_encoding == "int8" and np.issubdtype(x.dtype, np.floating):
        q = np.rint(x.astype(np.float32) / np.float32(graph.input.scale))
        return np.clip(q + graph.input.zero_point, -128, 127).astype(np.int8)
    return x


# ------------------------------------------------------------------ sources
def _is_arrays(data: object) -> bool:
    return isinstance(data, (np.ndarray, tuple, list, Dataset))


def _from_arrays(data: np.ndarray | tuple | list | Dataset, spec: InputSpec) -> Dataset:
    """Arrays handed over from Python, checked exactly as an `.npz` is."""
    if isinstance(data, Dataset):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise MnistEdgeError(f"data: expected x or (x, y), got a sequence of {len(data)}")
        x, y = data
    else:
        x, y = data, None
    x = _fit(np.asarray(x), spec, "data x")
    labels = None if y is None else _labels(np.asarray(y), len(x), Path("data"))
    return Dataset(x, labels, f"{len(x):,} inputs from Python")


def _source(data: str | Path | None, spec: InputSpec) -> str:
    """"mnist", "npz" or "folder": what `--data` names. A folder without the MNIST files is
    an image folder when it has class folders or the model cannot read MNIST anyway."""
    if data is None or str(data) == "":
        return "mnist"
    path = Path(data).expanduser()
    if path.suffix.lower() == ".npz":
        return "npz"
    if path.is_file():
        raise MnistEdgeError(f"--data {path}: expected an .npz file or a folder (the MNIST "
                             "IDX files, or class_name/*.png|jpg images)")
    if path.is_dir() and mnist._missing(path) and (_subfolders(path) or not _mnist_shaped(spec)):
        return "folder"
    return "mnist"


def _mnist_shaped(spec: InputSpec) -> bool:
    return spec.kind == "pixels" and spec.shape in (mnist.MNIST_SHAPE, (28 * 28,))


def _subfolders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _load_mnist(data: str | Path | None, spec: InputSpec, split: str) -> Dataset:
    """MNIST for a model of 784 pixels: [N,28,28] for 1x28x28 (as every stage always had
    it), [N,784] for a vector."""
    if not _mnist_shaped(spec):
        raise MnistEdgeError(f"MNIST images are [N,1,28,28] uint8 pixels; the model takes "
                             f"{spec.describe()}: pass --data with an .npz or an image folder")
    images, labels = mnist.load_mnist(split, data)
    x = images if spec.shape == mnist.MNIST_SHAPE else images.reshape(len(images), -1)
    return Dataset(x, labels.astype(np.int64), "MNIST " + split)


def _load_npz(path: Path, spec: InputSpec) -> Dataset:
    arrays = read_npz(path, ".npz")
    if "x" not in arrays:
        raise MnistEdgeError(f"{path}: no array 'x' (found: {', '.join(arrays) or 'none'}); "
                             "expected x (inputs) and optionally y (labels)")
    x, y = arrays["x"], arrays.get("y")
    x = _fit(x, spec, f"{path}: x")
    return Dataset(x, _labels(y, len(x), path), str(path))


def _fit(x: np.ndarray, spec: InputSpec, what: str) -> np.ndarray:
    """x in the model's layout [N, *spec.shape], or a one-line error naming both shapes."""
    want = spec.describe()
    got = f"[{','.join(map(str, x.shape))}] {x.dtype}"
    if spec.kind == "pixels" and x.dtype != np.uint8:
        raise MnistEdgeError(f"{what} is {got}; the model takes {want} (uint8 0..255)")
    if spec.kind == "features" and not np.issubdtype(x.dtype, np.floating):
        raise MnistEdgeError(f"{what} is {got}; the model takes {want} (float32)")
    if x.ndim < 2 or len(x) == 0:
        raise MnistEdgeError(f"{what} is {got}; the model takes {want} (N >= 1)")
    rest = tuple(x.shape[1:])
    shape = spec.shape
    if rest == shape:
        out = x
    elif len(shape) == 3 and rest == (shape[1], shape[2], shape[0]):  # channels last
        out = x.transpose(0, 3, 1, 2)
    elif len(shape) == 3 and shape[0] == 1 and rest == shape[1:]:
        out = x[:, None]
    elif len(shape) == 1 and [d for d in rest if d != 1] == [shape[0]]:
        out = x.reshape(len(x), shape[0])
    else:
        raise MnistEdgeError(f"{what} is {got}; the model takes {want}")
    out = np.ascontiguousarray(out)
    if spec.kind == "features":
        out = out.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise MnistEdgeError(f"{what} holds NaN or infinite values")
    return out


def _labels(y: np.ndarray | None, count: int, path: Path) -> np.ndarray | None:
    if y is None:
        return None
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (count,) or (
            count and y.min() < 0):
        raise MnistEdgeError(f"{path}: y is [{','.join(map(str, y.shape))}] {y.dtype}; "
                             f"expected {count} non-negative integer labels, one per input")
    return y.astype(np.int64)


def _load_image_folder(path: Path, spec: InputSpec) -> Dataset:
    """class_name/*.png|jpg -> uint8 [N,C,H,W], resized (PIL bilinear) to the model's H x W."""
    from PIL import Image, UnidentifiedImageError

    if spec.kind != "pixels" or len(spec.shape) != 3 or spec.shape[0] not in (1, 3):
        raise MnistEdgeError(f"--data {path}: an image folder gives grey or RGB pixels; the "
                             f"model takes {spec.describe()}")
    classes = _subfolders(path)
    files = [(i, f) for i, c in enumerate(classes) for f in sorted(c.iterdir())
             if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise MnistEdgeError(f"--data {path}: no images found (expected class_name/*.png|jpg "
                             f"in {len(classes)} class folder(s))")
    c, h, w = spec.shape
    x = np.empty((len(files), h, w, c), np.uint8)
    for n, (_, f) in enumerate(files):
        try:
            with Image.open(f) as img:
                img = img.convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR)
                x[n] = np.asarray(img, np.uint8).reshape(h, w, c)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise MnistEdgeError(f"{f}: unreadable image ({type(exc).__name__})") from None
    y = np.array([i for i, _ in files], np.int64)
    return Dataset(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y,
                   f"{path} ({len(classes)} classes, resized with {RESIZE})")


def synthetic(spec: InputSpec, count: int, seed: int = 0) -> np.ndarray:
    """Seeded random inputs of `spec` (uniform pixels, standard normal features): what the
    import's float check compares the two graphs on when no data set is at hand for a
    model MNIST cannot feed (any input shows a wrong mapping)."""
    rng = np.random.default_rng(seed)
    if spec.kind == "pixels":
        return rng.integers(0, 256, (count, *spec.shape), dtype=np.uint8)
    return rng.standard_normal((count, *spec.shape)).astype(np.float32)


def sample(data: DataSource, spec: InputSpec, count: int) -> tuple[np.ndarray, str]:
    """`count` inputs where any will do (the import's float check, generated test vectors):
    `data` (MNIST test images by default) when the model reads them, else seeded random
    inputs; and where they came from."""
    if data is None and not _mnist_shaped(spec):
        return synthetic(spec, count), f"{count} seeded random inputs"
    ds = load(data, spec, "test")
    return ds.x[:count], ds.source
