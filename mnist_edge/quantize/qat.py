"""Quantization-aware fine-tuning: train the float model through the int8 rounding it will meet.

The trained torch model is run with BatchNorm frozen and folded on the fly, its folded
weights fake-quantized per channel (-127..127) and every tensor that the QGraph stores in
int8 fake-quantized at the QGraph's own scale and zero point. Gradients pass straight
through the rounding. Afterwards the usual fold -> calibrate -> quantize runs again on the
fine-tuned weights, so the QGraph stays the product of one code path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..qgraph import QGraph
from ..trainer import VALIDATION_IMAGES, augment, seed_everything, to_float


def quant_points(model: nn.Sequential, graph: QGraph) -> dict[int, tuple[float, int]]:
    """Module index -> (scale, zero point) of the int8 tensor that module's output becomes."""
    names = {op.name: op for op in graph.ops}
    points: dict[int, tuple[float, int]] = {}
    for idx, m in enumerate(model):
        prefix = {nn.Conv2d: "conv", nn.Linear: "fc"}.get(type(m))
        op = names.get(f"{prefix}{idx}") if prefix else None
        if op is None:
            continue
        target = idx + 1 if _is_bn(model, idx + 1) else idx
        if op.attrs.get("activation") == "relu":
            target += 1  # ReLU fused: the int8 tensor is the ReLU's output
        points[target] = (op.output.scale, op.output.zero_point)
    for op in graph.ops:
        if op.kind in ("lut", "avgpool2d", "global_avgpool"):
            idx = int("".join(ch for ch in op.name if ch.isdigit()))
            points[idx] = (op.output.scale, op.output.zero_point)
    return points


def _is_bn(model: nn.Sequential, idx: int) -> bool:
    return idx < len(model) and isinstance(model[idx], nn.BatchNorm1d | nn.BatchNorm2d)


def _folded(layer: nn.Module, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    w = layer.weight
    b = layer.bias if layer.bias is not None else torch.zeros(w.shape[0])
    if bn is None:
        return w, b
    k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return w * k.reshape(-1, *([1] * (w.dim() - 1))), (b - bn.running_mean) * k + bn.bias


def _fake_weight(w: torch.Tensor) -> torch.Tensor:
    peak = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
    scale = torch.where(peak > 0, peak / 127, torch.ones_like(peak)).float()
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


def qat_forward(model: nn.Sequential, points: dict[int, tuple[float, int]],
                x: torch.Tensor) -> torch.Tensor:
    skip = set()
    for idx, m in enumerate(model):
        if idx in skip or isinstance(m, nn.Dropout):
            pass
        elif isinstance(m, nn.Conv2d | nn.Linear):
            bn = model[idx + 1] if _is_bn(model, idx + 1) else None
            if bn is not None:
                skip.add(idx + 1)
            w, b = _folded(m, bn)
            if isinstance(m, nn.Conv2d):
                x = F.conv2d(x, _fake_weight(w), b, m.stride, m.padding, m.dilation, m.groups)
            else:
                x = F.linear(x, _fake_weight(w), b)
        else:
            x = m(x)
        if idx in points:
            scale, zp = points[idx]
            x = torch.fake_quantize_per_tensor_affine(x, scale, zp, -128, 127)
    return x


def qat_finetune(model: nn.Sequential, graph: QGraph, images: np.ndarray, labels: np.ndarray,
                 epochs: int, lr: float = 1e-4, batch_size: int = 128, seed: int = 0,
                 augment_data: bool = True, quiet: bool = False) -> nn.Sequential:
    """Fine-tune `model` in place (BatchNorm statistics frozen) and return it in eval mode."""
    gen = seed_everything(seed, None)
    points = quant_points(model, graph)
    x_all = to_float(images[:-VALIDATION_IMAGES])
    y_all = torch.from_numpy(labels[:-VALIDATION_IMAGES].astype(np.int64))
    model.eval()  # BatchNorm uses (and keeps) its running statistics; Dropout is off
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    steps = math.ceil(len(x_all) / batch_size) * epochs
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for epoch in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        bar = tqdm(range(0, len(x_all), batch_size), desc=f"QAT epoch {epoch + 1}/{epochs}",
                   disable=True if quiet else None, leave=False, mininterval=2.0)
        for start in bar:
            idx = order[start : start + batch_size]
            xb = augment(x_all[idx], gen) if augment_data else x_all[idx]
            loss = F.cross_entropy(qat_forward(model, points, xb), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()
