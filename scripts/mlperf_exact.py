#!/usr/bin/env python3
"""MLPerf Tiny models exact against golden on every core: the validation matrix.

Usage (from the repository root; the four models imported with `mnist-edge import`):

    PYTHONPATH=$PWD nice python3 scripts/mlperf_exact.py RUNS_DIR \\
        [--targets qemu-m4:1000,qemu-m33:1000,unicorn-m0:200,...] [--seed 0] [--json OUT]

RUNS_DIR holds the imported runs (ad01_int8, kws_ref_model, pretrainedResnet_quant,
vww_96_int8). Each target runs each model on N inputs (`TARGET:N`), the same ones
`mnist-edge validate RUN --backend TARGET --inputs random:N --seed S` uses: the
structured patterns first (all -128, all 127, the zero point, ramps, checkerboards,
stripes), then seeded random ones. Every output byte is compared with golden (which
equals TFLite Micro on these models: scripts/tflm_parity.py). A model that does not fit
a target is refused before building, and its row says so. Prints one Markdown row per
(model, target) as it finishes, then the table again; --json keeps every row.
The whole input batch goes through one QEMU (or unicorn) boot per model and target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mnist_edge import qgraph
from mnist_edge.errors import MnistEdgeError
from mnist_edge.probe_inputs import probe_batch
from mnist_edge.validate import validate_backend

MODELS = ("ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8")
# What issues 24 and 26 ask: >= 1,000 inputs on qemu-m4 and qemu-m33, >= 200 elsewhere
# (issue 24's >= 100 on qemu-m0: the micro:bit refuses the MLPerf models, see unicorn-m0).
TARGETS = ("qemu-m4:1000,qemu-m33:1000,unicorn-m0:200,qemu-m0:200,qemu-m3:200,qemu-m7:200,"
           "qemu-rv32imc:200,qemu-rv32imfc:200,qemu-m55:200")
HEADER = ("| model | target | exact inputs / total | max abs diff (LSB) | seconds |\n"
          "|---|---|---:|---:|---:|")


def run_one(run: Path, target: str, n: int, seed: int) -> dict:
    """Validate one model on one target; a refusal (model too large) is a row, not a crash."""
    graph = qgraph.load_run(run)
    pixels = probe_batch(graph, n, seed)
    start = time.time()
    row = {"model": run.name, "target": target, "inputs": n, "seed": seed}
    try:
        f = validate_backend(run, target, pixels, None)
    except MnistEdgeError as exc:
        return {**row, "refused": str(exc), "seconds": round(time.time() - start, 1)}
    exact = int(round(f["exact_input_fraction"] * n))
    return {**row, "exact_inputs": exact, "max_abs_diff": f["max_abs_logit_diff"],
            "seconds": round(time.time() - start, 1)}


def markdown(row: dict) -> str:
    if "refused" in row:
        return f"| {row['model']} | {row['target']} | refused: {row['refused']} | | |"
    return (f"| {row['model']} | {row['target']} | {row['exact_inputs']:,} / "
            f"{row['inputs']:,} | {row['max_abs_diff']} | "
            f"{row['seconds']:.0f} |")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--targets", default=TARGETS, help="TARGET:N,... (N inputs each)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write every row to this file")
    args = ap.parse_args(argv)
    plan = []
    for item in args.targets.split(","):
        target, _, n = item.partition(":")
        plan.append((target, int(n or 200)))
    rows, ok = [], True
    print(HEADER, flush=True)
    for target, n in plan:
        for model in args.models.split(","):
            run = args.runs / model
            if not run.is_dir():
                print(f"{run}: not imported, skipped", file=sys.stderr)
                continue
            row = run_one(run, target, n, args.seed)
            rows.append(row)
            ok &= "refused" in row or row["exact_inputs"] == row["inputs"]
            print(markdown(row), flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print("\n" + HEADER)
    print("\n".join(markdown(r) for r in rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
