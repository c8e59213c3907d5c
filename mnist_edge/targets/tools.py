"""Host tools the targets run (compilers, QEMU, probes): found on PATH or named in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import MnistEdgeError

SETUP_HINT = "install with scripts/setup.sh"


def require_tool(name: str, hint: str = SETUP_HINT, label: str | None = None) -> str:
    """Absolute path of `name`, or a MnistEdgeError '<label> not found: <hint>'."""
    path = find_tool(name)
    if path is None:
        raise MnistEdgeError(f"{label or name} not found: {hint}")
    return path


def find_tool(name: str) -> str | None:
    """Absolute path of `name` on PATH, or None."""
    return shutil.which(name)


def compiler_cache() -> list[str]:
    """ccache as a compiler launcher when it is installed, else nothing: a source compiled
    again with the same flags (the kernels under another model, Verilator's runtime under
    another design) comes from its cache. It only saves time, so it is never required."""
    path = find_tool("ccache")
    return [path] if path else []


def run_step(cmd: list[str], cwd: Path, what: str) -> None:
    """One build step (a compile, a link, an objcopy) in `cwd`; its failure is one line,
    '<what> failed: ' and the first lines the tool printed."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip().splitlines()
        detail = " | ".join(out[:6]) if out else f"exit status {proc.returncode}"
        raise MnistEdgeError(f"{what} failed: {detail}")
