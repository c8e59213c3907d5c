"""generate web: the same preprocessing bytes in JS and Python, the WebAssembly model equal to
golden, and the static page in a real (headless) Chromium from file://."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import need

from mnist_edge import golden, qgraph
from mnist_edge.demo import preprocess as pp
from mnist_edge.errors import MnistEdgeError

REPO = Path(__file__).resolve().parent.parent
PREPROCESS_JS = REPO / "templates" / "web" / "preprocess.js"
DOCS = REPO / "docs"


def random_strokes(rng: np.random.Generator, w: int, h: int) -> list[list[list[int]]]:
    """Polylines that wander, cross and leave the canvas (clipping is part of the contract)."""
    strokes = []
    for _ in range(int(rng.integers(1, 5))):
        n = int(rng.integers(1, 12))
        strokes.append([[int(rng.integers(-w // 8, w + w // 8)),
                         int(rng.integers(-h // 8, h + h // 8))] for _ in range(n)])
    return strokes


def run_node(script: str, payload) -> object:
    node = need("node")
    proc = subprocess.run([node, "-e", script], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_js_and_python_preprocessing_give_the_same_bytes(mnist_dir: Path) -> None:
    from mnist_edge import data

    rng = np.random.default_rng(11)
    sizes = [(280, 280), (280, 280), (400, 300), (97, 211), (24, 24)]
    cases = [{"w": w, "h": h, "strokes": random_strokes(rng, w, h)}
             for k in range(60) for w, h in [sizes[k % len(sizes)]]]
    cases.append({"w": 280, "h": 280, "strokes": []})                  # empty: both refuse
    cases.append({"w": 280, "h": 280, "strokes": [[[140, 140]]]})       # a dot
    images = data.load_mnist("test", mnist_dir)[0][:40]
    bitmaps = [pp.upscale(im, 10) for im in images[:20]]                # grey ink, full size
    for im in images[20:]:                                              # half size, in a corner
        canvas = np.zeros((280, 280), np.uint8)
        canvas[:140, 140:] = pp.upscale(im, 5)
        bitmaps.append(canvas)
    script = f"""
const P = require({json.dumps(str(PREPROCESS_JS))});
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const run = (f) => {{
  try {{ return Array.from(f()); }} catch (e) {{ return 'error: ' + e.message; }}
}};
const strokes = input.cases.map((c) => run(() => P.preprocessStrokes(c.strokes, c.w, c.h)));
const inks = input.inks.map((b) => run(() => P.preprocess(Uint8Array.from(b), 280, 280)));
console.log(JSON.stringify({{ strokes, inks }}));
"""
    out = run_node(script, {"cases": cases,
                            "inks": [b.reshape(-1).tolist() for b in bitmaps]})
    for case, js in zip(cases, out["strokes"], strict=True):
        try:
            py = pp.preprocess_strokes(case["strokes"], case["w"], case["h"]).reshape(-1).tolist()
        except MnistEdgeError as exc:
            py = f"error: {exc}"
        assert js == py, case
    for bitmap, js in zip(bitmaps, out["inks"], strict=True):
        assert js == pp.preprocess(bitmap).reshape(-1).tolist()
    assert sum(isinstance(v, str) for v in out["strokes"]) >= 1   # the empty drawing


def test_preprocessing_is_mnist_style() -> None:
    ink = pp.rasterize([[(40, 100), (240, 100)]])          # a wide horizontal bar
    out = pp.preprocess(ink)
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert cols[-1] - cols[0] + 1 == pp.BOX                 # longer side scaled to 20
    assert rows[-1] - rows[0] + 1 < 6                        # aspect ratio kept
    assert 0 < len(np.unique(out)) - 2                       # grey levels (anti-aliased)
    ys, xs = np.nonzero(out)
    w = out[ys, xs].astype(np.float64)
    assert abs(np.average(ys + 0.5, weights=w) - 14) <= 0.5   # centre of mass at the centre
    assert abs(np.average(xs + 0.5, weights=w) - 14) <= 0.5
    with pytest.raises(MnistEdgeError, match="empty"):
        pp.preprocess(np.zeros((280, 280), np.uint8))
    with pytest.raises(MnistEdgeError, match="outside"):
        pp.rasterize([], 5000, 10)


@pytest.fixture(scope="module")
def web_site(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("emcc")
    from mnist_edge.pipeline import generate

    return generate(tiny_run, "web", str(tmp_path_factory.mktemp("web") / "site"), vectors=0)


def test_generate_web_writes_a_deterministic_site(web_site: Path, tiny_run: Path,
                                                  tmp_path: Path) -> None:
    from mnist_edge.backends.web import generate_web

    names = sorted(p.name for p in web_site.iterdir())
    assert names == ["index.html", "manifest.json", "mnist_edge.js", "mnist_edge.wasm"]
    manifest = json.loads((web_site / "manifest.json").read_text())
    graph = qgraph.load_run(tiny_run)
    assert manifest["qgraph_hash"] == graph.content_hash()
    for name, sha in manifest["files"].items():
        assert hashlib.sha256((web_site / name).read_bytes()).hexdigest() == sha
    js = (web_site / "mnist_edge.js").read_text()
    embedded = re.search(r'MNIST_EDGE_WASM_BASE64 = "([A-Za-z0-9+/=]+)"', js).group(1)
    assert base64.b64decode(embedded) == (web_site / "mnist_edge.wasm").read_bytes()
    assert "http://" not in (web_site / "index.html").read_text()    # nothing fetched from afar
    again = generate_web(graph, tmp_path / "again")
    for name in names:
        assert (again / name).read_bytes() == (web_site / name).read_bytes(), name


def test_generate_web_without_emcc_is_one_line(tiny_run: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_edge.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["generate", "web", str(tiny_run), "--out", str(tmp_path / "w")]) == 2
    assert not (tmp_path / "w").exists()


def test_wasm_logits_equal_golden(web_site: Path, tiny_run: Path, mnist_dir: Path) -> None:
    from mnist_edge import data

    graph = qgraph.load_run(tiny_run)
    images = data.load_mnist("test", mnist_dir)[0][:200]
    script = f"""
const bytes = require('fs').readFileSync({json.dumps(str(web_site / 'mnist_edge.wasm'))});
const images = JSON.parse(require('fs').readFileSync(0, 'utf8'));
WebAssembly.instantiate(bytes, {{}}).then(({{ instance }}) => {{
  const ex = instance.exports;
  if (ex._initialize) ex._initialize();
  const out = images.map((img) => {{
    new Uint8Array(ex.memory.buffer).set(img, ex.web_input());
    const cls = ex.web_predict();
    return [cls, Array.from(new Int8Array(ex.memory.buffer, ex.web_logits(), {graph.output.size}))];
  }});
  console.log(JSON.stringify(out));
}});
"""
    out = run_node(script, [im.reshape(-1).tolist() for im in images])
    logits = np.array([o[1] for o in out], dtype=np.int8)
    reference = golden.run_int8(graph, images)
    np.testing.assert_array_equal(logits, reference)
    assert [o[0] for o in out] == golden.predict(reference).tolist()


# A "7" and a "4", drawn with the mouse (offsets from the canvas centre).
SEVEN = [[(-60, -80), (-20, -80), (20, -80), (60, -80), (40, -30), (20, 20), (0, 70),
          (-10, 100)]]
FOUR = [[(-40, -90), (-55, -20), (-60, 20), (0, 20), (60, 20)], [(30, -80), (25, 0), (20, 100)]]


def draw(driver, canvas, strokes) -> None:
    """Press, move through the points, release: real pointer events on the canvas."""
    from selenium.webdriver.common.action_chains import ActionChains

    for stroke in strokes:
        chain = ActionChains(driver)
        chain.move_to_element_with_offset(canvas, *stroke[0]).click_and_hold()
        for point in stroke[1:]:
            chain.move_to_element_with_offset(canvas, *point)
        chain.release().perform()


def wait_for(fn, timeout: float = 30.0):
    end = time.time() + timeout
    while time.time() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the page")


def save_screenshot(driver, tmp_path: Path, name: str) -> Path:
    """Into the test's folder; also into docs/ when MNIST_EDGE_UPDATE_SCREENSHOTS=1."""
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("MNIST_EDGE_UPDATE_SCREENSHOTS") == "1":
        (DOCS / name).write_bytes(shot.read_bytes())
    return shot


@pytest.fixture(scope="module")
def browser():
    need("chromium")
    need("chromedriver")
    pytest.importorskip("selenium")
    from mnist_edge.targets.browser import chromium

    driver = chromium()
    yield driver
    driver.quit()


def test_static_page_in_chromium_matches_golden(web_site: Path, tiny_run: Path, browser,
                                                tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from mnist_edge.targets.browser import file_url

    graph = qgraph.load_run(tiny_run)
    browser.get(file_url(web_site / "index.html"))
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready === '1'"))
    assert browser.execute_script("return MnistEdge.state.source") == "embedded"
    canvas = browser.find_element(By.ID, "draw")
    for strokes in (SEVEN, FOUR):
        browser.find_element(By.ID, "clear").click()
        draw(browser, canvas, strokes)
        last = wait_for(lambda: browser.execute_script("return MnistEdge.state.last"))
        recorded = browser.execute_script("return MnistEdge.state.strokes")
        assert len(recorded) == len(strokes)
        pixels = np.array(last["input"], dtype=np.uint8).reshape(1, 28, 28)
        # The page's 28x28 input is Python's preprocessing of the strokes it recorded ...
        np.testing.assert_array_equal(pixels[0], pp.preprocess_strokes(recorded))
        # ... and the class and logits it shows are golden's on that input.
        reference = golden.run_int8(graph, pixels)[0]
        shown = [int(browser.find_element(By.ID, f"logit-{c}").text)
                 for c in range(graph.output.size)]
        assert shown == reference.tolist()
        assert int(browser.find_element(By.ID, "class").text) == int(np.argmax(reference))
    save_screenshot(browser, tmp_path, "web_page.png")
    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "logit-0").text == ""


def test_static_page_from_a_static_host_fetches_the_wasm(web_site: Path, tiny_run: Path,
                                                        browser) -> None:
    """Served over http (any static host), the page loads mnist_edge.wasm itself."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(web_site))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        wait_for(lambda: browser.execute_script("return document.body.dataset.ready === '1'"))
        assert browser.execute_script("return MnistEdge.state.source") == "mnist_edge.wasm"
        result = browser.execute_script(
            "return MnistEdge.drawDigit(new Array(784).fill(0).map((_, i) => "
            "(i % 28 > 9 && i % 28 < 18) ? 200 : 0), 10, 0, 0)")
        pixels = np.array(result["input"], np.uint8).reshape(1, 28, 28)
        assert pixels.any()
        reference = golden.run_int8(qgraph.load_run(tiny_run), pixels)[0]
        assert result["logits"] == reference.tolist()
    finally:
        httpd.shutdown()
        httpd.server_close()
