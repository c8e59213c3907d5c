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
    for strokes in (SEVEN, FOUR):
        recorded = draw_and_compare(browser, graph, strokes)
        assert len(recorded) == len(strokes)
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


# ------------------------------------------------------------------ models of other inputs
OTHER_SIZES = [(32, 32), (20, 18), (28, 28), (7, 40)]


def test_js_and_python_preprocessing_agree_at_other_sizes(mnist_dir: Path) -> None:
    """MNIST-style to the model's own HxW, and uploads read as a drawing or taken whole
    (grey or RGB, integer area resize): the same bytes in JS and Python."""
    from mnist_edge import data

    rng = np.random.default_rng(21)
    cases = []
    for k in range(40):
        w, h = [(280, 280), (400, 300), (97, 211)][k % 3]
        oh, ow = OTHER_SIZES[k % len(OTHER_SIZES)]
        cases.append({"w": w, "h": h, "oh": oh, "ow": ow,
                      "strokes": random_strokes(rng, w, h)})
    images = data.load_mnist("test", mnist_dir)[0][:8]
    uploads = []
    for k in range(24):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        if k < 8:   # an MNIST digit, white on black, scaled to an odd size
            rgba = np.zeros((h, w, 4), np.uint8)
            rgba[..., :3] = pp.area_resize(images[k], (h, w))[..., None]
        else:       # noise, some of it semi-transparent
            rgba = rng.integers(0, 256, (h, w, 4)).astype(np.uint8)
        if k % 3:
            rgba[..., 3] = 255
        oh, ow = OTHER_SIZES[k % len(OTHER_SIZES)]
        uploads.append({"w": w, "h": h, "oh": oh, "ow": ow, "ch": 1 + 2 * (k % 2),
                        "rgba": rgba.reshape(-1).tolist()})
    script = f"""
const P = require({json.dumps(str(PREPROCESS_JS))});
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const run = (f) => {{
  try {{ return Array.from(f()); }} catch (e) {{ return 'error: ' + e.message; }}
}};
const strokes = input.cases.map((c) => run(() => P.preprocessStrokes(c.strokes, c.w, c.h,
                                                                    c.oh, c.ow)));
const uploads = input.uploads.map((u) => {{
  const rgba = Uint8Array.from(u.rgba);
  const ink = P.inkFromRGBA(rgba, u.w, u.h);
  return [Array.from(ink), run(() => P.preprocess(ink, u.w, u.h, u.oh, u.ow)),
          run(() => P.imageFromRGBA(rgba, u.w, u.h, u.ch, u.oh, u.ow))];
}});
console.log(JSON.stringify({{ strokes, uploads }}));
"""
    out = run_node(script, {"cases": cases, "uploads": uploads})

    def py(fn):
        try:
            return fn().reshape(-1).tolist()
        except MnistEdgeError as exc:
            return f"error: {exc}"

    for case, js in zip(cases, out["strokes"], strict=True):
        size = (case["oh"], case["ow"])
        assert js == py(lambda c=case, s=size: pp.preprocess_strokes(c["strokes"], c["w"],
                                                                     c["h"], s)), case
    for u, (ink, drawn, whole) in zip(uploads, out["uploads"], strict=True):
        rgba = np.array(u["rgba"], np.uint8).reshape(u["h"], u["w"], 4)
        size = (u["oh"], u["ow"])
        assert ink == pp.ink_from_rgba(rgba).reshape(-1).tolist()
        assert drawn == py(lambda r=rgba, s=size: pp.preprocess(pp.ink_from_rgba(r), s))
        assert whole == py(lambda r=rgba, u=u, s=size: pp.image_from_rgba(r, u["ch"], s))
    assert sum(isinstance(v[1], list) for v in out["uploads"]) >= 8   # the digits


def test_preprocessing_at_other_sizes_keeps_mnist_proportions() -> None:
    assert pp.box_limits((28, 28)) == (20, 20)
    assert pp.box_limits((32, 32)) == (23, 23)
    assert pp.box_limits((20, 18)) == (14, 13)
    ink = pp.rasterize([[(140, 40), (140, 240)]])           # a tall vertical bar
    for size in [(32, 32), (20, 18)]:
        out = pp.preprocess(ink, size)
        assert out.shape == size
        rows = np.flatnonzero(out.any(1))
        assert rows[-1] - rows[0] + 1 == pp.box_limits(size)[0]   # the long side fills the box
        ys, xs = np.nonzero(out)
        w = out[ys, xs].astype(np.float64)
        assert abs(np.average(ys + 0.5, weights=w) - size[0] / 2) <= 0.5
        assert abs(np.average(xs + 0.5, weights=w) - size[1] / 2) <= 0.5
    flat = np.full((6, 9, 3), 200, np.uint8)
    assert (pp.area_resize(flat, (20, 18)) == 200).all()             # the mean is kept
    assert pp.area_resize(np.arange(4, dtype=np.uint8).reshape(2, 2), (1, 1))[0, 0] == 2


def _site(tmp_path_factory: pytest.TempPathFactory, layout: str):
    need("emcc")
    from mnist_edge.backends.web import generate_web
    from mnist_edge.testing import random_inputs, random_qgraph

    graph = random_qgraph(1, layout)
    site = generate_web(graph, tmp_path_factory.mktemp("web") / layout,
                        vector_pixels=random_inputs(graph, 6, 9))
    return graph, site


@pytest.fixture(scope="module")
def grey32_site(tmp_path_factory: pytest.TempPathFactory):
    """A 1x32x32 model of 5 classes: drawn MNIST-style at 32x32."""
    return _site(tmp_path_factory, "grey32")


@pytest.fixture(scope="module")
def rgb_site(tmp_path_factory: pytest.TempPathFactory):
    """A 3x20x18 model of 7 classes: uploads only."""
    return _site(tmp_path_factory, "rgb")


@pytest.fixture(scope="module")
def features_site(tmp_path_factory: pytest.TempPathFactory):
    """A 1x49x10 int8 features model of 12 classes: test vectors only."""
    return _site(tmp_path_factory, "features")


def open_page(browser, site: Path) -> None:
    from mnist_edge.targets.browser import file_url

    browser.get(file_url(site / "index.html"))
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready === '1'"))


def shown_logits(browser, classes: int) -> list[int]:
    from selenium.webdriver.common.by import By

    return [int(browser.find_element(By.ID, f"logit-{c}").text) for c in range(classes)]


def page_input(result: dict, graph) -> np.ndarray:
    """The page's input bytes (HWC, as the C reads them) -> the QGraph's [1, C, H, W]."""
    c, h, w = graph.input.shape
    return np.array(result["input"], np.uint8).reshape(1, h, w, c).transpose(0, 3, 1, 2)


def draw_and_compare(browser, graph, strokes) -> list:
    """Draw `strokes` on a cleared canvas; the page's input must be Python's preprocessing
    of the strokes it recorded, at the model's own size, and the logits and class it shows
    golden's on that input. Returns the recorded strokes."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "clear").click()
    draw(browser, browser.find_element(By.ID, "draw"), strokes)
    last = wait_for(lambda: browser.execute_script("return MnistEdge.state.last"))
    recorded = browser.execute_script("return MnistEdge.state.strokes")
    pixels = page_input(last, graph)
    size = tuple(graph.input.shape[1:])
    np.testing.assert_array_equal(pixels[0, 0], pp.preprocess_strokes(recorded, size=size))
    reference = golden.run_int8(graph, pixels)[0]
    assert shown_logits(browser, graph.output.size) == reference.tolist()
    assert int(browser.find_element(By.ID, "class").text) == int(np.argmax(reference))
    return recorded


def upload(browser, path: Path, mode: str | None = None) -> dict:
    """Choose `path` in the page's file input (and the upload mode): what a person does."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.execute_script("MnistEdge.state.last = null")
    if mode is not None:
        Select(browser.find_element(By.ID, "upload-mode")).select_by_value(mode)
    field = browser.find_element(By.ID, "upload")
    field.clear()
    field.send_keys(str(path))
    return wait_for(lambda: browser.execute_script(
        "const r = MnistEdge.state.last; return r && r.source.startsWith('upload') ? r : null"))


def test_vectors_run_exact_on_every_page(grey32_site, rgb_site, features_site,
                                         browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    for graph, site in (grey32_site, rgb_site, features_site):
        open_page(browser, site)
        count = len(browser.find_elements(By.CSS_SELECTOR, "#vector option"))
        assert count == 6
        for i in range(count):
            Select(browser.find_element(By.ID, "vector")).select_by_value(str(i))
            browser.find_element(By.ID, "run-vector").click()
            last = browser.execute_script("return MnistEdge.state.last")
            assert last["source"] == f"test vector {i}" and last["exact"], graph.name
            assert "equals golden" in browser.find_element(By.ID, "vector-exact").text
            rows = np.array(last["input"], np.uint8).view(graph.input_dtype)
            x = rows.reshape(1, -1)
            if len(graph.input.shape) == 3:
                c, h, w = graph.input.shape
                x = x.reshape(1, h, w, c).transpose(0, 3, 1, 2)
            reference = golden.run_int8(graph, x)[0].tolist()
            assert shown_logits(browser, graph.output.size) == reference


def test_a_32x32_page_draws_and_uploads_at_its_own_size(grey32_site, browser,
                                                         tmp_path: Path) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    graph, site = grey32_site
    open_page(browser, site)
    assert "32&times;32&times;1" in (site / "index.html").read_text()
    assert "input[y * 32 + x]" in browser.find_element(By.ID, "input-layout").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#logits tr[id^=row-]")) == 5
    for strokes in (SEVEN, FOUR):
        draw_and_compare(browser, graph, strokes)
    # An upload: a dark digit on light paper, at an odd size; as a drawing and whole.
    rng = np.random.default_rng(4)
    paper = rng.integers(200, 256, (61, 47, 3)).astype(np.uint8)
    paper[10:50, 20:27] = rng.integers(0, 60, (40, 7, 3))
    path = tmp_path / "digit.png"
    Image.fromarray(paper).save(path)
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    for mode, want in (("drawing", pp.preprocess(pp.ink_from_rgba(rgba), (32, 32))[None]),
                       ("whole", pp.image_from_rgba(rgba, 1, (32, 32)).transpose(2, 0, 1))):
        last = upload(browser, path, mode)
        pixels = page_input(last, graph)
        np.testing.assert_array_equal(pixels[0], want)
        assert shown_logits(browser, 5) == golden.run_int8(graph, pixels)[0].tolist()


def test_an_rgb_page_takes_uploads_whole(rgb_site, browser, tmp_path: Path) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    graph, site = rgb_site
    open_page(browser, site)
    assert not browser.find_elements(By.ID, "draw")          # 3 channels: nothing to draw
    assert not browser.find_elements(By.ID, "upload-mode")   # taken whole, always
    assert "HWC" in browser.find_element(By.ID, "input-layout").text
    assert "20&times;18&times;3" in (site / "index.html").read_text()
    rng = np.random.default_rng(6)
    for k, (h, w) in enumerate([(57, 43), (20, 18), (9, 11)]):
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        image[: h // 2, :, 0] = 255                           # channels that differ
        path = tmp_path / f"photo{k}.png"
        Image.fromarray(image).save(path)
        last = upload(browser, path)
        pixels = page_input(last, graph)
        want = pp.image_from_rgba(np.asarray(Image.open(path).convert("RGBA")), 3, (20, 18))
        np.testing.assert_array_equal(pixels[0], want.transpose(2, 0, 1))
        assert shown_logits(browser, 7) == golden.run_int8(graph, pixels)[0].tolist()


def test_a_features_page_offers_only_the_test_vectors(features_site, browser) -> None:
    from selenium.webdriver.common.by import By

    graph, site = features_site
    open_page(browser, site)
    for absent in ("draw", "upload", "model-input"):
        assert not browser.find_elements(By.ID, absent), absent
    assert "takes features" in browser.find_element(By.ID, "features-note").text
    assert "int8" in browser.find_element(By.ID, "input-layout").text
    assert browser.find_element(By.ID, "status").text == "ready: run a test vector"
    assert browser.execute_script("return MnistEdge.runVector(0).exact")
