#!/usr/bin/env python3
"""Cortex-M55 figures: exactness on qemu-m55, and Helium vs the scalar DSP path.

Usage (from the repository root, MNIST files in $MNIST_EDGE_DATA):

    PYTHONPATH=$PWD nice python3 scripts/bench_m55.py RUN [RUN...] [--zoo FOLDER]
        [--images 1000] [--inputs 200] [--size] [--no-validate] [--no-bench]

Each RUN is validated on qemu-m55 against golden: image models on the first
--images MNIST test images, the others (imported .tflite models such as the MLPerf
Tiny ones) on --inputs seeded structured + random inputs (`--inputs random:N` of
`mnist-edge validate`). With --zoo FOLDER, every zoo model is added as a run there,
with seeded weights calibrated on 256 training images (as tests/test_zoo_matrix.py:
exactness does not depend on training). Then one inference of each run is counted
on the M55 with Helium (`bench --mcu cortex-m55`) and with MVE off
(`bench --mcu cortex-m55-nomve`, the scalar DSP kernels), and a Markdown table sets
them side by side, layer by layer (-O2, or -Os with --size).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mnist_edge import data, qgraph
from mnist_edge.errors import MnistEdgeError
from mnist_edge.models import MODEL_NAMES
from mnist_edge.probe_inputs import probe_batch
from mnist_edge.targets import mcu_bench
from mnist_edge.testing import seeded_zoo_qgraph
from mnist_edge.validate import validate_backend

HELIUM, SCALAR = "cortex-m55", "cortex-m55-nomve"


def zoo_runs(folder: Path) -> list[Path]:
    """A run folder per zoo model: seeded weights, calibrated on 256 training images."""
    calibration = data.load_mnist("train")[0][:256]
    runs = []
    for name in MODEL_NAMES:
        run = folder / name
        if not list(run.glob("*.qgraph.json")):
            qgraph.save(seeded_zoo_qgraph(name, calibration), run / name)
        runs.append(run)
    return runs


def validate(run: Path, images: int, inputs: int) -> str:
    graph = qgraph.load_run(run)
    start = time.time()
    if graph.input_encoding == "uint8" and tuple(graph.input.shape) == data.MNIST_SHAPE:
        pixels, labels = (a[:images] for a in data.load_mnist("test"))
        what = "MNIST test images"
    else:
        pixels, labels = probe_batch(graph, inputs, 0), None
        what = "structured + random inputs"
    try:
        f = validate_backend(run, "qemu-m55", pixels, labels)
    except MnistEdgeError as exc:  # e.g. a model larger than the part: refused, not run
        return f"| {graph.name} | refused: {exc} | | | |"
    return (f"| {graph.name} | {f['images']:,} {what} | {f['exact_logit_fraction']:.4%} | "
            f"{f['max_abs_logit_diff']} | {time.time() - start:.0f} |")


def compare(name: str, helium: dict, scalar: dict) -> list[str]:
    rows = [f"{name} ({helium['compiler']}, {helium['opt']}):", "",
            "| layer | MACs | scalar DSP (nomve) | Helium | Helium / scalar |",
            "|---|---:|---:|---:|---:|"]
    pairs = list(zip(scalar["layers"], helium["layers"], strict=False))
    for s, h in pairs:
        macs = f"{h['macs']:,}" if h["macs"] else ""
        rows.append(f"| {h['layer']} | {macs} | {s['instructions']:,} | {h['instructions']:,} | "
                    f"{h['instructions'] / s['instructions']:.3f} |")
    rows.append(f"| **total** | {helium['macs']:,} | **{scalar['instructions']:,}** | "
                f"**{helium['instructions']:,}** | "
                f"**{helium['instructions'] / scalar['instructions']:.3f}** |")
    rows.append(f"| instr/MAC | | {scalar['instructions_per_mac']:.2f} | "
                f"{helium['instructions_per_mac']:.2f} | |")
    rows.append(f"| flash: inference code | | {scalar['inference_code_bytes']:,} B | "
                f"{helium['inference_code_bytes']:,} B | |")
    rows.append(f"| RAM: arena + stack | | {scalar['ram_bytes']:,} B | "
                f"{helium['ram_bytes']:,} B | |")
    return rows + [""]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--zoo", help="add every zoo model (seeded weights) as a run in FOLDER")
    ap.add_argument("--images", type=int, default=1000, help="MNIST test images per model")
    ap.add_argument("--inputs", type=int, default=200, help="inputs per non-MNIST model")
    ap.add_argument("--size", action="store_true", help="count -Os builds instead of -O2")
    ap.add_argument("--no-validate", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    args = ap.parse_args(argv)
    runs = [Path(r) for r in args.runs] + (zoo_runs(Path(args.zoo)) if args.zoo else [])
    ok = True
    if not args.no_validate:
        print("| model | inputs | exact logits on qemu-m55 | max abs diff | seconds |")
        print("|---|---|---:|---:|---:|")
        for run in runs:
            line = validate(run, args.images, args.inputs)
            ok &= "| 100.0000% |" in line or "| refused: " in line
            print(line, flush=True)
        print()
    if not args.no_bench:
        for run in runs:
            graph = qgraph.load_run(run)
            size = args.size
            try:
                helium = mcu_bench.bench(run, graph, HELIUM, size)
                scalar = mcu_bench.bench(run, graph, SCALAR, size)
            except MnistEdgeError as exc:
                print(f"{graph.name}: {exc}\n", flush=True)
                continue
            print("\n".join(compare(graph.name, helium, scalar)), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
