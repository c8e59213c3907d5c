#!/usr/bin/env python3
"""RAM and flash of the MLPerf Tiny models on a Cortex-M4 (-O2), beside microTVM's workspace.

Usage (from the repository root; the models imported with `mnist-edge import`):

    PYTHONPATH=$PWD python3 scripts/mlperf_memory.py RUNS_DIR [--core cortex-m4] [--cost]

RUNS_DIR holds the four imported runs (see scripts/mlperf_vs_cmsis.py). For each model:
the planner's arena without and with steps that write over their input (exact, from
`plan_arena`), the target (0.75x microTVM + CMSIS-NN's activation workspace, from
../shared/models/mlperf-tiny/README.md), the live-activation floor; then `mcu_bench.bench`
(one seeded random input, exact against golden) for the stack high-water mark, the
instructions and the flash split, beside the .tflite file's size. Prints Markdown.
--cost adds what the RAM costs: every model benched again with no step over its input
(`overlap.choose_overlaps` replaced by one that keeps the base plan), layer by layer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MLPERF = Path(__file__).resolve().parents[2] / "shared/models/mlperf-tiny"
# run folder -> (label, microTVM + CMSIS-NN activation workspace in bytes, README.md)
MODELS = {
    "pretrainedResnet_quant": ("IC ResNet-8", 66_112),
    "kws_ref_model": ("KWS DS-CNN", 17_232),
    "vww_96_int8": ("VWW MobileNetV1", 64_800),
    "ad01_int8": ("AD autoencoder", 1_160),
}


def rows(runs: Path, core: str) -> list[str]:
    from mnist_edge import qgraph
    from mnist_edge.backends.c_planner import plan_arena
    from mnist_edge.targets import mcu_bench

    ram = ["| model | arena, no step over its input | arena (scratch + line buffers inside) "
           "| target: 0.75 x microTVM | kernel scratch | line buffers | live-activation floor "
           "| steps over their input (banded) | band copies | stack | instructions |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    flash = ["| model | code that ran | weights | biases | requantization | layer descriptors "
             "| flash total | .tflite file |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run, (label, tvm) in MODELS.items():
        run_dir = runs / run
        if not run_dir.exists():
            print(f"skipped {run}: no run folder in {runs}", file=sys.stderr)
            continue
        graph = qgraph.load_run(run_dir)
        before, plan = plan_arena(graph, in_place=False), plan_arena(graph)
        f = mcu_bench.bench(run_dir, graph, core)
        target = tvm * 3 // 4
        ok = "met" if plan.arena_bytes <= target else "NOT met"
        d = plan.describe()
        ram.append(f"| {label} | {before.arena_bytes:,} B | **{plan.arena_bytes:,} B** | "
                   f"{target:,} B ({ok}) | {plan.scratch_bytes:,} B | {plan.lines_bytes:,} B | "
                   f"{plan.floor_bytes:,} B | {d['in_place']} ({d['banded']}) | "
                   f"{d['band_copy_bytes']:,} B | {f['stack_bytes']:,} B | "
                   f"{f['instructions']:,} |")
        size = (MLPERF / f"{run}.tflite").stat().st_size
        flash.append(f"| {label} | {f['inference_code_bytes']:,} B | "
                     f"{f['flash_weight_bytes']:,} B | {f['flash_bias_bytes']:,} B | "
                     f"{f['flash_requant_bytes']:,} B | {f['layer_descriptor_bytes']:,} B | "
                     f"**{f['flash_model_bytes']:,} B** | {size:,} B |")
    return [*ram, "", *flash]


def cost(runs: Path, core: str) -> list[str]:
    from mnist_edge import qgraph
    from mnist_edge.backends import overlap
    from mnist_edge.targets import mcu_bench

    out = ["| model | arena before | arena now | instructions before | now | difference |",
           "|---|---:|---:|---:|---:|---:|"]
    layers = []
    real = overlap.choose_overlaps
    for run in MODELS:
        if not (runs / run).exists():
            continue
        graph = qgraph.load_run(runs / run)
        overlap.choose_overlaps = real
        now = mcu_bench.bench(runs / run, graph, core)
        overlap.choose_overlaps = lambda graph, steps, buffers, base, layout: base
        try:
            before = mcu_bench.bench(runs / run, graph, core)
        finally:
            overlap.choose_overlaps = real
        d = now["instructions"] - before["instructions"]
        out.append(f"| {MODELS[run][0]} | {before['arena_bytes']:,} B | {now['arena_bytes']:,} B "
                   f"| {before['instructions']:,} | {now['instructions']:,} | {d:+,} "
                   f"({d / before['instructions'] * 100:+.2f} %) |")
        layers += [f"{run} {a['layer']} ({b['function']}): {a['instructions']:,} -> "
                   f"{b['instructions']:,}" for a, b in zip(before["layers"], now["layers"],
                                                             strict=False)
                   if a["instructions"] != b["instructions"]]
    return [*out, "", *layers]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--core", default="cortex-m4")
    ap.add_argument("--cost", action="store_true")
    args = ap.parse_args(argv)
    print("\n".join(rows(args.runs, args.core)))
    if args.cost:
        print("\n" + "\n".join(cost(args.runs, args.core)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
