"""The trainer: seeded, scheduled, early-stopped, resumable from its best checkpoint.

Trains on raw pixels / 255 (no mean/std) so that quantization of the input is
exact. The last 5,000 training images are the validation split.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import data
from .errors import MnistEdgeError, first_line
from .models import build_model, count_params, defaults
from .paths import atomic_write, save_figure
from .report import HISTORY_NAME, load_history

VALIDATION_IMAGES = 5000
CHECKPOINT = "checkpoint.pt"
QAT_CHECKPOINT = "checkpoint.qat.pt"  # written by quantization-aware fine-tuning
DISTILL_WEIGHT = 0.7  # share of the loss that follows the teacher rather than the labels
DISTILL_TEMPERATURE = 4.0


def to_float(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [N,28,28] -> float32 [N,1,28,28] in 0..1, the models' input."""
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / np.float32(255.0))[:, None]


def augment(x: torch.Tensor, gen: torch.Generator, max_shift: float = 2.0,
            max_degrees: float = 10.0, max_scale: float = 0.0) -> torch.Tensor:
    """Small random shifts, rotations and (with `max_scale`) zooms, batched on the CPU
    with one affine warp. Without zoom the random draws are those of earlier versions."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * max_shift / 28)
    cos, sin = torch.cos(angle), torch.sin(angle)
    if max_scale:  # the grid samples the input: a factor 1/s shows the digit s times larger
        zoom = 1 / (1 + (torch.rand(n, generator=gen) * 2 - 1) * max_scale)
        cos, sin = cos * zoom, sin * zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def predict_torch(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def resolve_teacher(model_name: str, run_dir: Path, teacher: str | Path | None) -> Path | None:
    """The run to distil from: `teacher` if given ('none': no teacher), else the model's default.

    A default teacher is looked for next to `run_dir`; if it has not been trained, the
    model trains on labels only and says so (gapnet then loses about a point).
    """
    if teacher is not None:
        if str(teacher).lower() == "none":
            return None
        path = Path(teacher)
        if not (path / CHECKPOINT).exists():
            raise MnistEdgeError(f"teacher {path}: no {CHECKPOINT}; train that run first")
        return path
    default = defaults(model_name).teacher
    if default is None:
        return None
    path = run_dir.parent / default
    if (path / CHECKPOINT).exists():
        return path
    print(f"{model_name}: no teacher run at {path}; training on labels only "
          f"(train {default} first to distil from it)")
    return None


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor,
                      teacher_logits: torch.Tensor) -> torch.Tensor:
    """Hinton et al. 2015: labels plus the teacher's softened distribution (T^2-scaled KL)."""
    t = DISTILL_TEMPERATURE
    soft = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(teacher_logits / t, 1),
                    reduction="batchmean") * (t * t)
    return (1 - DISTILL_WEIGHT) * F.cross_entropy(logits, labels) + DISTILL_WEIGHT * soft


def seed_everything(seed: int, threads: int | None) -> torch.Generator:
    """Same seed, same machine, same thread count -> same weights."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    if threads:
        torch.set_num_threads(threads)
    return torch.Generator().manual_seed(seed)


def train_model(model_name: str, run_dir: Path, data_dir: str | None = None, *,
                epochs: int | None = None, lr: float | None = None,
                batch_size: int | None = None, seed: int = 0, patience: int | None = None,
                augment_data: bool | None = None, train_limit: int | None = None,
                threads: int | None = None, teacher: str | Path | None = None,
                weight_decay: float | None = None, label_smoothing: float | None = None,
                ema: float | None = None, max_shift: float | None = None,
                max_degrees: float | None = None, max_scale: float | None = None,
                quiet: bool = False, progress: bool | None = None) -> dict[str, Any]:
    """Train one zoo model into `run_dir`; returns the history dictionary.

    `teacher` is a run folder to distil from, 'none', or None for the model's default.
    Every option left None takes the model's default (models.TrainDefaults). With `ema`
    (a decay such as 0.999) an exponential moving average of the weights is what is
    validated each epoch and kept: it is smoother than the last step's weights.
    `quiet` drops the per-epoch lines; `progress` the bar (default: shown unless quiet).
    """
    progress = not quiet if progress is None else progress
    cfg = defaults(model_name)
    epochs = epochs or cfg.epochs
    patience = cfg.patience if patience is None else patience
    lr = lr or cfg.lr
    batch_size = batch_size or cfg.batch_size
    augment_data = cfg.augment if augment_data is None else augment_data
    weight_decay = cfg.weight_decay if weight_decay is None else weight_decay
    label_smoothing = cfg.label_smoothing if label_smoothing is None else label_smoothing
    ema = cfg.ema if ema is None else ema
    warp = {"max_shift": cfg.max_shift if max_shift is None else max_shift,
            "max_degrees": cfg.max_degrees if max_degrees is None else max_degrees,
            "max_scale": cfg.max_scale if max_scale is None else max_scale}
    if epochs <= 0 or batch_size <= 0:
        raise MnistEdgeError("epochs and batch size must be positive")
    if not 0 <= ema < 1:
        raise MnistEdgeError(f"EMA decay must be in [0, 1), got {ema}")
    if not 0 <= label_smoothing < 1 or weight_decay < 0:
        raise MnistEdgeError("label smoothing must be in [0, 1) and weight decay >= 0")
    if not 0 <= warp["max_scale"] < 1 or warp["max_shift"] < 0 or warp["max_degrees"] < 0:
        raise MnistEdgeError("augmentation: shift and degrees >= 0, scale in [0, 1)")
    teacher_dir = resolve_teacher(model_name, Path(run_dir), teacher)
    teacher_model = load_model(teacher_dir) if teacher_dir else None
    gen = seed_everything(seed, threads)
    images, labels = data.load_mnist("train", data_dir)
    x_train, y_train = to_float(images[:-VALIDATION_IMAGES]), torch.from_numpy(
        labels[:-VALIDATION_IMAGES].astype(np.int64))
    x_val, y_val = to_float(images[-VALIDATION_IMAGES:]), torch.from_numpy(
        labels[-VALIDATION_IMAGES:].astype(np.int64))
    if train_limit:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
        x_val, y_val = x_val[: max(train_limit // 10, 100)], y_val[: max(train_limit // 10, 100)]

    model = build_model(model_name)
    if weight_decay:
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    averaged = WeightAverage(model, ema) if ema else None
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=0.2)
    history: dict[str, Any] = {"model": model_name, "seed": seed, "epochs": [], "lr": lr,
                               "batch_size": batch_size, "augment": augment_data,
                               **({"augmentation": warp} if augment_data else {}),
                               "weight_decay": weight_decay,
                               "label_smoothing": label_smoothing, "ema": ema,
                               "params": count_params(model),
                               "teacher": str(teacher_dir) if teacher_dir else None}
    best_acc, best_state, stale = -1.0, None, 0
    start = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total_loss, seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{model_name} epoch {epoch}/{epochs}",
                   disable=None if progress else True, leave=False, unit="batch", mininterval=2.0)
        for step in bar:
            idx = order[step * batch_size : (step + 1) * batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if augment_data:
                xb = augment(xb, gen, **warp)
            if teacher_model is None:
                loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            else:
                with torch.no_grad():
                    teacher_logits = teacher_model(xb)
                loss = distillation_loss(model(xb), yb, teacher_logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if averaged is not None:
                averaged.update(model)
            total_loss += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": total_loss / seen}
        if averaged is not None:  # the raw weights' figure too, for the curves' reader
            raw = predict_torch(model, x_val)
            row["raw_val_accuracy"] = float((raw.argmax(1) == y_val).float().mean())
        result = averaged.model if averaged is not None else model
        logits = predict_torch(result, x_val)
        val_loss = float(F.cross_entropy(logits, y_val))
        val_acc = float((logits.argmax(1) == y_val).float().mean())
        row.update({"val_loss": val_loss, "val_accuracy": val_acc,
                    "seconds": round(time.time() - start, 2)})
        history["epochs"].append(row)
        if not quiet:
            print(f"{model_name} epoch {epoch}: loss {total_loss / seen:.4f}  "
                  f"val loss {val_loss:.4f}  val acc {val_acc:.4%}"
                  + (f"  (raw weights {row['raw_val_accuracy']:.4%})" if averaged else ""))
        if val_acc > best_acc:
            best_acc, stale = val_acc, 0
            best_state = {k: v.detach().clone() for k, v in result.state_dict().items()}
        elif epoch > epochs // 2:  # the first half runs at high LR: noisy by design
            stale += 1
            if stale >= patience:
                if not quiet:
                    print(f"early stop: no improvement for {patience} epochs")
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    history["best_val_accuracy"] = best_acc
    history["train_seconds"] = round(time.time() - start, 2)
    save_checkpoint(model, model_name, run_dir, history)
    return history


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics.

    Averaging the weights of the last few thousand steps lands nearer the middle of the
    minimum than the last step does (Polyak averaging): a little more accurate, and with
    smoother weights for int8. The decay ramps up from 0.9 over the first steps
    ((1 + n) / (10 + n)) so that the random initialization is soon forgotten.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        import copy

        self.model = copy.deepcopy(model).eval()
        self.decay, self.steps = decay, 0
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        current = model.state_dict()
        for key, avg in self.model.state_dict().items():
            if avg.dtype.is_floating_point:
                avg.lerp_(current[key], 1 - d)
            else:  # BatchNorm's num_batches_tracked
                avg.copy_(current[key])


def save_checkpoint(model: nn.Module, model_name: str, run_dir: Path,
                    history: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, model_name, run_dir / CHECKPOINT)
    (run_dir / QAT_CHECKPOINT).unlink(missing_ok=True)  # belongs to the previous weights
    with atomic_write(run_dir / HISTORY_NAME, "w") as f:
        json.dump(history, f, indent=2)
    plot_curves(history, run_dir / "curves.png")


def save_model(model: nn.Module, model_name: str, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save({"model": model_name, "state_dict": model.state_dict()}, f)


def load_model(run_dir: str | Path, finetuned: bool = True) -> nn.Module:
    """The run's float model in eval mode: the QAT fine-tuned one when there is one."""
    path = Path(run_dir) / CHECKPOINT
    if finetuned and (Path(run_dir) / QAT_CHECKPOINT).exists():
        path = Path(run_dir) / QAT_CHECKPOINT
    if not path.exists():
        raise MnistEdgeError(f"{path}: no checkpoint; run `mnist-edge train` first")
    ckpt = _load_checkpoint(path)
    try:
        model = build_model(str(ckpt["model"]))
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise MnistEdgeError(f"{path}: checkpoint does not fit its model "
                             f"({first_line(exc)})") from None
    return model.eval()


def _load_checkpoint(path: Path) -> dict:
    """torch.load without unpickling code; anything unreadable is a one-line error."""
    import pickle
    import warnings
    import zipfile

    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols in junk
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise MnistEdgeError(f"{path}: unreadable checkpoint (not a PyTorch checkpoint of "
                             "tensors: unpickling refused)") from None
    except (RuntimeError, EOFError, ValueError, KeyError, AttributeError, IndexError,
            zipfile.BadZipFile, UnicodeDecodeError) as exc:
        why = first_line(exc).split(". ")[0]
        raise MnistEdgeError(f"{path}: unreadable checkpoint ({why})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "state_dict" not in ckpt:
        raise MnistEdgeError(f"{path}: not a mnist-edge checkpoint (no model/state_dict)")
    return ckpt


def model_name_of(run_dir: str | Path) -> str:
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise MnistEdgeError(f"{path}: no checkpoint; run `mnist-edge train` first")
    return str(_load_checkpoint(path)["model"])


def trained_with_augmentation(run_dir: str | Path) -> bool:
    """Whether the run's training augmented its images: fine-tuning should do the same."""
    history = load_history(run_dir)
    if history:
        return bool(history.get("augment", True))
    return defaults(model_name_of(run_dir)).augment


def plot_curves(history: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    ep = [e["epoch"] for e in history["epochs"]]
    fig = Figure(figsize=(9, 3.2))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(ep, [e["train_loss"] for e in history["epochs"]], label="train")
    ax1.plot(ep, [e["val_loss"] for e in history["epochs"]], label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(ep, [100 * e["val_accuracy"] for e in history["epochs"]], color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation accuracy (%)")
    fig.suptitle(f"{history['model']}: training curves")
    save_figure(fig, path)
