#!/usr/bin/env python3
"""Train, quantize, evaluate and validate every zoo model; write the table into docs/BENCHMARKS.md.

Full-size runs (all 60k training images, all 10k test images): too long for the test suite.
Usage: python scripts/bench_zoo.py [--models edge,gapnet] [--backends onnxruntime,c,c-int]
       [--reuse]   (reuse runs/<model>/checkpoint.pt and its QGraph when present)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from mnist_edge.models import MODEL_NAMES
from mnist_edge.pipeline import evaluate_run, validate_run
from mnist_edge.quantize import quantize_run
from mnist_edge.report import load_report, update_report
from mnist_edge.train import CHECKPOINT, train_model

DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- zoo:begin -->", "<!-- zoo:end -->"


def run_model(name: str, runs: Path, backends: list[str], reuse: bool, data: str | None) -> dict:
    run_dir = runs / name
    start = time.time()
    if not (reuse and (run_dir / CHECKPOINT).exists()):
        train_model(name, run_dir, data, quiet=True)
        update_report(run_dir, {"seconds": {"train": round(time.time() - start, 2)}})
    if not (reuse and list(run_dir.glob("*.qgraph.json"))):
        quantize_run(run_dir, data, quiet=True)
    evaluate_run(run_dir, data)
    if backends:
        if "onnxruntime" in backends:
            from mnist_edge.backends.onnx import export_run

            export_run(run_dir)
        validate_run(run_dir, backends, data)
    return load_report(run_dir)


def table(reports: dict[str, dict], backends: list[str]) -> str:
    head = ("| model | params | MACs | weight+bias+LUT B | peak act. B | float acc. | int8 acc. "
            "| int8/float agreement |" + "".join(f" {b} exact |" for b in backends))
    rows = [head, "|" + " --- |" * (8 + len(backends))]
    for name, r in reports.items():
        exact = "".join(
            f" {r.get('backends', {}).get(b, {}).get('exact_logit_fraction', float('nan')):.4f} |"
            for b in backends)
        rows.append(f"| {name} | {r['params']:,} | {r['macs']:,} | {r['weight_bytes']:,} | "
                    f"{r['peak_activation_bytes']:,} | {r['float_accuracy']:.2%} | "
                    f"{r['int8_accuracy']:.2%} | {r['int8_float_agreement']:.2%} |{exact}")
    return "\n".join(rows)


def write_section(text: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc += f"\n## Model zoo\n\n{block}\n"
    DOC.write_text(doc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default=",".join(MODEL_NAMES))
    p.add_argument("--backends", default="onnxruntime,c,c-int")
    p.add_argument("--runs", default="runs")
    p.add_argument("--data")
    p.add_argument("--reuse", action="store_true")
    args = p.parse_args()
    models = [m for m in args.models.split(",") if m]
    backends = [b for b in args.backends.split(",") if b]
    reports = {}
    for name in models:
        t = time.time()
        reports[name] = run_model(name, Path(args.runs), backends, args.reuse, args.data)
        print(f"{name}: int8 {reports[name]['int8_accuracy']:.2%} ({time.time() - t:.0f} s)",
              flush=True)
    command = "python scripts/bench_zoo.py " + " ".join(sys.argv[1:])
    text = (f"Produced by `{command.strip()}` (full training set, all 10,000 test images; "
            f"exact = share of the 100,000 int8 logits equal to golden's).\n\n"
            + table(reports, backends))
    write_section(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
