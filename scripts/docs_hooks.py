"""MkDocs hooks (mkdocs.yml `hooks:`): the pages that must not be written by hand.

* docs/cli.md gets the CLI reference rendered from `mnist_edge.cli.build_parser()` at
  build time (scripts/cli_reference.py), so it cannot drift from the parser; the op kinds
  and the firmware targets come from their registries the same way (scripts/docs_tables.py).
  A page asks for one with a `<!-- generated: NAME -->` comment.
* The notebooks live in examples/ (where a user runs them), not in docs/: every
  examples/*.ipynb is added to the build at that same path (mkdocs-jupyter renders
  it, unexecuted), listed on docs/notebooks.md and put into the nav under "Notebooks".
  With no notebook yet, the page says they are coming, and the build passes either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cli_reference  # beside this file: MkDocs puts this folder on sys.path while loading
import docs_tables
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
EXAMPLES = REPO / "examples"
NOTEBOOKS_PAGE = "notebooks.md"


def notebooks() -> list[Path]:
    return sorted(EXAMPLES.glob("*.ipynb"))


def notebook_title(path: Path) -> str:
    """The notebook's first Markdown heading, else its file name."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        cells = []
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        for line in (source if isinstance(source, list) else source.splitlines()):
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return path.stem.replace("_", " ")


def on_config(config):
    """Turn the nav's `Notebooks: notebooks.md` into a section: the list page, then each
    notebook, so that a new notebook needs no edit of mkdocs.yml."""
    found = notebooks()
    for i, entry in enumerate(config.nav or []):
        if isinstance(entry, dict) and entry.get("Notebooks") == NOTEBOOKS_PAGE and found:
            config.nav[i] = {"Notebooks": [{"Overview": NOTEBOOKS_PAGE}] + [
                {notebook_title(p): f"examples/{p.name}"} for p in found]}
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which picks the notebooks up
def on_files(files, config):
    """Each notebook as a file of the site at its path in the repository: a File whose
    source folder is the repository root (mkdocs-jupyter reads notebooks through
    `src_dir`, so a `File.generated` one would not render)."""
    for path in notebooks():
        files.append(File(f"examples/{path.name}", src_dir=str(REPO),
                          dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


def notebook_list() -> str:
    found = notebooks()
    if not found:
        return ("!!! note \"Coming soon\"\n    No notebook is in `examples/` yet: the "
                "notebooks that walk through the Python API are coming. Each "
                "`examples/*.ipynb` appears here by itself once it exists.\n")
    return "\n".join(f"- [{notebook_title(p)}](examples/{p.name}) (`examples/{p.name}`)"
                     for p in found) + "\n"


def _generated() -> dict[str, Callable[[], str]]:
    """Marker comment in a page -> the function whose Markdown replaces it."""
    return {"cli-reference": cli_reference.cli_markdown,
            "op-kinds": docs_tables.op_kinds_markdown,
            "targets": docs_tables.targets_markdown,
            "notebook-list": notebook_list}


def on_page_markdown(markdown, page, config, files):
    for name, render in _generated().items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown


def on_serve(server, config, builder):
    """`mkdocs serve` rebuilds when the code (API pages) or a notebook changes; the CLI
    reference is the parser imported at start, so a CLI change needs a restart."""
    for path in (REPO / "mnist_edge", EXAMPLES):
        if path.exists():
            server.watch(str(path))
    return server
