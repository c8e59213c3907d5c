#!/usr/bin/env python3
"""Train, quantize, evaluate and validate every zoo model; write the table into docs/BENCHMARKS.md.

Full-size runs (all 60k training images, all 10k test images): too long for the test suite.
Usage: python scripts/bench_zoo.py [--models edge,gapnet] [--backends onnxruntime,c,c-int]
       [--reuse]   (reuse runs/<model>/checkpoint.pt and its QGraph when present)
       [--epochs 1 --train-limit 3000]   (a short training run instead of the zoo's defaults)
       [--limit 300 --qemu-limit 20]   (test images per backend; qemu-* and rtl* take
                                        --qemu-limit) [--section zoo-matrix]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from mnist_edge.errors import MnistEdgeError
from mnist_edge.models import MODEL_NAMES
from mnist_edge.pipeline import evaluate_run, validate_run
from mnist_edge.quantize import quantize_run
from mnist_edge.report import load_report, update_report
from mnist_edge.trainer import CHECKPOINT, train_model

DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
SLOW_PREFIXES = ("qemu-", "rtl")  # emulated cores and simulations: --qemu-limit images


def run_model(name: str, runs: Path, backends: list[str], reuse: bool, data: str | None,
              train: dict, limits: tuple[int | None, int | None]) -> dict:
    run_dir = runs / name
    start = time.time()
    if not (reuse and (run_dir / CHECKPOINT).exists()):
        train_model(name, run_dir, data, quiet=True, **train)
        update_report(run_dir, {"seconds": {"train": round(time.time() - start, 2)}})
    if not (reuse and list(run_dir.glob("*.qgraph.json"))):
        quantize_run(run_dir, data, quiet=True)
    evaluate_run(run_dir, data)
    if "onnxruntime" in backends:
        from mnist_edge.backends.onnx import export_run

        export_run(run_dir)
    refused = {}
    for backend in backends:
        slow = backend.startswith(SLOW_PREFIXES)
        try:
            validate_run(run_dir, [backend], data, limits[1] if slow else limits[0])
        except MnistEdgeError as exc:  # a model the target cannot take: say why in the table
            print(f"{backend}: refused: {exc}", flush=True)
            refused[backend] = str(exc)
    return {**load_report(run_dir), "refused": refused}


def table(reports: dict[str, dict], backends: list[str]) -> str:
    head = ("| model | params | MACs | weight+bias+LUT B | peak act. B | float acc. | int8 acc. "
            "| int8/float agreement |" + "".join(f" {b} exact |" for b in backends))
    rows = [head, "|" + " --- |" * (8 + len(backends))]
    for name, r in reports.items():
        cells = ""
        for b in backends:
            f = r.get("backends", {}).get(b, {})
            if b in r.get("refused", {}):
                cells += f" refused: {r['refused'][b].split(': ', 1)[-1]} |"
            else:
                cells += (f" {f['exact_logit_fraction']:.2%} of {f['images']:,} |" if f
                          else " not run |")
        rows.append(f"| {name} | {r['params']:,} | {r['macs']:,} | {r['weight_bytes']:,} | "
                    f"{r['peak_activation_bytes']:,} | {r['float_accuracy']:.2%} | "
                    f"{r['int8_accuracy']:.2%} | {r['int8_float_agreement']:.2%} |{cells}")
    return "\n".join(rows)


def write_section(text: str, section: str = "zoo") -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc:
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc += f"\n## Model zoo ({section})\n\n{block}\n"
    DOC.write_text(doc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default=",".join(MODEL_NAMES))
    p.add_argument("--backends", default="onnxruntime,c,c-int")
    p.add_argument("--runs", default="runs")
    p.add_argument("--data")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--epochs", type=int, help="training epochs (default: the zoo's)")
    p.add_argument("--train-limit", type=int, help="training images (default: all)")
    p.add_argument("--limit", type=int, help="test images per host backend (default: all)")
    p.add_argument("--qemu-limit", type=int, help="test images per qemu-*/rtl* backend")
    p.add_argument("--section", default="zoo", help="the BENCHMARKS.md section to replace")
    args = p.parse_args()
    models = [m for m in args.models.split(",") if m]
    backends = [b for b in args.backends.split(",") if b]
    train = {k: v for k, v in (("epochs", args.epochs), ("train_limit", args.train_limit))
             if v is not None}
    reports = {}
    for name in models:
        t = time.time()
        reports[name] = run_model(name, Path(args.runs), backends, args.reuse, args.data, train,
                                  (args.limit, args.qemu_limit))
        print(f"{name}: int8 {reports[name]['int8_accuracy']:.2%} ({time.time() - t:.0f} s)",
              flush=True)
    command = "python scripts/bench_zoo.py " + " ".join(sys.argv[1:])
    text = (f"Produced by `{command.strip()}` (exact = share of the int8 logits equal to "
            f"golden's, on the number of test images given; accuracies on all 10,000).\n\n"
            + table(reports, backends))
    write_section(text, args.section)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
