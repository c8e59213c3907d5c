"""Figures for the TFLite operators added after the first import (issue 24) and float .tflite.

1. Each single-operator fixture of tests/test_tflite_ops.py (MEAN, HARD_SWISH, QUANTIZE
   int8 -> int8, broadcasting ADD/SUB/MUL, PAD/PADV2, RESHAPE): golden (the imported QGraph)
   against TensorFlow Lite Micro on N inputs (structured probes, then seeded random), byte
   for byte; then each of --fixture-backends (`validate --backend B`) against golden on the
   same N inputs.
2. The MLPerf Tiny float ResNet-8 (pretrainedResnet.tflite): imported as a float graph
   (checked against TFLM's float kernels), quantized by mnist-edge on K seeded random
   inputs in 0..1, then every listed backend against golden on M other random inputs, and
   the int8 argmax against the float graph's.

    PYTHONPATH=. python scripts/tflite_ops_parity.py [--n 2000] [--calib 500] [--m 1000]
        [--backends onnxruntime,c,c-int] [--models DIR]
        [--fixture-backends hls,c,c-int,c-x86,onnxruntime,wasm] [--cases mean,pad]
        [--fixtures-only]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from test_tflite_ops import CASES  # noqa: E402
from test_tflite_qgraph import golden_vs_tflm  # noqa: E402

from mnist_edge import api, qgraph  # noqa: E402
from mnist_edge.importers import import_tflite  # noqa: E402
from mnist_edge.probe_inputs import probe_batch  # noqa: E402
from mnist_edge.validate import validate_backend  # noqa: E402

SEED = 11


def fixtures(n: int, backends: list[str], cases: list[str]) -> None:
    """golden against TFLM, then each backend against golden, on the same n inputs: the
    count of inputs whose every output byte is equal."""
    print(f"| fixture | golden = TFLM (of {n:,}) | "
          + " | ".join(f"{b} = golden" for b in backends) + " |")
    print("|---|---:|" + "---:|" * len(backends))
    for case in sorted(cases):
        data = CASES[case]()
        equal, total = golden_vs_tflm(data, case, n=n, seed=SEED)
        cells = [f"{equal:,} / {total:,}"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{case}.tflite"
            path.write_bytes(data)
            run_dir = import_tflite(path, Path(tmp) / "runs", case)[0]
            x = probe_batch(qgraph.load_run(run_dir), n, SEED)  # golden_vs_tflm's inputs
            for b in backends:
                f = validate_backend(run_dir, b, x, None)
                exact = round(f["exact_input_fraction"] * f["images"])
                cells.append(f"{exact:,} / {f['images']:,}")
        print(f"| {case} | {' | '.join(cells)} |", flush=True)


def float_resnet(models: Path, calib: int, m: int, backends: list[str]) -> None:
    src = models / "pretrainedResnet.tflite"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        run_dir, doc = import_tflite(src, tmp, "resnet-float")
        check = doc["float_check"]
        print(f"\nimport: max |diff| vs TFLM float {check['max_abs_diff']:.3g}, argmax agreement "
              f"{check['argmax_agreement']:.0%} on {check['inputs']} "
              f"({time.time() - start:.1f} s, measured under load)")
        rng = np.random.default_rng(5)
        cal = Path(tmp) / "cal.npz"
        np.savez(cal, x=rng.uniform(0, 1, (calib, 3, 32, 32)).astype(np.float32))
        test = rng.uniform(0, 1, (m, 3, 32, 32)).astype(np.float32)
        model = api.Model(run_dir)
        model.quantize(data=str(cal), calib_images=calib, progress=False)
        float_cls = model.predict(test, "float").classes
        int8_cls = model.predict(test, "golden").classes
        print(f"int8 argmax equals the float graph's on {np.mean(float_cls == int8_cls):.2%} "
              f"of {m} random inputs (calibrated on {calib} others)")
        val = Path(tmp) / "val.npz"
        np.savez(val, x=test)
        res = model.validate(*backends, data=str(val), progress=False)
        for name, f in res.backends.items():
            print(f"{name}: exact logits {f['exact_logit_fraction']:.4%} on {f['images']} "
                  f"inputs, max |diff| {f.get('max_abs_logit_diff', 0)} LSB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--calib", type=int, default=500)
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--backends", default="onnxruntime,c,c-int")
    ap.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models" /
                    "mlperf-tiny")
    ap.add_argument("--fixture-backends", default="hls",
                    help="backends run on every fixture against golden (comma-separated; "
                         "empty for none)")
    ap.add_argument("--cases", default="",
                    help="only the fixtures whose names contain one of these (comma-separated)")
    ap.add_argument("--fixtures-only", action="store_true",
                    help="skip the float ResNet-8 (part 2)")
    a = ap.parse_args()
    words = [w for w in a.cases.split(",") if w]
    fixtures(a.n, [b for b in a.fixture_backends.split(",") if b],
             [c for c in CASES if not words or any(w in c for w in words)])
    if not a.fixtures_only:
        float_resnet(a.models, a.calib, a.m, a.backends.split(","))


if __name__ == "__main__":
    main()
