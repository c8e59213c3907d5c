#!/usr/bin/env python3
"""Per-core tables of the MLPerf Tiny models: instructions, flash and RAM on every core.

Usage (from the repository root; the four models imported with `mnist-edge import`):

    PYTHONPATH=$PWD nice python3 scripts/mlperf_cores.py RUNS_DIR [--cores ...]
        [--opts -O2,-Os] [--json OUT] [--from-json OUT]

For each model, core and level it runs `mnist-edge bench RUN --mcu CORE [--size]`
(`mcu_bench.bench`): one inference on a seeded random input, its instructions counted
exactly (unicorn; the Cortex-M55 in QEMU with the counting plugin), logits checked
against golden. It prints one table per model (instructions, instructions per MAC,
flash: weights and biases / requantization multipliers and shifts / the code one
inference runs / layer descriptors; RAM: arena with the kernels' scratch inside it,
stack high-water mark), then the Cortex-M55 with Helium beside the same core with MVE
off (`cortex-m55-nomve`, the scalar DSP kernels). --json keeps the figures; --from-json
prints the tables again without counting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

MODELS = ("ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8")
CORES = ("cortex-m0,cortex-m3,cortex-m4,cortex-m7,cortex-m33,cortex-m55,cortex-m55-nomve,"
         "rv32imc,rv32imfc")
KEEP = ("compiler", "opt", "requant", "image", "instructions", "macs", "instructions_per_mac",
        "weight_bytes", "requant_param_bytes", "layer_descriptor_bytes", "inference_code_bytes",
        "model_code_bytes", "arena_bytes", "scratch_bytes", "stack_bytes", "ram_bytes",
        "estimated_cycles_m4_model", "estimated_cycles_m4_flash_ws")


def count(runs: Path, models: list[str], cores: list[str], opts: list[str],
          out: Path | None) -> list[dict]:
    from mnist_edge import qgraph
    from mnist_edge.errors import MnistEdgeError
    from mnist_edge.targets import mcu_bench

    rows: list[dict] = []
    for model in models:
        run = runs / model
        if not run.is_dir():
            print(f"{run}: not imported, skipped", file=sys.stderr)
            continue
        graph = qgraph.load_run(run)
        for core in cores:
            for opt in opts:
                start = time.time()
                try:
                    f = mcu_bench.bench(run, graph, core, size=opt == "-Os")
                    row = {k: f[k] for k in KEEP if k in f}
                except MnistEdgeError as exc:
                    row = {"refused": str(exc), "opt": opt}
                rows.append({"model": model, "core": core, **row,
                             "seconds": round(time.time() - start, 1)})
                print(f"{model} {core} {opt}: {row.get('instructions', row.get('refused'))} "
                      f"({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
                if out:
                    out.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def _b(n: int) -> str:
    return f"{n:,} B"


def core_tables(rows: list[dict]) -> str:
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        first = next((r for r in mine if "instructions" in r), None)
        macs = f", {first['macs']:,} MACs, {first['compiler']}" if first else ""
        out += [f"{model}{macs}:", "",
                "| core | opt | instructions | instr/MAC | flash: weights + biases | "
                "flash: requant params | flash: code run | flash: layer descriptors | "
                "RAM: arena | RAM: scratch (in the arena) | RAM: stack | RAM: arena + stack |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mine:
            if "refused" in r:
                out.append(f"| {r['core']} | {r['opt']} | refused: {r['refused']} |" + " |" * 9)
                continue
            out.append(
                f"| {r['core']} | {r['opt']} | {r['instructions']:,} | "
                f"{r['instructions_per_mac']:.2f} | "
                f"{_b(r['weight_bytes'] - r['requant_param_bytes'])} | "
                f"{_b(r['requant_param_bytes'])} | {_b(r['inference_code_bytes'])} | "
                f"{_b(r['layer_descriptor_bytes'])} | {_b(r['arena_bytes'])} | "
                f"{_b(r['scratch_bytes'])} | {_b(r['stack_bytes'])} | {_b(r['ram_bytes'])} |")
        out.append("")
    return "\n".join(out)


def helium_table(rows: list[dict]) -> str:
    """The Cortex-M55 with Helium beside the same core with MVE off, per model and level."""
    by = {(r["model"], r["core"], r["opt"]): r for r in rows if "instructions" in r}
    out = ["| model | opt | scalar DSP (cortex-m55-nomve) | Helium (cortex-m55) | "
           "Helium / scalar | flash code: scalar | flash code: Helium | stack: scalar | "
           "stack: Helium |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (model, core, opt), h in by.items():
        s = by.get((model, "cortex-m55-nomve", opt))
        if core != "cortex-m55" or s is None:
            continue
        out.append(f"| {model} | {opt} | {s['instructions']:,} | {h['instructions']:,} | "
                   f"{h['instructions'] / s['instructions']:.3f} | "
                   f"{_b(s['inference_code_bytes'])} | {_b(h['inference_code_bytes'])} | "
                   f"{_b(s['stack_bytes'])} | {_b(h['stack_bytes'])} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="?")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--cores", default=CORES)
    ap.add_argument("--opts", default="-O2,-Os")
    ap.add_argument("--json", type=Path, help="write the figures here as they come")
    ap.add_argument("--from-json", type=Path, help="print the tables of an earlier --json")
    args = ap.parse_args(argv)
    if args.from_json:
        rows = json.loads(args.from_json.read_text())
    elif args.runs is None:
        ap.error("give RUNS_DIR or --from-json")
    else:
        rows = count(args.runs, args.models.split(","), args.cores.split(","),
                     args.opts.split(","), args.json)
    print(core_tables(rows))
    print(helium_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
