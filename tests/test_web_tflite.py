"""The web page and the `wasm` backend on graphs in the tflite arithmetic (imported MLPerf
Tiny models): the WebAssembly module equals golden, and the generated page, opened from
file:// in headless Chromium, shows golden's int8 outputs for every embedded test vector.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import MODELS, mlperf_run, need
from test_c_tflite import _inputs
from test_web import browser, open_page  # noqa: F401 (browser: a fixture)

from mnist_edge import golden, qgraph
from mnist_edge.validate import validate_backend


@pytest.mark.parametrize("key", sorted(MODELS))
def test_mlperf_wasm_exact(mlperf_runs, key: str) -> None:
    need("emcc")
    need("node")
    run_dir = mlperf_run(mlperf_runs, key)
    graph = qgraph.load_run(run_dir)
    f = validate_backend(run_dir, "wasm", _inputs(graph, 8, seed=5), None)
    assert f["exact_logit_fraction"] == 1.0 and f["images"] == 8, f
    assert f["requant"] == "int"  # TFLM's requantization: --requant does not apply


@pytest.mark.parametrize("key", ["ad", "kws"])
def test_mlperf_page_runs_its_vectors_exact(mlperf_runs, key: str, browser,  # noqa: F811
                                            tmp_path: Path) -> None:
    """AD (640 int8 features, 640 outputs) and KWS (1x49x10 int8 features, softmax over
    12): the page offers the test vectors; each one's outputs equal golden's."""
    need("emcc")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from mnist_edge.backends.web import generate_web

    graph = qgraph.load_run(mlperf_run(mlperf_runs, key))
    x = _inputs(graph, 4, seed=8)
    site = generate_web(graph, tmp_path / "web", vector_pixels=x)
    manifest = json.loads((site / "manifest.json").read_text())
    assert manifest["arithmetic"] == "tflite" and manifest["requant"] == "int"
    open_page(browser, site)
    assert "tflite arithmetic" in browser.find_element(By.TAG_NAME, "body").text
    assert not browser.find_elements(By.ID, "draw")  # int8 features: test vectors only
    want = golden.run_int8(graph, x)
    for i in range(len(x)):
        Select(browser.find_element(By.ID, "vector")).select_by_value(str(i))
        browser.find_element(By.ID, "run-vector").click()
        last = browser.execute_script("return MnistEdge.state.last")
        assert last["source"] == f"test vector {i}" and last["exact"], (key, i)
        shown = browser.execute_script(  # one round trip for AD's 640 outputs
            "return Array.from({length: arguments[0]}, "
            "(_, c) => Number(document.getElementById('logit-' + c).textContent))",
            graph.output.size)
        assert shown == want[i].tolist()
    assert int(np.argmax(want[-1])) == int(browser.find_element(By.ID, "class").text)
