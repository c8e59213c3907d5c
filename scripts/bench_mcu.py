#!/usr/bin/env python3
"""Full-size MCU figures: every test image on each QEMU target, and instruction tables.

Usage (from the repository root, MNIST files in $MNIST_EDGE_DATA):

    PYTHONPATH=$PWD nice python3 scripts/bench_mcu.py runs/edge runs/gapnet \
        [--targets qemu-m0,qemu-m33,qemu-rv32imc,qemu-rv32imfc] [--limit N] \
        [--cores cortex-m0,cortex-m4,cortex-m33,rv32imc] [--no-validate] [--no-bench]

For each run it validates each target against golden on the whole test set (or
the first N images) and prints the backend table; then it counts the
instructions of one inference per core at -O2 and -Os (`mnist-edge bench`) and
prints one table per core and level, and a summary table. Every figure lands in
the run's report.json as the CLI writes it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mnist_edge import data, qgraph
from mnist_edge.report import update_report
from mnist_edge.targets import mcu_bench
from mnist_edge.validate import validate_backend

TARGETS = "qemu-m0,qemu-m33,qemu-rv32imc,qemu-rv32imfc"
CORES = "cortex-m0,cortex-m4,cortex-m33,rv32imc"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--targets", default=TARGETS)
    ap.add_argument("--cores", default=CORES)
    ap.add_argument("--limit", type=int, help="only the first N test images")
    ap.add_argument("--no-validate", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    args = ap.parse_args(argv)
    ok = True
    if not args.no_validate:
        images, labels = data.load_mnist("test")
        if args.limit:
            images, labels = images[:args.limit], labels[:args.limit]
        print("| model | backend | images | accuracy | exact logits | max abs diff | QEMU s |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for run in args.runs:
            for target in args.targets.split(","):
                start = time.time()
                f = validate_backend(run, target, images, labels)
                ok &= f["exact_logit_fraction"] == 1.0
                print(f"| {Path(run).name} | {target} | {f['images']:,} | {f['accuracy']:.2%} | "
                      f"{f['exact_logit_fraction']:.4%} | {f['max_abs_logit_diff']} | "
                      f"{time.time() - start:.0f} |", flush=True)
    if not args.no_bench:
        summary = []
        for run in args.runs:
            run_dir = Path(run)
            graph = qgraph.load_run(run_dir)
            for core in args.cores.split(","):
                for size in (False, True):
                    f = mcu_bench.bench(run_dir, graph, core, size)
                    update_report(run_dir, {"mcu_bench": {core + ("-Os" if size else ""): f}})
                    print(mcu_bench.format_table(graph.name, core, f) + "\n", flush=True)
                    summary.append((graph.name, core, f))
        print(mcu_bench.format_summary(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
