#!/usr/bin/env python3
"""Print the backend-vs-golden table of one or more runs (from their report.json) as Markdown.

Usage: python scripts/backend_table.py runs/edge runs/gapnet
The figures are whatever `mnist-edge validate RUN --backend ...` last wrote for each backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mnist_edge.report import load_report


def main(runs: list[str]) -> int:
    print("| model | backend | images | accuracy | exact logits | max abs diff (LSB) "
          "| latency µs/image |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for run in runs:
        report = load_report(Path(run))
        for name, f in sorted(report.get("backends", {}).items()):
            latency = f.get("latency_us_per_image")
            print(f"| {report.get('model', run)} | {name} | {f['images']:,} | "
                  f"{f['accuracy']:.2%} | {f['exact_logit_fraction']:.4%} | "
                  f"{f['max_abs_logit_diff']} | {'' if latency is None else f'{latency:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
