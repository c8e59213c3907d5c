"""report.json of a run: every stage and backend merges its figures into it.

Updates are read-modify-write under an exclusive `fcntl.flock` on `report.json.lock`
beside it and land by atomic rename, so concurrent commands on one run (two terminals,
a CI matrix) keep every entry and a reader never sees half a file. A corrupt
report.json or history.json is moved aside (`<name>.corrupt-<time>`) and said so in
one line, instead of failing a command after its work is done.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import MnistEdgeError
from .paths import atomic_write, os_error_message

REPORT_NAME = "report.json"
HISTORY_NAME = "history.json"  # written by the trainer: its settings and per-epoch figures
LOCK_SUFFIX = ".lock"


class CorruptFile(Exception):
    """A run file that exists but is not a JSON object; `why` says what is wrong."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path, self.why = path, why


def _read_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, {} when absent; CorruptFile when it is not one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise CorruptFile(path, "not a text file") from None
    except OSError as exc:
        raise MnistEdgeError(os_error_message(exc, path, "cannot read")) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFile(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise CorruptFile(path, f"holds a JSON {type(doc).__name__}, not an object")
    return doc


def _move_aside(path: Path, why: str, fresh: bool) -> Path:
    """Rename a corrupt file to `<name>.corrupt-<UTC time>` and say so in one line."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # another process moved it first
        return aside
    except OSError as exc:
        raise MnistEdgeError(f"{path}: {why}, and it cannot be moved aside "
                             f"({exc.strerror}); move or delete it by hand") from None
    if fresh:
        with atomic_write(path, "w") as f:
            f.write("{}\n")
    then = "a fresh one is started" if fresh else "the run continues without it"
    print(f"mnist-edge: warning: {path}: {why}; moved aside as {aside.name}, {then}",
          file=sys.stderr)
    return aside


def check_run_files(run_dir: str | Path) -> None:
    """Find a corrupt report.json / history.json before a command starts its work."""
    for name in (REPORT_NAME, HISTORY_NAME):
        path = Path(run_dir) / name
        try:
            _read_object(path)
        except CorruptFile as exc:
            _move_aside(path, exc.why, fresh=name == REPORT_NAME)


def load_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / REPORT_NAME
    try:
        return _read_object(path)
    except CorruptFile as exc:
        _move_aside(path, exc.why, fresh=True)
        return {}


def load_history(run_dir: str | Path) -> dict[str, Any]:
    """The run's training history, or {} for a run trained elsewhere (or a corrupt one)."""
    path = Path(run_dir) / HISTORY_NAME
    try:
        return _read_object(path)
    except CorruptFile as exc:
        _move_aside(path, exc.why, fresh=False)
        return {}


def _merge(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@contextmanager
def _locked(run_dir: str | Path) -> Iterator[None]:
    """Hold the run's report lock (blocking): one read-modify-write at a time."""
    import fcntl

    lock = Path(run_dir) / (REPORT_NAME + LOCK_SUFFIX)
    if not Path(run_dir).is_dir():
        raise MnistEdgeError(f"{run_dir}: no such run folder")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise MnistEdgeError(os_error_message(exc, Path(run_dir) / REPORT_NAME,
                                              "cannot write")) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write(run_dir: str | Path, report: dict[str, Any]) -> None:
    with atomic_write(Path(run_dir) / REPORT_NAME, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")


def set_backend_figures(run_dir: str | Path, backend: str, figures: dict[str, Any]) -> None:
    """Replace (not merge) one backend's figures, so no stale mismatch survives a fixed run."""
    with _locked(run_dir):
        report = load_report(run_dir)
        if not isinstance(report.get("backends"), dict):
            report["backends"] = {}
        report["backends"][backend] = figures
        _write(run_dir, report)


def update_report(run_dir: str | Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `updates` into the run's report.json (locked, written atomically)."""
    with _locked(run_dir):
        report = _merge(load_report(run_dir), updates)
        _write(run_dir, report)
    return report
