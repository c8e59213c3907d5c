#!/usr/bin/env python3
"""Bring-your-own-model figures: three models trained for real outside mnist-edge, one per
exporter (PyTorch TorchScript, PyTorch dynamo, Keras 3 on torch), exported to ONNX, imported,
quantized, evaluated on all 10,000 test images and validated on every backend.

Usage: MNIST_EDGE_DATA=... python scripts/bench_import.py [--models torchscript,dynamo,keras]
       [--epochs 3] [--backends onnxruntime,c,c-int,hls] [--runs runs-import] [--write]
(--write puts the table into docs/BENCHMARKS.md between the import:begin/end markers;
--table-only re-tabulates the run folders of an earlier invocation.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/exporters.py: the same export calls

DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- import:begin -->", "<!-- import:end -->"
MODELS = {
    "torchscript": "PyTorch CNN with BatchNorm + Dropout, torch.onnx.export(dynamo=False)",
    "dynamo": "PyTorch depthwise-separable CNN, torch.onnx.export(dynamo=True)",
    "keras": "Keras 3 Sequential conv32-pool-conv64-pool-dense64 (seed notebook), "
             "model.export(format='onnx')",
}


def _torch_net(kind: str):
    from torch import nn

    if kind == "torchscript":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25), nn.Linear(32 * 7 * 7, 10))
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16), nn.ReLU(),
        nn.Conv2d(16, 32, 1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32), nn.ReLU(),
        nn.Conv2d(32, 64, 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 3 * 3, 10))


def train_torch(kind: str, data_dir: str | None, epochs: int):
    import torch

    from mnist_edge import data

    torch.manual_seed(0)
    model = _torch_net(kind)
    images, labels = data.load_mnist("train", data_dir)
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 4e-3, total_steps=epochs * (len(x) // 128 + 1))
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    return model.eval()


def export(kind: str, out: Path, data_dir: str | None, epochs: int) -> Path:
    import exporters

    path = out / f"{kind}.onnx"
    if kind == "keras":
        model = exporters.keras_model("keras_bench", data_dir, epochs=epochs, images=60000)
        exporters.export_keras(model, path)
    else:
        exporters.export_torch(train_torch(kind, data_dir, epochs), path, kind)
    return path


def original_accuracy(path: Path, run_dir: Path, data_dir: str | None) -> float:
    """Top-1 of the original file in onnxruntime on all test images."""
    from mnist_edge import data
    from mnist_edge.importers import check, convert, load

    model = load.load_onnx(path)
    _, info = convert.convert(model, "x")
    pixels, labels = data.load_mnist("test", data_dir)
    doc = json.loads((run_dir / "import.json").read_text())
    norm = tuple(doc["normalize"]) if doc["normalize"] else None
    _, final = check.run_original(model, info, check.model_input(
        pixels[:, None].astype(np.float32) / np.float32(255), info["layout"], norm))
    return float(np.mean(np.argmax(final, 1) == labels))


def bench_one(kind: str, runs: Path, backends: list[str], data_dir: str | None,
              epochs: int) -> dict:
    from mnist_edge.backends.onnx import export_run
    from mnist_edge.importers import import_onnx
    from mnist_edge.pipeline import evaluate_run, validate_run
    from mnist_edge.quantize import quantize_run
    from mnist_edge.report import load_report, update_report

    start = time.time()
    src = runs / "onnx"
    src.mkdir(parents=True, exist_ok=True)
    path = export(kind, src, data_dir, epochs)
    trained = time.time() - start
    run_dir, doc = import_onnx(path, runs, f"import-{kind}", data_dir=data_dir)
    update_report(run_dir, {"original_onnxruntime_accuracy":
                            original_accuracy(path, run_dir, data_dir),
                            "seconds": {"train_export": round(trained, 1)}})
    quantize_run(run_dir, data_dir)
    evaluate_run(run_dir, data_dir)
    export_run(run_dir)
    validate_run(run_dir, backends, data_dir)
    try:
        from mnist_edge import qgraph
        from mnist_edge.targets.mcu_bench import bench

        update_report(run_dir, {"mcu_bench": {"cortex-m4": bench(
            run_dir, qgraph.load_run(run_dir), "cortex-m4", data_dir=data_dir)}})
    except Exception as exc:  # a missing toolchain must not lose the other figures
        print(f"{kind}: cortex-m4 bench skipped ({exc})")
    report = load_report(run_dir)
    report["ops"] = doc["ops"]
    return report


def table(reports: dict[str, dict], backends: list[str]) -> str:
    head = ("| exporter | model | ops | params | float acc. (original, onnxruntime) | "
            "float acc. (imported) | int8 acc. | int8/float agreement |"
            + "".join(f" {b} exact |" for b in backends)
            + " M4 instructions | flash B (weights+code) | RAM B (arena+stack) |")
    rows = [head, "|" + " --- |" * (8 + len(backends) + 3)]
    for kind, r in reports.items():
        m4 = r.get("mcu_bench", {}).get("cortex-m4", {})
        exact = "".join(
            f" {r.get('backends', {}).get(b, {}).get('exact_logit_fraction', float('nan')):.4f} |"
            for b in backends)
        flash = (m4.get("weight_bytes", 0) + m4.get("model_code_bytes", 0)
                 + m4.get("library_code_bytes", 0)) if m4 else None
        ram = m4.get("ram_bytes")
        rows.append(
            f"| {kind} | {MODELS[kind]} | {len(r['ops'])} | {r['params']:,} | "
            f"{r['original_onnxruntime_accuracy']:.2%} | {r['float_accuracy']:.2%} | "
            f"{r['int8_accuracy']:.2%} | {r['int8_float_agreement']:.2%} |{exact} "
            f"{m4.get('instructions', 'n/a'):,} | {flash if flash is None else f'{flash:,}'} | "
            f"{ram if ram is None else f'{ram:,}'} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--backends", default="onnxruntime,c,c-int,hls")
    ap.add_argument("--runs", default="runs-import")
    ap.add_argument("--data")
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    ap.add_argument("--table-only", action="store_true",
                    help="only tabulate the run folders an earlier invocation left in --runs")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    reports = {}
    for kind in args.models.split(","):
        if args.table_only:
            from mnist_edge.report import load_report

            run_dir = Path(args.runs) / f"import-{kind}"
            if (run_dir / "report.json").exists() and "int8_accuracy" in load_report(run_dir):
                reports[kind] = load_report(run_dir)
                reports[kind]["ops"] = json.loads((run_dir / "import.json").read_text())["ops"]
            continue
        print(f"== {kind}: {MODELS[kind]}", flush=True)
        reports[kind] = bench_one(kind, Path(args.runs), backends, args.data, args.epochs)
    text = table(reports, backends)
    print(text)
    if args.write:
        argv = [a for a in sys.argv[1:] if a not in ("--table-only", "--write")]
        cmd = " ".join(["python", "scripts/bench_import.py", *argv])
        section = (f"{BEGIN}\nProduced by `{cmd}` (training on all 60,000 images, "
                   f"{args.epochs} epochs; every figure on all 10,000 test images).\n\n"
                   f"{text}\n{END}")
        doc = DOC.read_text()
        if BEGIN in doc:
            doc = doc[:doc.index(BEGIN)] + section + doc[doc.index(END) + len(END):]
        else:
            doc += f"\n## Imported models (bring your own model)\n\n{section}\n"
        DOC.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
