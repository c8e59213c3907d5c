#!/usr/bin/env python3
"""RTL benchmark: every test image in Verilator, the UART top on 3, and the open FPGA flow.

For each (run, device) pair: `validate --backend rtl` on all 10,000 test images (exact
logits, measured cycles per image and per layer, lane utilization per layer),
`validate --backend rtl-uart` on 3 images, then `synth` (yosys + nextpnr with 3 seeds +
pack) for resources, Fmax (per seed: min, median) and latency. Prints Markdown tables for
docs/BENCHMARKS.md and writes runs/bench_rtl.json.

    python3 scripts/bench_rtl.py --pair runs/gapnet-e8:ice40-up5k --pair runs/edge:ecp5-25k

A residual network (issue 23): `--make-rgb-residual RUN` first builds the 3x32x32
residual CNN of tests/test_any_input.py (seeded weights, a 1x1 stride-2 conv shortcut, an
add) as an imported, quantized run with RUN/inputs.npz (1,000 seeded random images, the
inputs `--data` then validates on; exactness needs no trained weights):

    python3 scripts/bench_rtl.py --make-rgb-residual runs/rgb-residual \
        --data runs/rgb-residual/inputs.npz --pair runs/rgb-residual:ecp5-85k

MLPerf Tiny's ResNet-8 in the tflite arithmetic (issue 23): `--make-mlperf-ic RUN` first
imports ../shared/models/mlperf-tiny/pretrainedResnet_quant.tflite into RUN; it has no data
set here, so `--inputs random:N` validates on N seeded random and structured int8 inputs
(the inputs of `validate --inputs random:N`):

    python3 scripts/bench_rtl.py --make-mlperf-ic runs/ic --inputs random:200 \
        --pair runs/ic:ecp5-85k
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnist_edge import qgraph  # noqa: E402
from mnist_edge.pipeline import all_exact, validate_run  # noqa: E402
from mnist_edge.probe_inputs import parse_inputs_spec, probe_batch  # noqa: E402
from mnist_edge.report import load_report  # noqa: E402
from mnist_edge.targets.fpga_synth import synth  # noqa: E402


def make_rgb_residual(run: Path) -> None:
    """The residual CNN of tests/test_any_input.py imported and quantized into `run`."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))  # the same model and export calls as the tests
    import test_any_input as any_input

    from mnist_edge.cli import main

    work = run.parent / f".{run.name}-build"
    work.mkdir(parents=True, exist_ok=True)
    onnx = any_input._export(work, any_input._rgb_residual, (3, 32, 32), "rgb")
    calib = any_input._image_folder(work / "images", 64, (32, 32))
    if main(["import", str(onnx), "--name", run.name, "--runs", str(run.parent)]) != 0 or \
            main(["quantize", str(run), "--data", str(calib)]) != 0:
        raise SystemExit(f"could not build {run}")
    rng = np.random.default_rng(1)
    np.savez(run / "inputs.npz", x=rng.integers(0, 256, (1000, 3, 32, 32), dtype=np.uint8))


MLPERF_IC = ROOT.parent / "shared" / "models" / "mlperf-tiny" / "pretrainedResnet_quant.tflite"


def make_mlperf_ic(run: Path) -> None:
    """MLPerf Tiny's int8 ResNet-8 imported into `run` (the tflite arithmetic)."""
    from mnist_edge.cli import main

    if main(["import", str(MLPERF_IC), "--name", run.name, "--runs", str(run.parent)]) != 0:
        raise SystemExit(f"could not import {MLPERF_IC} into {run}")


def bench(run: Path, fpga: str, limit: int | None, do_synth: bool, data: str | None,
          inputs: str | None = None) -> dict:
    start = time.time()
    options = {"fpga": fpga}
    probe = None
    if inputs:  # seeded random and structured inputs, as `validate --inputs random:N`
        probe = probe_batch(qgraph.load_run(run), parse_inputs_spec(inputs)[1])
    exact = all_exact(validate_run(run, ["rtl"], data, limit=limit, rtl_options=options,
                                   inputs=probe))
    exact_uart = all_exact(validate_run(run, ["rtl-uart"], data, limit=3,
                                        rtl_options=options, inputs=probe))
    backends = load_report(run)["backends"]
    row = {"run": str(run), "fpga": fpga, "rtl": backends["rtl"],
           "rtl_uart": backends["rtl-uart"], "all_exact": exact and exact_uart}
    if do_synth:
        row["synth"] = synth(run, fpga, cycles=backends["rtl"]["cycles_per_image"])
    row["seconds"] = round(time.time() - start, 1)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | device | lanes | images | exact logits | accuracy | cycles/image | "
             "LUT4 | FF | EBR | SPRAM | DSP | Fmax (MHz), bitstream seed | Fmax min / median "
             "(3 seeds) | latency at the clock | latency at Fmax | UART (3 images) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v, u, s = r["rtl"], r["rtl_uart"], r.get("synth")
        res = s["resources"] if s else {}
        cells = {name: f"{res[name]['used']}/{res[name]['available']}" if name in res else "–"
                 for name in ("LUT4", "FF", "EBR", "SPRAM", "DSP")}
        lat = f"{s['latency_ms_at_fmax']} ms" if s else "–"
        lat_clock = (f"{s['latency_ms_at_clock']} ms at {s['clock_mhz']} MHz "
                     f"({'met' if s['timing_met'] else 'missed'})" if s else "–")
        fmax = f"{s['fmax_mhz']} (seed {s['seed']})" if s else "–"
        spread = (f"{s['fmax_mhz_min']} / {s['fmax_mhz_median']} "
                  f"({s['seeds_meeting_clock']} of {len(s['fmax_mhz_by_seed'])} meet)"
                  if s else "–")
        lanes = (f"{v['lanes']} x {v['positions']} positions" if v.get("positions", 1) > 1
                 else v["lanes"])
        lines.append(
            f"| {Path(r['run']).name} | {r['fpga']} | {lanes} | {v['images']:,} | "
            f"{v['exact_logit_fraction']:.4%} | "
            f"{'–' if v.get('accuracy') is None else format(v['accuracy'], '.2%')} | "
            f"{v['cycles_per_image']:,} | {cells['LUT4']} | {cells['FF']} | {cells['EBR']} | "
            f"{cells['SPRAM']} | {cells['DSP']} | {fmax} | {spread} | {lat_clock} | {lat} | "
            f"{u['exact_logit_fraction']:.0%} exact |")
    return "\n".join(lines)


def layer_tables(rows: list[dict]) -> str:
    """Per pair: each layer's measured cycles per image and lane utilization."""
    out = []
    for r in rows:
        layers = r["rtl"].get("layers") or []
        if not layers:
            continue
        out += [f"\n{Path(r['run']).name} on {r['fpga']} ({r['rtl']['lanes']} lanes x "
                f"{r['rtl'].get('positions', 1)} positions), "
                f"{r['rtl']['images']:,} images:\n",
                "| layer | mode | cycles / image | lane utilization |", "|---|---|---:|---:|"]
        out += [f"| {x['summary']} | {x['mode']} | {x['cycles_per_image']:,} | "
                f"{x['lane_utilization']:.1%} |" for x in layers]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", action="append", metavar="RUN:FPGA",
                        help="run folder and device (repeatable; default: "
                        "runs/gapnet:ice40-up5k and runs/edge:ecp5-25k)")
    parser.add_argument("--limit", type=int, help="only the first N test images")
    parser.add_argument("--no-synth", action="store_true", help="simulation only")
    parser.add_argument("--data", help="validation inputs for runs without MNIST (.npz, "
                        "image folder); default: the MNIST test set")
    parser.add_argument("--inputs", metavar="random:N", help="validate on N seeded random "
                        "and structured inputs (models without a data set here)")
    parser.add_argument("--make-rgb-residual", metavar="RUN",
                        help="first build the 3x32x32 residual CNN run here")
    parser.add_argument("--make-mlperf-ic", metavar="RUN",
                        help="first import MLPerf Tiny's int8 ResNet-8 into this run")
    parser.add_argument("--out", default="runs/bench_rtl.json")
    args = parser.parse_args()
    pairs = args.pair or ["runs/gapnet:ice40-up5k", "runs/edge:ecp5-25k"]
    if args.make_rgb_residual:
        make_rgb_residual(Path(args.make_rgb_residual))
    if args.make_mlperf_ic:
        make_mlperf_ic(Path(args.make_mlperf_ic))
    rows = []
    for pair in pairs:
        run, fpga = pair.rsplit(":", 1)
        rows.append(bench(Path(run), fpga, args.limit, not args.no_synth, args.data,
                          args.inputs))
    Path(args.out).write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    print(table(rows))
    print(layer_tables(rows))
    return 0 if all(r["all_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
