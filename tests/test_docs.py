"""The documentation site: it builds with `mkdocs build --strict`, its generated pages
cannot drift from the code, and its pages load in a browser.

The drift checks need no MkDocs; the builds skip (with the reason) where mkdocs is not
installed (`pip install -e ".[dev]"` installs it, as CI does).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import need

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
sys.path.insert(0, str(REPO / "scripts"))

import cli_reference  # noqa: E402  (scripts/, put on the path above)

from mnist_edge.cli import build_parser  # noqa: E402
from mnist_edge.validate import BACKENDS  # noqa: E402

# Pages written for the site (BENCHMARKS.md is a record of past commands, kept as run).
OUR_PAGES = [p for p in DOCS.glob("*.md") if p.name != "BENCHMARKS.md"]


def _options(parser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _sections(markdown: str) -> dict[str, str]:
    """`### mnist-edge NAME` section text by NAME."""
    parts = re.split(r"^### mnist-edge (\S+)$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_cli_reference_lists_every_subcommand_and_option() -> None:
    parser = build_parser()
    text = cli_reference.cli_markdown(parser)
    sections = _sections(text)
    subs = cli_reference.subcommands(parser)
    assert list(sections) == list(subs)
    for name, sub in subs.items():
        body = sections[name]
        assert f"usage: mnist-edge {name}" in body
        for action in cli_reference.arguments(sub):
            shown = action.option_strings or [action.metavar or action.dest]
            for item in shown:
                assert f"`{item}" in body, f"{name}: {item} missing from the CLI reference"
            for choice in action.choices or ():
                assert f"`{choice}`" in body, f"{name} {shown[0]}: choice {choice} missing"
    for option in _options(parser) - {"-h", "--help"}:
        assert f"`{option}`" in text.split("### ")[0]


def test_pages_use_only_options_the_cli_has() -> None:
    """Every `mnist-edge CMD ... --opt` written on a page or in the README names an option
    that CMD really takes (the examples are hand-written; the parser is not)."""
    subs = cli_reference.subcommands(build_parser())
    for page in [*OUR_PAGES, REPO / "README.md"]:
        for line in page.read_text(encoding="utf-8").splitlines():
            for match in re.finditer(r"mnist-edge (\w+)([^`|#\n]*)", line):
                name, rest = match.groups()
                if name not in subs:
                    continue
                for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
                    assert option in _options(subs[name]), \
                        f"{page.name}: `mnist-edge {name} {option}` is no option of {name}"


def test_backends_page_names_every_validate_backend() -> None:
    text = (DOCS / "backends.md").read_text(encoding="utf-8")
    missing = [b for b in BACKENDS if f"`{b}`" not in text]
    assert not missing, f"docs/backends.md does not describe: {missing}"


# ------------------------------------------------------------------------ builds
def _mkdocs() -> None:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocs_jupyter  # noqa: F401
        import mkdocstrings_handlers.python  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"{exc.name} not installed: pip install -e '.[dev]' (mkdocs-material, "
                    "mkdocstrings-python, mkdocs-jupyter)")


def build_site(root: Path, out: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` (not -q: quiet mode stops counting the warnings that
    --strict turns into a failure)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(root / "mkdocs.yml"), "-d", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)


def copy_tree(dest: Path) -> Path:
    """What the docs build reads, copied so that a test may change it."""
    ignore = shutil.ignore_patterns("__pycache__")
    dest.mkdir()
    shutil.copy(REPO / "mkdocs.yml", dest)
    for folder in ("docs", "mnist_edge"):
        shutil.copytree(REPO / folder, dest / folder, ignore=ignore)
    (dest / "scripts").mkdir()
    for name in ("docs_hooks.py", "cli_reference.py", "docs_tables.py"):
        shutil.copy(REPO / "scripts" / name, dest / "scripts")
    return dest


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _mkdocs()
    out = tmp_path_factory.mktemp("site")
    result = build_site(REPO, out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_site_builds_strict_with_every_page(site: Path) -> None:
    for page in ("index", "concepts", "backends", "importing", "fpga", "web", "BENCHMARKS",
                 "cli", "api", "notebooks"):
        assert (site / f"{page}.html").is_file(), page
    cli = (site / "cli.html").read_text(encoding="utf-8")
    for name in cli_reference.subcommands(build_parser()):
        assert f'id="mnist-edge-{name}"' in cli
    api = (site / "api.html").read_text(encoding="utf-8")
    for ident in re.findall(r"^::: (\S+)", (DOCS / "api.md").read_text(), flags=re.M):
        assert f'id="{ident}"' in api, f"{ident} not rendered on the API page"
    import mnist_edge

    for name in mnist_edge.__all__:
        obj = getattr(mnist_edge, name)
        if callable(obj):  # every public class and function, documented under its module
            assert f'id="{obj.__module__}.{obj.__qualname__}"' in api, name


@pytest.mark.parametrize("page, line, named", [
    ("api.md", "::: mnist_edge.api.NoSuchThing", "NoSuchThing"),
    ("web.md", "[a figure](BENCHMARKS.md#no-such-section)", "no-such-section"),
    ("web.md", "[a page](no-such-page.md)", "no-such-page.md"),
])
def test_strict_build_fails_on_a_broken_reference(tmp_path: Path, page: str, line: str,
                                                   named: str) -> None:
    _mkdocs()
    root = copy_tree(tmp_path / "repo")
    path = root / "docs" / page
    path.write_text(path.read_text() + f"\n{line}\n")
    result = build_site(root, tmp_path / "site")
    assert result.returncode != 0
    assert named in result.stdout + result.stderr


def test_notebooks_in_examples_join_the_site(tmp_path: Path) -> None:
    """A notebook dropped into examples/ gets a page and a nav entry, with no edit of
    mkdocs.yml (without one, the page says they are coming: the main build covers that)."""
    _mkdocs()
    root = copy_tree(tmp_path / "repo")
    (root / "examples").mkdir()
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# A quick tour\n"]},
        {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": None,
         "outputs": [], "source": ["import mnist_edge as me\n"]}]}
    (root / "examples" / "tour.ipynb").write_text(json.dumps(notebook))
    result = build_site(root, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "site" / "examples" / "tour.html").read_text(encoding="utf-8")
    assert "A quick tour" in page and "mnist_edge" in page
    listing = (tmp_path / "site" / "notebooks.html").read_text(encoding="utf-8")
    assert "A quick tour" in listing and "examples/tour.html" in listing
    assert "Coming soon" not in listing


# ------------------------------------------------------------------------ in a browser
def test_site_pages_in_chromium(site: Path, tmp_path: Path) -> None:
    """The home and API pages load from disk in headless Chromium; the screenshots go to
    the test's folder, and to docs/site_home.png, docs/site_api.png with
    MNIST_EDGE_UPDATE_SCREENSHOTS=1 (as the other screenshot tests do)."""
    need("chromium")
    need("chromedriver")
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By

    from mnist_edge.targets.browser import chromium, file_url

    driver = chromium(1280, 900)
    try:
        shots = {}
        driver.get(file_url(site / "index.html"))
        assert driver.title == "mnist-edge"
        assert driver.find_element(By.TAG_NAME, "h1").text == "mnist-edge"
        shots["site_home.png"] = driver.get_screenshot_as_png()
        driver.get(file_url(site / "api.html"))
        assert driver.title.startswith("Python API")
        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, ".doc-heading")]
        assert any("mnist_edge.api" in h for h in headings), headings
        assert driver.find_element(By.ID, "mnist_edge.api.Model").is_displayed()
        shots["site_api.png"] = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    for name, png in shots.items():
        assert len(png) > 10_000
        (tmp_path / name).write_bytes(png)
        if os.environ.get("MNIST_EDGE_UPDATE_SCREENSHOTS") == "1":
            (DOCS / name).write_bytes(png)
