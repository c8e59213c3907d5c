#!/usr/bin/env python3
"""A second data set with another input shape, end to end: MNIST at 32x32, as LeNet-5's
paper used it (each 28x28 digit centred in a 32x32 field), through the user's path.

1. write the data as the user would hand it over: `mnist32-train.npz` / `mnist32-test.npz`
   (`x` uint8 [N,32,32], `y` labels);
2. train LeNet-5 (5x5 convolutions, no padding, as in the paper; ReLU and max pooling)
   in PyTorch on the 32x32 images and export it with torch.onnx (the user's own model);
3. `mnist-edge import model.onnx --data mnist32-train.npz`, `quantize`, `evaluate
   --data mnist32-test.npz`, `validate` on every backend that takes the model, `bench`
   on a Cortex-M4; print the figures as a Markdown table.

Usage: python scripts/bench_mnist32.py [--epochs 3] [--work runs/mnist32]
         [--backends onnxruntime,c,c-x86,c-int,hls,wasm,qemu-m4,qemu-m0] [--qemu-limit 1000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mnist_edge import data


def write_npz(out: Path, split: str) -> Path:
    images, labels = data.load_mnist(split)
    padded = np.zeros((len(images), 32, 32), np.uint8)
    padded[:, 2:30, 2:30] = images
    path = out / f"mnist32-{split}.npz"
    np.savez(path, x=padded, y=labels.astype(np.int64))
    return path


def train_and_export(train_npz: Path, onnx_path: Path, epochs: int) -> float:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    with np.load(train_npz) as f:
        x = torch.from_numpy(f["x"][:, None].astype(np.float32) / 255.0)
        y = torch.from_numpy(f["y"])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.time()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    torch.onnx.export(model, torch.zeros(1, 1, 32, 32), str(onnx_path), dynamo=False,
                      input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
    return time.time() - start


def cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "mnist_edge.cli", *args], capture_output=True,
                          text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"mnist-edge {' '.join(args)} failed:\n{proc.stderr}")
    print(proc.stdout, end="", flush=True)
    return proc.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--work", default="runs/mnist32")
    p.add_argument("--backends", default="onnxruntime,c,c-x86,c-int,hls,wasm,qemu-m4,qemu-m0")
    p.add_argument("--qemu-limit", type=int, default=1000)
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train_npz, test_npz = write_npz(work, "train"), write_npz(work, "test")
    onnx_path = work / "lenet5-32.onnx"
    seconds = train_and_export(train_npz, onnx_path, args.epochs)
    print(f"trained {args.epochs} epochs in {seconds:.0f} s -> {onnx_path}")
    runs = work / "runs"
    shutil.rmtree(runs / "lenet32", ignore_errors=True)  # this script's own run folder
    cli("import", str(onnx_path), "--name", "lenet32", "--runs", str(runs),
        "--data", str(train_npz))
    run = runs / "lenet32"
    cli("quantize", str(run), "--data", str(train_npz))
    cli("evaluate", str(run), "--data", str(test_npz))
    for backend in args.backends.split(","):
        limit = ["--limit", str(args.qemu_limit)] if backend.startswith("qemu-") else []
        cli("validate", str(run), "--backend", backend, "--data", str(test_npz), *limit)
    cli("bench", str(run), "--mcu", "cortex-m4", "--data", str(test_npz))
    report = json.loads((run / "report.json").read_text())
    rows = ["| backend | images | exact logits | max diff |", "| --- | ---: | ---: | ---: |"]
    for name, f in report.get("backends", {}).items():
        rows.append(f"| {name} | {f['images']:,} | {f['exact_logit_fraction']:.4%} | "
                    f"{f['max_abs_logit_diff']} |")
    print(f"\nfloat {report.get('float_accuracy', float('nan')):.2%}, int8 "
          f"{report.get('int8_accuracy', float('nan')):.2%} on {report.get('test_images')} "
          "test images\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
