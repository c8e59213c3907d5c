#!/usr/bin/env python3
"""Feed random and structured non-MNIST images to c, c-int and onnxruntime; compare with golden.

MNIST test images exercise a narrow slice of the int8 ranges. Noise, constant frames,
checkerboards, salt, gradients and inverted digits push every accumulator and every
requantization towards its extremes, where a backend that is only "nearly" exact breaks.

Usage: python scripts/fuzz_backends.py RUN [--images 1000000] [--backends c,c-int,onnxruntime]
       [--seed 0] [--chunk 20000] [--data DIR]
Exit 0 when every logit of every backend equals golden's, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnist_edge import golden, qgraph
from mnist_edge.errors import MnistEdgeError

Generator = Callable[[np.random.Generator, int], np.ndarray]
FUZZ_BACKENDS = ("c", "c-int", "onnxruntime")


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)


def _binary_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.integers(0, 2, (n, 28, 28)) * 255).astype(np.uint8)


def _constant(rng: np.random.Generator, n: int) -> np.ndarray:
    levels = rng.choice(np.array([0, 255, 1, 254, 127, 128], np.uint8), n)
    levels[n // 2:] = rng.integers(0, 256, n - n // 2)
    return np.broadcast_to(levels[:, None, None], (n, 28, 28)).copy()


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.empty((n, 28, 28), np.uint8)
    yy, xx = np.mgrid[:28, :28]
    for k in range(n):
        period = int(rng.integers(1, 8))
        oy, ox = rng.integers(0, 2 * period, 2)
        lo, hi = sorted(rng.integers(0, 256, 2)) if rng.random() < 0.5 else (0, 255)
        cells = (((yy + oy) // period + (xx + ox) // period) % 2).astype(bool)
        out[k] = np.where(cells, hi, lo)
    return out


def _stripes(rng: np.random.Generator, n: int) -> np.ndarray:
    out = _checkerboard(rng, n)
    horizontal = rng.random(n) < 0.5
    out[horizontal] = out[horizontal][:, :, :1]  # repeat the first column across
    out[~horizontal] = out[~horizontal][:, :1, :]
    return out


def _salt(rng: np.random.Generator, n: int) -> np.ndarray:
    density = rng.uniform(0.005, 0.15, (n, 1, 1))
    salt = rng.random((n, 28, 28)) < density
    base = np.where(rng.random((n, 1, 1)) < 0.8, 0, 255).astype(np.uint8)
    return np.where(salt, 255 - base, base).astype(np.uint8)


def _gradient(rng: np.random.Generator, n: int) -> np.ndarray:
    yy, xx = np.mgrid[:28, :28].astype(np.float64) / 27.0
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp -= ramp.min(axis=(1, 2), keepdims=True)
    ramp /= np.maximum(ramp.max(axis=(1, 2), keepdims=True), 1e-9)
    return np.round(ramp * 255).astype(np.uint8)


def _mnist_based(images: np.ndarray) -> tuple[Generator, Generator]:
    def inverted(rng: np.random.Generator, n: int) -> np.ndarray:
        picked = images[rng.integers(0, len(images), n)]
        shift = rng.integers(-4, 5, 2)
        return np.roll(255 - picked, tuple(int(s) for s in shift), axis=(1, 2))

    def noisy(rng: np.random.Generator, n: int) -> np.ndarray:
        picked = images[rng.integers(0, len(images), n)].astype(np.int16)
        noise = rng.integers(-96, 97, picked.shape)
        return np.clip(picked + noise, 0, 255).astype(np.uint8)

    return inverted, noisy


def generators(data_dir: str | None) -> dict[str, Generator]:
    """Every image family, by name (the MNIST-based ones only when MNIST is at hand)."""
    kinds: dict[str, Generator] = {
        "uniform_noise": _noise, "binary_noise": _binary_noise, "constant": _constant,
        "checkerboard": _checkerboard, "stripes": _stripes, "sparse_salt": _salt,
        "gradient": _gradient,
    }
    try:
        from mnist_edge import data

        images, _ = data.load_mnist("test", data_dir)
    except MnistEdgeError as exc:
        print(f"note: no MNIST-based families ({exc})", file=sys.stderr)
        return kinds
    kinds["inverted_mnist"], kinds["noisy_mnist"] = _mnist_based(images)
    return kinds


def make_batch(kinds: dict[str, Generator], rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` images, an equal share from every family, in a shuffled order."""
    names = list(kinds)
    counts = [n // len(names) + (i < n % len(names)) for i in range(len(names))]
    batch = np.concatenate([kinds[name](rng, c) for name, c in zip(names, counts, strict=True)
                            if c])
    return batch[rng.permutation(n)]


class Runner:
    """One backend built once and run on many batches."""

    def __init__(self, name: str, run_dir: Path, graph: qgraph.QGraph, work: Path) -> None:
        self.name, self.graph = name, graph
        if name in ("c", "c-int"):
            from mnist_edge.backends.c import generate_c
            from mnist_edge.targets import host_c

            mode = "float" if name == "c" else "int"
            src = generate_c(graph, work / f"{name}-src", mode)
            self.exe = work / f"{name}-runner"
            host_c.compile_runner(src, self.exe)
        elif name == "onnxruntime":
            from mnist_edge.backends import onnx as onnx_export
            from mnist_edge.targets import onnxrt

            path = work / onnx_export.INT8_FILE
            onnx_export.export_int8(graph, path)
            onnxrt.check_int8_model(path, graph)
            self.session = onnxrt.session(path)
        else:
            raise MnistEdgeError(f"fuzz: backend {name!r} is not fuzzed; choose from "
                                 f"{', '.join(FUZZ_BACKENDS)}")

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.name == "onnxruntime":
            from mnist_edge.targets import onnxrt

            return onnxrt.run_logits(self.session, self.graph, pixels)
        from mnist_edge.backends.c import c_inputs
        from mnist_edge.targets import host_c

        return host_c.run_runner(self.exe, c_inputs(self.graph, pixels), self.graph.output.size,
                                 0)[0]


def fuzz(run_dir: Path, images: int, backends: list[str], seed: int = 0, chunk: int = 20000,
         data_dir: str | None = None, quiet: bool = False) -> dict[str, dict[str, float]]:
    """Mismatch figures per backend over `images` fuzz images (golden is the reference)."""
    graph = qgraph.load_run(run_dir)
    kinds = generators(data_dir)
    rng = np.random.default_rng(seed)
    figures = {b: {"images": 0, "mismatching_logits": 0, "mismatching_images": 0,
                   "max_abs_diff": 0, "seconds": 0.0} for b in backends}
    golden_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="mnist-edge-fuzz-") as tmp:
        runners = {b: Runner(b, run_dir, graph, Path(tmp)) for b in backends}
        done = 0
        while done < images:
            n = min(chunk, images - done)
            pixels = make_batch(kinds, rng, n)
            start = time.perf_counter()
            reference = golden.run_int8(graph, pixels)
            golden_seconds += time.perf_counter() - start
            for name, runner in runners.items():
                start = time.perf_counter()
                logits = runner(pixels)
                f = figures[name]
                f["seconds"] += time.perf_counter() - start
                diff = np.abs(logits.astype(np.int16) - reference.astype(np.int16))
                f["images"] += n
                f["mismatching_logits"] += int(np.count_nonzero(diff))
                f["mismatching_images"] += int(np.count_nonzero(diff.any(axis=1)))
                f["max_abs_diff"] = max(f["max_abs_diff"], int(diff.max(initial=0)))
            done += n
            if not quiet:
                bad = ", ".join(f"{b} {figures[b]['mismatching_logits']}" for b in backends)
                print(f"  {done:,}/{images:,} images; mismatching logits: {bad}", flush=True)
    for f in figures.values():
        f["seconds"] = round(f["seconds"], 1)
    figures["golden"] = {"images": images, "seconds": round(golden_seconds, 1)}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder holding the QGraph")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--backends", default=",".join(FUZZ_BACKENDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=20000, help="images per batch")
    parser.add_argument("--data", help="MNIST folder (for the inverted/noisy digit families)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    try:
        if args.images <= 0 or args.chunk <= 0:
            raise MnistEdgeError("--images and --chunk must be positive")
        unknown = [b for b in backends if b not in FUZZ_BACKENDS]
        if not backends or unknown:
            raise MnistEdgeError(f"--backends: choose from {', '.join(FUZZ_BACKENDS)}")
        start = time.time()
        figures = fuzz(Path(args.run), args.images, backends, args.seed, args.chunk,
                       args.data, args.quiet)
    except MnistEdgeError as exc:
        print(f"fuzz_backends: error: {exc}", file=sys.stderr)
        return 2
    print(f"golden: {figures['golden']['images']:,} images in {figures['golden']['seconds']} s")
    for b in backends:
        f = figures[b]
        print(f"{b}: {f['images']:,} images, {f['mismatching_logits']} mismatching logits "
              f"({f['mismatching_images']} images), max |diff| {f['max_abs_diff']} LSB, "
              f"{f['seconds']} s")
    print(f"total {time.time() - start:.0f} s")
    return 0 if all(figures[b]["mismatching_logits"] == 0 for b in backends) else 1


if __name__ == "__main__":
    sys.exit(main())
