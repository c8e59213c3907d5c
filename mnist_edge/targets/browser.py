"""The system's headless Chromium, driven by Selenium: for the web tests and benchmarks.

The browser and its driver are the Debian packages (`chromium`, `chromium-driver`),
named by path so that Selenium Manager never tries to download either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import MnistEdgeError
from .tools import require_tool

HINT = "install Debian's chromium and chromium-driver (scripts/setup.sh installs them)"


def chromium_paths() -> tuple[str, str]:
    """(browser, driver) paths, or a one-line MnistEdgeError naming what is missing."""
    browser = os.environ.get("MNIST_EDGE_CHROMIUM") or require_tool("chromium", HINT)
    driver = os.environ.get("MNIST_EDGE_CHROMEDRIVER") or require_tool("chromedriver", HINT)
    return browser, driver


def chromium(width: int = 1100, height: int = 900) -> Any:
    """A headless Chromium WebDriver (caller quits it)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise MnistEdgeError("selenium not found: pip install 'mnist-edge[demo]' "
                             "(scripts/setup.sh installs it)") from None
    browser, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def file_url(path: Path) -> str:
    return Path(path).resolve().as_uri()
