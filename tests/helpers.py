"""Helpers the test modules share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import shutil

import pytest


def need(tool: str) -> str:
    """The tool's path, or a skip that says which tool is missing and how to get it."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found: install with scripts/setup.sh")
    return path
