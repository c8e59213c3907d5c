"""Figures for issue 24: golden (the imported QGraph) and the NumPy TFLM kernels vs TensorFlow
Lite Micro on the MLPerf Tiny models.

For each model: N inputs (8 structured patterns, then seeded random), TFLM's output against
golden's (the model imported as a QGraph in the tflite arithmetic) and our test walker's,
byte for byte. With --litert, also LiteRT's reference (BUILTIN_REF) and
optimized (BUILTIN, XNNPACK off) kernels against TFLM: the share of inputs that differ,
the first operator whose output differs and by how many LSB.

    PYTHONPATH=. python scripts/tflm_parity.py [--n 10000] [--litert] [--models DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from tflite_walk import run  # noqa: E402

from mnist_edge import golden  # noqa: E402
from mnist_edge.importers.tflite_qgraph import tflite_to_qgraph  # noqa: E402
from mnist_edge.importers.tflite_reader import read_tflite  # noqa: E402
from mnist_edge.probe_inputs import probe_inputs  # noqa: E402
from mnist_edge.targets.litert import interpreter as litert_interpreter  # noqa: E402
from mnist_edge.targets.litert import run_litert  # noqa: E402
from mnist_edge.targets.tflm import (  # noqa: E402
    from_tflite_output,
    run_tflm,
    tflm_interpreter,
)

MODELS = ("pretrainedResnet_quant.tflite", "kws_ref_model.tflite", "vww_96_int8.tflite",
          "ad01_int8.tflite")
CHUNK = 250


def _rows_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any((a != b).reshape(len(a), -1), axis=1)


def walker_and_golden_vs_tflm(path: Path, x: np.ndarray) -> tuple[int, int, float]:
    """(inputs where the walker differs, where golden differs, seconds). `x` is in the
    file's NHWC layout; golden reads the same int8 values as CxHxW."""
    model = read_tflite(path)
    graph, _ = tflite_to_qgraph(model, path.stem)
    t_out = model.tensors[model.outputs[0]]
    it = tflm_interpreter(path)
    bad_walker = bad_golden = 0
    t0 = time.time()
    for i in range(0, len(x), CHUNK):
        chunk = x[i:i + CHUNK]
        ref = run_tflm(path, chunk, it)
        bad_walker += int(_rows_differ(run(model, chunk), ref).sum())
        q = np.ascontiguousarray(chunk.transpose(0, 3, 1, 2) if chunk.ndim == 4 else chunk)
        bad_golden += int(_rows_differ(golden.run_int8(graph, q),
                                       from_tflite_output(graph, ref, t_out)).sum())
    return bad_walker, bad_golden, time.time() - t0


def first_difference(path: Path, resolver: str, x1: np.ndarray) -> tuple[int, str, int]:
    """(operator index, builtin name, max |LSB| difference) of the first op that differs."""
    model = read_tflite(path)
    lit = litert_interpreter(path, resolver, preserve_all=True)
    lit.set_tensor(lit.get_input_details()[0]["index"], x1)
    lit.invoke()
    tf = tflm_interpreter(path, preserve_all=True)
    tf.set_input(x1, 0)
    tf.invoke()
    for op in model.operators:
        t = op.outputs[0]
        a = np.asarray(tf.GetTensor(t, 0)["tensor_data"]).astype(np.int64).ravel()
        b = lit.get_tensor(t).astype(np.int64).ravel()
        if a.shape == b.shape and np.any(a != b):
            return op.index, op.op, int(np.abs(a - b).max())
    return -1, "-", 0


def litert_vs_tflm(path: Path, x: np.ndarray, resolver: str) -> dict:
    it = litert_interpreter(path, resolver)
    ref = run_tflm(path, x)
    ours = run_litert(it, x)
    bad = np.flatnonzero(_rows_differ(ours, ref))
    result = {"differ": len(bad), "max_lsb": int(np.abs(ours.astype(int) - ref).max())}
    firsts: dict[tuple[int, str], int] = {}
    lsb = 0
    for k in bad[:50]:  # the first differing op of up to 50 differing inputs
        idx, name, d = first_difference(path, resolver, x[k:k + 1])
        firsts[(idx, name)] = firsts.get((idx, name), 0) + 1
        lsb = max(lsb, d)
    result["first_ops"] = firsts
    result["first_op_max_lsb"] = lsb
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="inputs per model")
    ap.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models" /
                    "mlperf-tiny")
    ap.add_argument("--litert", action="store_true", help="also compare LiteRT with TFLM")
    ap.add_argument("--litert-n", type=int, default=1000, help="inputs per model for LiteRT")
    args = ap.parse_args()
    failed = False
    for name in MODELS:
        path = args.models / name
        if not path.is_file():
            print(f"{name}: not found in {args.models}, skipped")
            continue
        model = read_tflite(path)
        t_in = model.tensors[model.inputs[0]]
        x = probe_inputs(t_in.shape[1:], args.n, seed=2024,
                         zero_point=int(t_in.quantization.zero_point[0]))
        bad_walker, bad_golden, secs = walker_and_golden_vs_tflm(path, x)
        failed |= bad_walker > 0 or bad_golden > 0
        print(f"{name}: golden (QGraph, tflite arithmetic) vs TFLM: {args.n - bad_golden}/"
              f"{args.n} inputs equal on every output byte; test walker vs TFLM: "
              f"{args.n - bad_walker}/{args.n} ({secs:.1f} s)", flush=True)
        if args.litert:
            xl = x[:args.litert_n]
            for resolver in ("reference", "optimized"):
                r = litert_vs_tflm(path, xl, resolver)
                ops = ", ".join(f"op {i} {n} x{c}" for (i, n), c in r["first_ops"].items())
                print(f"  LiteRT {resolver}: {r['differ']}/{len(xl)} inputs differ from TFLM "
                      f"({100 * r['differ'] / len(xl):.1f} %), output max {r['max_lsb']} LSB; "
                      f"first differing op: {ops or '-'} (max {r['first_op_max_lsb']} LSB "
                      "there)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
