#!/usr/bin/env python3
"""Per-layer Cortex-M4 -O2 instructions of the MLPerf Tiny models, ours beside CMSIS-NN's.

Usage (from the repository root; the models imported with `mnist-edge import`):

    PYTHONPATH=$PWD python3 scripts/mlperf_vs_cmsis.py RUNS_DIR \\
        [--cmsis ../shared/models/mlperf-tiny/CMSIS-NN.md]

RUNS_DIR holds the four imported runs (ad01_int8, kws_ref_model, pretrainedResnet_quant,
vww_96_int8). Ours: `mcu_bench.bench` (exact instruction counts from the emulator, one
seeded random input, plus the two labelled cycle estimates). CMSIS-NN's: the per-layer
tables of CMSIS-NN.md, matched by TFLite operator index (our layer names end in it).
Prints one Markdown table per model, then issue 26's Cortex-M4 targets beside what was
counted: instructions <= 0.5x CMSIS-NN's, estimated cycles <= 0.75x (zero wait states) and
<= 1.0x (flash wait states) the best published silicon cycles, arena + scratch <= 0.75x
microTVM's workspace, flash <= the .tflite file (the anchors read from the models' README).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

MODELS = {  # run folder -> the heading of its per-layer table in CMSIS-NN.md
    "pretrainedResnet_quant": "IC ResNet-8",
    "kws_ref_model": "KWS DS-CNN",
    "vww_96_int8": "VWW MobileNetV1-0.25",
    "ad01_int8": "AD FC-autoencoder",
}
DEFAULT_CMSIS = Path(__file__).resolve().parents[2] / "shared/models/mlperf-tiny/CMSIS-NN.md"
# the README's column order: IC, KWS, VWW, AD
README_ORDER = ("pretrainedResnet_quant", "kws_ref_model", "vww_96_int8", "ad01_int8")


def cmsis_layers(text: str, heading: str) -> tuple[dict[int, tuple[str, int]], int]:
    """{op index: (layer, instructions)} and the whole-network count of one model."""
    part = text.split(f"## Per-layer, {heading},", 1)[1].split("\n## ", 1)[0]
    layers = {}
    total = 0
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 5 and cells[0].isdigit():
            layers[int(cells[0])] = (cells[1], int(cells[4].replace(",", "")))
        elif len(cells) > 5 and "sum of layers" in cells[1]:
            total = int(re.search(r"\(([\d,]+)\)", cells[4]).group(1).replace(",", ""))
    return layers, total


def published(readme: str) -> tuple[dict[str, float], dict[str, int]]:
    """{run: best published M4 cycles} and {run: microTVM workspace bytes}, from the README."""
    row = next(line for line in readme.splitlines() if line.startswith("| best published"))
    cycles = [float(m) * 1e6 for m in re.findall(r"= ([\d.]+) M", row)]
    work = re.search(r"generated workspace\): IC ([\d,]+) B, KWS ([\d,]+) B, VWW ([\d,]+) B, "
                     r"AD ([\d,]+) B", " ".join(readme.split()))
    if len(cycles) != 4 or work is None:
        raise SystemExit("the models' README lost its published figures")
    return (dict(zip(README_ORDER, cycles, strict=True)),
            {k: int(v.replace(",", "")) for k, v in zip(README_ORDER, work.groups(), strict=True)})


def _versus(ours: float, anchor: float, bound: float) -> str:
    """ours as a multiple of the anchor, against the issue's bound on that multiple."""
    verdict = "met" if ours <= bound * anchor else "**not met**"
    return f"{ours:,.0f} = {ours / anchor:.2f}x (<= {bound:g}x: {verdict})"


def targets(rows: list[tuple[str, dict, int]], readme: str, models: Path) -> str:
    """Issue 26's Cortex-M4 targets beside `rows` (run, bench figures, CMSIS-NN's count)."""
    best, workspace = published(readme)
    lines = ["Issue 26's Cortex-M4 -O2 targets, each figure as a multiple of its anchor "
             "(instructions and bytes: exact counts; cycles: estimates from the timing model):",
             "",
             "| model | instructions vs CMSIS-NN | est. cycles 0 WS vs best published "
             "| est. cycles flash WS vs best published | arena + scratch vs microTVM "
             "| flash vs the .tflite file | stack |",
             "|---|---|---|---|---|---|---:|"]
    for name, f, cmsis in rows:
        ws = f.get("estimated_cycles_m4_flash_ws")
        lines.append(
            f"| {name} | {_versus(f['instructions'], cmsis, 0.5)} "
            f"| {_versus(f['estimated_cycles_m4_model'], best[name], 0.75)} "
            f"| {_versus(ws, best[name], 1.0) if ws is not None else 'not counted'} "
            f"| {_versus(f['arena_bytes'], workspace[name], 0.75)} "
            f"| {_versus(f['flash_model_bytes'], (models / f'{name}.tflite').stat().st_size, 1.0)} "
            f"| {f['stack_bytes']:,} B |")
    return "\n".join(lines + ["", *floors(rows, best)]) + "\n"


def floors(rows: list[tuple[str, dict, int]], best: dict[str, float]) -> list[str]:
    """What no Cortex-M4 code that multiplies once per MAC can beat under the timing model,
    so that a target below it is told apart from one not yet reached: a multiply
    instruction does at most 2 MACs (SMLAD) in a cycle, and each word of int8 weights is
    loaded from flash at least once, in at least one cycle plus the wait states. Code
    that multiplies less than once per MAC (Winograd's algorithms: IC's stride-1 3x3
    convs) is not bound by the MACs / 2 term; the weight loads bind it still."""
    lines = ["Floors under the same timing model, for code that multiplies once per MAC and "
             "keeps the int8 weights in flash: MACs / 2 cycles (SMLAD), plus, with wait "
             "states, (1 + wait states) cycles for each weight word loaded once (an algorithm "
             "that multiplies less, as the Winograd convs do, is bound only by the loads):",
             "",
             "| model | floor 0 WS vs best published | floor flash WS vs best published |",
             "|---|---|---|"]
    for name, f, _ in rows:
        if f.get("flash_wait_states") is None:
            continue
        macs = -(-f["macs"] // 2)
        words = -(-f["flash_weight_bytes"] // 4)
        ws = macs + words * (1 + f["flash_wait_states"]["wait_states"])
        lines.append(f"| {name} | {_floor(macs, best[name], 0.75)} "
                     f"| {_floor(ws, best[name], 1.0)} |")
    return lines


def _floor(floor: int, anchor: float, bound: float) -> str:
    verdict = ("under this floor: out of reach at one multiply per MAC"
               if floor > bound * anchor else "above this floor: not ruled out")
    return f"{floor:,} = {floor / anchor:.2f}x (target {bound:g}x: {verdict})"


def table(run: Path, heading: str, text: str) -> tuple[str, dict, int]:
    """The per-layer table, the bench figures and CMSIS-NN's whole-network count."""
    from mnist_edge import qgraph
    from mnist_edge.targets import mcu_bench

    f = mcu_bench.bench(run, qgraph.load_run(run), "cortex-m4")
    theirs, their_total = cmsis_layers(text, heading)
    lines = [f"{heading} (`{run.name}`), Cortex-M4 -O2:", "",
             "| op | layer (CMSIS-NN.md) | our kernel | MACs | ours | CMSIS-NN | ours / CMSIS-NN |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for r in f["layers"]:
        m = re.search(r"_(\d+)$", r["layer"])
        if m is None:
            continue
        i = int(m.group(1))
        name, n = theirs.get(i, ("", 0))
        ratio = f"{r['instructions'] / n:.2f}" if n else ""
        macs = f"{r['macs']:,}" if r["macs"] else ""
        lines.append(f"| {i} | {name} | {r['function']} | {macs} | {r['instructions']:,} | "
                     f"{n:,} | {ratio} |")
    lines += [f"| | **whole inference** | | {f['macs']:,} | **{f['instructions']:,}** | "
              f"**{their_total:,}** | **{f['instructions'] / their_total:.2f}** |", "",
              f"Estimated cycles (not measured): {f['estimated_cycles_m4_model']:,} with zero "
              + (f"wait states, {f['estimated_cycles_m4_flash_ws']:,} with "
                 f"{f['flash_wait_states']['wait_states']} wait states on each of the "
                 f"{f['flash_data_reads']:,} data reads from flash "
                 f"({f['flash_wait_states']['part']})" if f.get("flash_data_reads") is not None
                 else "wait states (flash reads not counted: unicorn misran the hooked run)")
              + f". RAM: arena {f['arena_bytes']:,} B "
              f"(scratch {f['scratch_bytes']:,} B and weight stages up to "
              f"{f['stage_bytes']:,} B inside), stack {f['stack_bytes']:,} B.", ""]
    return "\n".join(lines), f, their_total


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--cmsis", type=Path, default=DEFAULT_CMSIS)
    args = ap.parse_args(argv)
    text = args.cmsis.read_text()
    rows = []
    for folder, heading in MODELS.items():
        run = args.runs / folder
        if not run.is_dir():
            print(f"{run}: not imported, skipped", file=sys.stderr)
            continue
        markdown, figures, cmsis_total = table(run, heading, text)
        print(markdown, flush=True)
        rows.append((folder, figures, cmsis_total))
    readme = args.cmsis.with_name("README.md")
    print(targets(rows, readme.read_text(), readme.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
