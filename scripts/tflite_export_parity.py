"""Figures for `export tflite` and `quantize --arithmetic tflite` (issue 24).

1. The MLPerf Tiny int8 models: `.tflite` -> import -> export -> import gives the same
   QGraph (hash), export -> import -> export the same bytes, and TFLite Micro running the
   exported file equals golden on N inputs (8 structured, then seeded random).
2. A trained zoo run (default the edge model, `runs/edge`): copied twice, quantized once in
   each arithmetic with the same recipe (the model's QAT epochs, percentile calibration on
   2,000 training images), both int8 accuracies on the 10,000 MNIST test images, and the
   tflite one exported and run in TFLM on all 10,000 against golden.

    PYTHONPATH=. python scripts/tflite_export_parity.py [--run runs/edge] [--n 1000]
        [--skip-mlperf] [--skip-run] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODELS = ("pretrainedResnet_quant", "kws_ref_model", "vww_96_int8", "ad01_int8")


def mlperf(models: Path, n: int) -> bool:
    from mnist_edge import golden
    from mnist_edge.backends.tflite import tflite_bytes
    from mnist_edge.importers.tflite_qgraph import tflite_to_qgraph
    from mnist_edge.importers.tflite_reader import parse_tflite, read_tflite
    from mnist_edge.probe_inputs import probe_batch
    from mnist_edge.targets.tflm import from_tflite_output, run_tflm, to_tflite_input

    ok = True
    print("| model | same QGraph hash | re-export byte-identical | bytes (original → export) "
          f"| TFLM on the export = golden ({n:,} inputs) |")
    print("|---|---|---|---|---|")
    for name in MODELS:
        path = models / f"{name}.tflite"
        if not path.is_file():
            print(f"| {name} | not found in {models} | | | |")
            continue
        graph, _ = tflite_to_qgraph(read_tflite(path), name)
        data = tflite_bytes(graph)
        model = parse_tflite(data, "export")
        again, _ = tflite_to_qgraph(model, name)
        same_hash = again.content_hash() == graph.content_hash()
        same_bytes = tflite_bytes(again) == data
        t_in, t_out = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
        q = probe_batch(graph, n, 2024)
        ref = from_tflite_output(graph, run_tflm(data, to_tflite_input(graph, q, t_in)), t_out)
        equal = int(np.all(golden.run_int8(graph, q) == ref, axis=1).sum())
        ok &= same_hash and same_bytes and equal == n
        print(f"| {name} | {same_hash} | {same_bytes} | {path.stat().st_size:,} → "
              f"{len(data):,} | {equal:,}/{n:,} |")
    return ok


def zoo_run(run: Path, work: Path, data: str | None) -> bool:
    from mnist_edge import api

    results = {}
    for arithmetic in ("onnx", "tflite"):
        copy = work / arithmetic / run.name
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns(
            "build", "firmware", "c", "hls", "rtl", "web", "*.qgraph.*", "*.tflite"))
        m = api.load(copy)
        t0 = time.time()
        m.quantize(data=data, progress=False, arithmetic=arithmetic)
        ev = m.evaluate(data)
        results[arithmetic] = (m, ev, time.time() - t0)
        print(f"{arithmetic}: hash {m.qgraph.content_hash()[:16]}  float "
              f"{ev.float_accuracy:.2%}  int8 {ev.int8_accuracy:.2%} on {ev.inputs:,} images")
    m = results["tflite"][0]
    path = m.export_tflite()
    v = m.validate("tflm", data=data, progress=False).backends["tflm"]
    print(f"tflm on {path.name} ({path.stat().st_size:,} bytes): exact logits "
          f"{v['exact_logit_fraction']:.4%} on {v['images']:,} images, max |diff| "
          f"{v['max_abs_logit_diff']} LSB, accuracy {v['accuracy']:.2%}")
    return v["exact_logit_fraction"] == 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path,
                    default=REPO.parent / "shared" / "models" / "mlperf-tiny")
    ap.add_argument("--n", type=int, default=1000, help="inputs per MLPerf model")
    ap.add_argument("--run", type=Path, default=REPO / "runs" / "edge",
                    help="a trained zoo run (copied, never modified)")
    ap.add_argument("--data", help="the MNIST folder (default: $MNIST_EDGE_DATA, ...)")
    ap.add_argument("--work", type=Path, help="where the two copies go (default: a "
                    "temporary folder)")
    ap.add_argument("--skip-mlperf", action="store_true")
    ap.add_argument("--skip-run", action="store_true")
    args = ap.parse_args()
    ok = True
    if not args.skip_mlperf:
        ok &= mlperf(args.models, args.n)
    if not args.skip_run:
        if not (args.run / "checkpoint.pt").is_file():
            print(f"{args.run}: no trained run here (mnist-edge train --model edge)")
            return 2
        with tempfile.TemporaryDirectory(prefix="tflite-export-") as tmp:
            ok &= zoo_run(args.run, args.work or Path(tmp), args.data)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
