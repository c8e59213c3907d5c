"""Tables of the docs rendered from the code's own registries (scripts/docs_hooks.py).

Why generated: the op kinds (mnist_edge.ops.REGISTRY) and the firmware targets
(mnist_edge.targets.boards) grow with the code; a hand-kept copy on a docs page would not.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cli_reference import md_text  # beside this file (on sys.path for the docs hooks)

REPO = Path(__file__).resolve().parent.parent


def _import_repo() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def op_kinds_markdown() -> str:
    """One row per QGraph op kind: the arithmetics it exists in, and what it computes."""
    _import_repo()
    from mnist_edge.ops import REGISTRY

    rows = ["| kind | arithmetics | what it computes |", "| --- | --- | --- |"]
    rows += [f"| `{kind}` | {', '.join(f'`{a}`' for a in spec.arithmetics)} | "
             f"{md_text(spec.summary)} |" for kind, spec in REGISTRY.items()]
    return "\n".join(rows) + "\n"


def targets_markdown() -> str:
    """Emulated targets and real boards: core, default requantization, memory."""
    _import_repo()
    from mnist_edge.targets.boards import BOARDS, CORES, TARGETS

    def size(n: int) -> str:
        return f"{n // (1 << 20)} MB" if n >= 1 << 20 else f"{n // 1024} KB"

    rows = ["| target | option | what it is | core | requantization | flash / RAM |",
            "| --- | --- | --- | --- | --- | --- |"]
    for boards, how in ((TARGETS, "`--target`"), (BOARDS, "`--board`")):
        rows += [f"| `{b.name}` | {how} | {b.title} | {b.core} | {CORES[b.core].requant} | "
                 f"{size(b.flash_size)} / {size(b.ram_size)} |" for b in boards.values()]
    return "\n".join(rows) + "\n"
