"""Fuzz the `.tflite` reader with mutations of the MLPerf Tiny files (issue 24).

Every mutation must parse cleanly or be refused with a one-line MnistEdgeError, within
10 s; any other exception stops the run and names the mutation.

    PYTHONPATH=. python scripts/tflite_fuzz.py [--n 20000] [--seed 0] [--models DIR]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from tflite_fuzz import fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models" /
                    "mlperf-tiny")
    args = ap.parse_args()
    files = {p.name: p.read_bytes() for p in sorted(args.models.glob("*.tflite"))}
    if not files:
        print(f"no .tflite files in {args.models}")
        return 2
    counts: collections.Counter = collections.Counter()
    worst, t0 = 0.0, time.time()
    try:
        for _, _, outcome, secs in fuzz(files, args.n, args.seed):
            counts[outcome] += 1
            worst = max(worst, secs)
    except AssertionError as exc:
        print(f"FAILED after {sum(counts.values())} mutations: {exc}")
        return 1
    print(f"{args.n} mutations of {len(files)} files: {counts['ok']} parsed, "
          f"{counts['refused']} refused with one line, 0 crashes; slowest {worst:.3f} s, "
          f"total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
