#!/usr/bin/env python3
"""Per-layer instructions of one inference, an earlier commit's kernels against this tree's.

Usage (from the repository root, MNIST files in $MNIST_EDGE_DATA):

    PYTHONPATH=$PWD python3 scripts/bench_before_after.py runs/edge --base 7a57e18 \
        [--base-run generated/edge] [--cores cortex-m0,cortex-m4,rv32imc]

The base commit is checked out in a temporary git worktree and runs its own
`mnist-edge bench` code on its own copy of the model (`--base-run`, a folder inside
that checkout holding the QGraph, for commits whose QGraph schema differs; default:
RUN's QGraph copied in). Both trees count every core at -O2 and -Os on MNIST test
image 0. Prints one Markdown table (total and every layer, before -> after) and the
cells that got slower; exit status 1 when any layer is slower.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CORES = "cortex-m0,cortex-m3,cortex-m4,cortex-m7,cortex-m33,rv32imc,rv32imfc"
# Runs inside a checkout (its own mnist_edge): {"core opt": [total, [[layer, n], ...]]}.
DRIVER = """
import json, sys
from pathlib import Path
from mnist_edge import qgraph
from mnist_edge.targets import mcu_bench
run = Path(sys.argv[1])
graph = qgraph.load_run(run)
out = {}
for core in sys.argv[2].split(","):
    for size in (False, True):
        f = mcu_bench.bench(run, graph, core, size)
        out[core + (" -Os" if size else " -O2")] = [
            f["instructions"], [[r["layer"], r["instructions"]] for r in f["layers"]]]
print(json.dumps(out))
"""


def count(tree: Path, run: Path, cores: str) -> dict[str, list]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(run), cores], cwd=tree, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench in {tree} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def change(before: int, after: int) -> str:
    return f"{before:,} → {after:,} ({(after - before) / before:+.1%})"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--base", required=True, help="the earlier commit")
    ap.add_argument("--base-run", help="QGraph folder inside the base checkout")
    ap.add_argument("--cores", default=CORES)
    args = ap.parse_args(argv)
    here = Path.cwd()
    run = (here / args.run).resolve()
    with tempfile.TemporaryDirectory(prefix="mnist-edge-base-") as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.base],
                       check=True)
        try:
            if args.base_run:
                base_run = tree / args.base_run
            else:
                base_run = tree / "runs" / run.name
                base_run.mkdir(parents=True)
                for f in run.glob("*.qgraph.*"):
                    shutil.copy(f, base_run / f.name)
            before = count(tree, base_run, args.cores)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], check=True)
    after = count(here, run, args.cores)
    layers = [name for name, _ in next(iter(after.values()))[1] if name != "argmax"]
    print(f"| core | opt | before ({args.base}) | after | " + " | ".join(layers) + " |")
    print("| --- | --- | ---: | ---: |" + " ---: |" * len(layers))
    slower = []
    for key, (total, rows) in after.items():
        old_total, old_rows = before[key]
        old, new = dict(old_rows), dict(rows)
        if set(layers) - set(old):
            sys.exit(f"{key}: the base has no layer {sorted(set(layers) - set(old))}")
        cells = [change(old[name], new[name]) for name in layers]
        slower += [f"{key} {name}" for name in layers if new[name] > old[name]]
        core, opt = key.split()
        ratio = (total - old_total) / old_total
        print(f"| {core} | {opt} | {old_total:,} | {total:,} ({ratio:+.1%}) | "
              + " | ".join(cells) + " |")
    print("\nslower layers: " + (", ".join(slower) if slower else "none"))
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
