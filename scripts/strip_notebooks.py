"""Strip outputs, execution counts and run metadata from notebooks, in place.

    python scripts/strip_notebooks.py            # every examples/*.ipynb
    python scripts/strip_notebooks.py A.ipynb    # just these
    python scripts/strip_notebooks.py --check    # exit 1 naming the notebooks not stripped

The notebooks are committed without outputs (CI executes them; tests/test_notebooks.py
checks both). What is kept: the cells' sources, their ids, and the kernel's name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# cell metadata Jupyter and nbclient add while running or viewing a notebook
RUN_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs, execution counts, timings or widget state."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
    nb.metadata.pop("widgets", None)
    if "language_info" in nb.metadata:  # the Python version Jupyter ran it with: noise
        nb.metadata.language_info = {"name": nb.metadata.language_info.get("name", "python")}
    return nb


def stripped_text(path: Path) -> str:
    """What `path` holds once stripped, as nbformat writes it."""
    nb = strip(nbformat.read(path, as_version=nbformat.NO_CONVERT))
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks (default: examples/*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a notebook is not stripped")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(EXAMPLES.glob("*.ipynb"))
    dirty = []
    for path in paths:
        text = stripped_text(path)
        if path.read_text() != text:
            dirty.append(path)
            if not args.check:
                path.write_text(text)
    for path in dirty:
        print(f"{path}: {'not stripped' if args.check else 'stripped'}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
