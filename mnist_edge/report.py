"""report.json of a run: every stage and backend merges its figures into it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .paths import atomic_write

REPORT_NAME = "report.json"
HISTORY_NAME = "history.json"  # written by the trainer: its settings and per-epoch figures


def load_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / REPORT_NAME
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def load_history(run_dir: str | Path) -> dict[str, Any]:
    """The run's training history, or {} for a run trained elsewhere."""
    path = Path(run_dir) / HISTORY_NAME
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def _merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _write(run_dir: str | Path, report: dict[str, Any]) -> None:
    with atomic_write(Path(run_dir) / REPORT_NAME, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")


def set_backend_figures(run_dir: str | Path, backend: str, figures: dict[str, Any]) -> None:
    """Replace (not merge) one backend's figures, so no stale mismatch survives a fixed run."""
    report = load_report(run_dir)
    report.setdefault("backends", {})[backend] = figures
    _write(run_dir, report)


def update_report(run_dir: str | Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `updates` into the run's report.json (written atomically)."""
    report = _merge(load_report(run_dir), updates)
    _write(run_dir, report)
    return report
