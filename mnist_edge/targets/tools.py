"""Host tools the targets run (compilers, QEMU, probes): found on PATH or named in one line."""

from __future__ import annotations

import shutil

from ..errors import MnistEdgeError

SETUP_HINT = "install with scripts/setup.sh"


def require_tool(name: str, hint: str = SETUP_HINT, label: str | None = None) -> str:
    """Absolute path of `name`, or a MnistEdgeError '<label> not found: <hint>'."""
    path = shutil.which(name)
    if path is None:
        raise MnistEdgeError(f"{label or name} not found: {hint}")
    return path
