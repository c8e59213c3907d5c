"""mnist-edge demo: the engine (every backend, built once), the page's callbacks, and the
Gradio server itself: drawn in Chromium, bound to 127.0.0.1, 100 requests with flat memory."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import need
from test_web import FOUR, SEVEN, draw, save_screenshot, wait_for

from mnist_edge import data, golden, qgraph
from mnist_edge.demo import preprocess as pp
from mnist_edge.errors import MnistEdgeError

REPO = Path(__file__).resolve().parent.parent
SERVER_BACKENDS = "golden,onnxruntime,c,c-int"


@pytest.fixture(scope="module")
def engine(tiny_run: Path):
    from mnist_edge.demo.engine import Engine

    eng = Engine(tiny_run)
    yield eng
    eng.close()


def test_engine_runs_every_available_backend_bit_exact(engine, mnist_dir: Path) -> None:
    images = data.load_mnist("test", mnist_dir)[0][:3]
    available = [b for b in engine.backends if b in engine.runners]
    assert available[:2] == ["golden", "onnxruntime"]
    for im in images:
        panel = engine.panel(im)
        reference = golden.run_int8(engine.graph, im[None])[0].tolist()
        for row in panel.rows:
            if row.name in engine.runners:
                assert row.status == "ok" and row.logits == reference, row
            else:
                assert row.status == "missing" and row.message
        assert panel.exact_backends == len(available)
        assert panel.first_difference is None
        assert len(panel.trace) == len(engine.graph.ops)
        assert panel.float_probabilities is not None
        assert abs(sum(panel.float_probabilities) - 1) < 1e-6


@pytest.fixture(scope="module")
def demo_app(engine, mnist_dir: Path):
    """The page's callbacks (one instance: it runs golden on the whole test set once)."""
    from mnist_edge.demo.app import Demo

    return Demo(engine, str(mnist_dir))


def test_a_missing_tool_is_shown_not_hidden(tiny_run: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    from mnist_edge.demo import engine as engine_mod
    from mnist_edge.demo.app import results_html

    def no_tool(*_):
        raise MnistEdgeError("qemu-system-arm not found: install with scripts/setup.sh")

    monkeypatch.setitem(engine_mod.PREPARE, "qemu-m4", no_tool)
    eng = engine_mod.Engine(tiny_run, ["golden", "qemu-m4"])
    try:
        panel = eng.panel(np.zeros((28, 28), np.uint8) + 9)
        page = results_html(panel)
    finally:
        eng.close()
    assert [r.status for r in panel.rows] == ["ok", "missing"]
    assert "data-backend='qemu-m4'" in page and "qemu-system-arm not found" in page
    assert "bit-exact across 1 backend<" in page


def test_a_differing_backend_is_marked_in_red(engine) -> None:
    from mnist_edge.demo.app import results_html

    panel = engine.panel(np.full((28, 28), 40, np.uint8), trace=False)
    bad = panel.rows[1]
    bad.logits = list(bad.logits)
    bad.logits[3] += 1
    panel.exact_backends -= 1
    panel.first_difference = {"backend": bad.name, "logit": 3, "golden": panel.rows[0].logits[3],
                              "value": bad.logits[3]}
    page = results_html(panel)
    assert "differs from golden at logit 3" in page
    assert page.count("color:#c00") == 1


def test_bad_inputs_give_a_message_never_a_traceback(demo_app, tmp_path: Path) -> None:
    from PIL import Image

    demo = demo_app
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image at all")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"
    Image.new("L", (pp.MAX_SIDE + 1, 8)).save(huge)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    cases = [(demo.on_upload, str(not_image), "not an image"),
             (demo.on_upload, str(empty), "empty"),
             (demo.on_upload, str(huge), "at most"),
             (demo.on_upload, str(blank), "empty"),
             (demo.on_upload, None, "no file"),
             (demo.on_strokes, {"strokes": []}, "empty"),
             (demo.on_strokes, "{not json", "could not be read"),
             (demo.on_strokes, {"strokes": [[[1, 2]]], "width": 10 ** 6}, "outside"),
             (demo.on_test_image, "abc", "not a test input")]
    for fn, arg, words in cases:
        image, page, fmap = fn(arg)
        assert image is None and fmap is None
        assert "id='demo-message'" in page and words in page, (arg, page)


def test_upload_of_an_mnist_digit_and_the_test_set_browser(engine, demo_app, mnist_dir: Path,
                                                          tmp_path: Path) -> None:
    from PIL import Image

    demo = demo_app
    images, labels = data.load_mnist("test", mnist_dir)
    path = tmp_path / "digit.png"
    Image.fromarray(pp.upscale(images[0], 4)).save(path)       # white on black, as MNIST
    image, page, fmap = demo.on_upload(str(path))
    want = pp.preprocess(pp.upscale(images[0], 4))
    assert f"data-pixels='{bytes(want.reshape(-1)).hex()}'" in page
    assert image.shape[:2] == (28 * 8, 28 * 8) and fmap.ndim == 3
    _, page, _ = demo.on_test_image(5)
    assert f"label <b id='demo-label'>{labels[5]}</b>" in page
    assert f"data-pixels='{bytes(images[5].reshape(-1)).hex()}'" in page
    pred = golden.predict(golden.run_int8(engine.graph, images))
    assert demo.wrong == np.flatnonzero(pred != labels).tolist()


def test_report_has_the_feature_map_figure(tiny_run: Path) -> None:
    from mnist_edge.report_html import write_reports

    write_reports(tiny_run)
    page = (tiny_run / "report.html").read_text()
    assert "int8 feature maps" in page and (tiny_run / "feature_maps.png").exists()


# ------------------------------------------------------------------ the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses in LISTEN state on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


@contextlib.contextmanager
def serve(run: Path, backends: str, data_dir: Path | None = None):
    """`mnist-edge demo RUN` in a subprocess on a free port; yields (url, process, port)."""
    pytest.importorskip("gradio")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    if data_dir is not None:
        env["MNIST_EDGE_DATA"] = str(data_dir)
    log = run.parent / "demo-server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mnist_edge.cli", "demo", str(run),
                                 "--port", str(port), "--backends", backends],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    try:
        end = time.time() + 180
        while "serving on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.time() < end, log.read_text()
            time.sleep(0.5)
        import urllib.request

        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert time.time() < end, log.read_text()
                time.sleep(0.5)
        yield url, proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(tiny_run: Path, mnist_dir: Path):
    """`mnist-edge demo` of the tiny run; yields (url, process, port)."""
    # The host-side backends only: hls and qemu-m4 are checked through the engine above,
    # and leaving their subprocesses out keeps 110 requests within the time budget.
    with serve(tiny_run, SERVER_BACKENDS, mnist_dir) as running:
        yield running


def test_server_binds_to_localhost_and_prints_its_address(server, tiny_run: Path) -> None:
    url, proc, port = server
    assert f"serving on {url}" in (tiny_run.parent / "demo-server.log").read_text()
    # 0100007F is 127.0.0.1 in /proc/net/tcp's byte order; 0.0.0.0 or :: would be all hosts.
    assert _listening_addresses(port) == {"0100007F"}


def test_100_requests_are_exact_and_memory_stays_flat(server, tiny_run: Path) -> None:
    gradio_client = pytest.importorskip("gradio_client")
    url, proc, _ = server
    graph = qgraph.load_run(tiny_run)
    client = gradio_client.Client(url, verbose=False)
    rng = np.random.default_rng(5)

    def request() -> None:
        strokes = [[[int(rng.integers(30, 250)), int(rng.integers(30, 250))]
                    for _ in range(int(rng.integers(2, 8)))] for _ in range(2)]
        answer = json.loads(client.predict(json.dumps({"strokes": strokes}),
                                           api_name="/predict_strokes"))
        pixels = pp.preprocess_strokes(strokes)
        assert answer["input"] == bytes(pixels.reshape(-1)).hex()
        reference = golden.run_int8(graph, pixels[None])[0].tolist()
        ran = [b for b in answer["backends"] if b["status"] == "ok"]
        assert len(ran) == 4 and all(b["logits"] == reference for b in ran), answer
        assert answer["exact_backends"] == len(ran)

    for _ in range(10):           # warm-up: first-call allocations, caches, import of lazies
        request()
    before = _rss_kb(proc.pid)
    for _ in range(100):
        request()
    growth_mb = (_rss_kb(proc.pid) - before) / 1024
    print(f"demo server RSS growth over 100 requests: {growth_mb:.1f} MB")
    # A leak of each request's panel (its input, traces, logits and the subprocess
    # buffers, >= 200 KB) would add >= 20 MB over 100 requests; allocator noise is a few MB.
    assert growth_mb < 20


def test_draw_on_the_gradio_page_in_chromium(server, tiny_run: Path, tmp_path: Path) -> None:
    need("chromium")
    need("chromedriver")
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By

    from mnist_edge.targets.browser import chromium

    url, _, _ = server
    graph = qgraph.load_run(tiny_run)
    driver = chromium(1100, 1400)
    try:
        driver.get(url)
        wait_for(lambda: driver.execute_script(
            "return !!window.mnistEdgeDemo && !!document.querySelector('#me-canvas')"), 60)
        canvas = driver.find_element(By.ID, "me-canvas")
        previous = None
        for strokes in (SEVEN, FOUR):
            wait_for(lambda: driver.find_elements(By.ID, "demo-clear"))[0].click()
            wait_for(lambda: driver.find_elements(By.ID, "demo-message"))
            canvas = driver.find_element(By.ID, "me-canvas")
            draw(driver, canvas, strokes)
            count = str(len(strokes))

            def shown(previous=previous, count=count):
                el = driver.find_elements(By.ID, "demo-input")
                if not el or el[0].get_attribute("data-strokes") != count:
                    return None
                px = el[0].get_attribute("data-pixels")
                return px if px != previous else None

            hexed = wait_for(shown, 60)
            previous = hexed
            recorded = driver.execute_script("return window.mnistEdgeDemo.strokes")
            pixels = np.frombuffer(bytes.fromhex(hexed), np.uint8).reshape(1, 28, 28)
            np.testing.assert_array_equal(pixels[0], pp.preprocess_strokes(recorded))
            reference = golden.run_int8(graph, pixels)[0].tolist()
            rows = driver.find_elements(By.CSS_SELECTOR, "#demo-backends tr[data-backend]")
            ran = 0
            for row in rows:
                cells = row.find_elements(By.CSS_SELECTOR, "td[data-logit]")
                if cells:
                    assert [int(c.text) for c in cells] == reference, row.text
                    ran += 1
            assert ran >= 2
            assert int(driver.find_element(By.ID, "demo-class").text) == int(np.argmax(reference))
            assert "bit-exact across" in driver.find_element(By.ID, "demo-exact").text
        time.sleep(0.5)   # let the feature-map image paint before the screenshot
        save_screenshot(driver, tmp_path, "demo_page.png")
    finally:
        driver.quit()


# ------------------------------------------------------------------ models of other inputs
OTHER_BACKENDS = ["golden", "onnxruntime", "c", "hls"]


def _other_run(tmp_path_factory: pytest.TempPathFactory, layout: str) -> Path:
    from mnist_edge.testing import random_qgraph

    graph = random_qgraph(1, layout)
    run = tmp_path_factory.mktemp("runs") / layout
    qgraph.save(graph, run / graph.name)
    return run


@pytest.fixture(scope="module")
def other_demos(tmp_path_factory: pytest.TempPathFactory):
    """Demos of a 1x32x32 model (5 classes), a 3x20x18 one (7) and a 1x49x10 int8 features
    one (12, with an .npz of float features and labels as --data)."""
    from mnist_edge.demo.app import Demo
    from mnist_edge.demo.engine import Engine

    demos, engines = {}, []
    for layout in ("grey32", "rgb", "features"):
        run = _other_run(tmp_path_factory, layout)
        engine = Engine(run, OTHER_BACKENDS)
        engines.append(engine)
        data_arg = None
        if layout == "features":
            rng = np.random.default_rng(3)
            data_arg = str(run / "features.npz")
            np.savez(data_arg, x=rng.standard_normal((9, 1, 49, 10)).astype(np.float32) * 0.5,
                     y=rng.integers(0, 12, 9))
        demos[layout] = Demo(engine, data_arg)
    yield demos
    for engine in engines:
        engine.close()


def shown(page: str) -> tuple[np.ndarray, dict[str, list[int]]]:
    """The input bytes and every backend's logits, read from the results HTML."""
    import re

    hexed = re.search(r"data-pixels='([0-9a-f]*)'", page).group(1)
    rows = {}
    for name, body in re.findall(r"<tr data-backend='([^']+)'>(.*?)</tr>", page, re.S):
        rows[name] = [int(v) for v in re.findall(r"<td data-logit='\d+'[^>]*>(-?\d+)</td>",
                                                 body)]
    return np.frombuffer(bytes.fromhex(hexed), np.uint8), rows


def assert_exact(demo, page: str, want: np.ndarray) -> None:
    """The page's input is `want` (its bytes) and every backend that ran shows golden's
    logits for it."""
    graph = demo.engine.graph
    got, rows = shown(page)
    np.testing.assert_array_equal(got, np.ascontiguousarray(want).view(np.uint8).reshape(-1))
    x = got.view(graph.input_dtype).reshape(1, *graph.input.shape)
    reference = golden.run_int8(graph, x)[0].tolist()
    assert len(reference) == graph.output.size
    ran = [name for name in demo.engine.backends if name in demo.engine.runners]
    assert sorted(rows) == sorted(ran) and len(ran) >= 3, rows
    for name in ran:
        assert rows[name] == reference, name
    assert "bit-exact across" in page


def test_a_32x32_model_is_drawn_and_uploaded_at_its_own_size(other_demos,
                                                             tmp_path: Path) -> None:
    from PIL import Image

    demo = other_demos["grey32"]
    assert demo.tabs == ["Draw", "Upload", "Test data"]
    assert "hls" in demo.engine.runners        # one channel of uint8 pixels: HLS takes it
    for strokes in (SEVEN, FOUR):
        payload = {"strokes": [[[140 + x, 140 + y] for x, y in s] for s in strokes]}
        image, page, fmap = demo.on_strokes(payload)
        want = pp.preprocess_strokes(payload["strokes"], size=(32, 32))
        assert_exact(demo, page, want)
        assert image.shape == (32 * 7, 32 * 7) and fmap.ndim == 3
        answer = json.loads(demo.api_strokes(json.dumps(payload)))
        assert answer["input"] == bytes(want.reshape(-1)).hex()
    paper = np.full((50, 30, 3), 230, np.uint8)
    paper[5:45, 12:17] = 20
    path = tmp_path / "one.png"
    Image.fromarray(paper).save(path)
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    _, page, _ = demo.on_upload(str(path))                  # as a drawing, by default
    assert_exact(demo, page, pp.preprocess(pp.ink_from_rgba(rgba), (32, 32)))
    _, page, _ = demo.on_upload(str(path), "whole")
    assert_exact(demo, page, pp.image_from_rgba(rgba, 1, (32, 32))[..., 0])
    _, page, _ = demo.on_test_image(2)                       # seeded random: no MNIST here
    assert "seeded random" in demo.source and demo.labels is None
    assert_exact(demo, page, demo.inputs[2])


def test_an_rgb_model_takes_uploads_whole(other_demos, tmp_path: Path) -> None:
    from PIL import Image

    demo = other_demos["rgb"]
    assert demo.tabs == ["Upload", "Test data"]
    assert "hls" in demo.engine.runners       # HLS streams RGB pixels HWC, as the C takes them
    rng = np.random.default_rng(8)
    photo = rng.integers(0, 256, (33, 41, 3)).astype(np.uint8)
    photo[:, :10, 2] = 255
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    image, page, fmap = demo.on_upload(str(path))
    want = pp.image_from_rgba(np.asarray(Image.open(path).convert("RGBA")), 3, (20, 18))
    assert_exact(demo, page, want.transpose(2, 0, 1))
    assert image.shape == (20 * 11, 18 * 11, 3) and fmap.ndim == 3
    for fn, arg in ((demo.on_strokes, {"strokes": [[[5, 5], [50, 50]]]}),
                    (demo.on_upload, None)):
        image, page, _ = fn(arg)
        assert image is None and "id='demo-message'" in page
    assert "reads 3 channels" in demo.on_strokes({"strokes": [[[5, 5]]]})[1]
    assert "drawing" in demo.on_upload(str(path), "drawing")[1]


def test_a_features_model_shows_only_its_test_data(other_demos, tmp_path: Path) -> None:
    from mnist_edge import inputs as input_data

    demo = other_demos["features"]
    assert demo.tabs == ["Test data"]
    assert demo.labels is not None and len(demo.inputs) == 9
    for i in (0, 4, 8):
        image, page, fmap = demo.on_test_image(i)
        assert image is None and fmap.ndim == 3      # no picture of features; the maps
        q = input_data.graph_input(demo.engine.graph, demo.inputs[i][None])[0]
        assert_exact(demo, page, q)
        assert f"label <b id='demo-label'>{demo.labels[i]}</b>" in page
    for fn, arg in ((demo.on_strokes, {"strokes": [[[5, 5]]]}),
                    (demo.on_upload, str(tmp_path / "x.png"))):
        _, page, _ = fn(arg)
        assert "takes [N,1,49,10] float features, not an image" in page
    gr = pytest.importorskip("gradio")
    from mnist_edge.demo.app import build_app

    blocks = build_app(demo)
    tabs = [b.label for b in blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Test data"]
    assert not [b for b in blocks.blocks.values() if isinstance(b, (gr.File, gr.HTML))
                and getattr(b, "elem_id", "") in ("demo-upload", "demo-canvas")]


def demo_rows(driver) -> dict[str, list[int]]:
    from selenium.webdriver.common.by import By

    rows = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "#demo-backends tr[data-backend]"):
        cells = row.find_elements(By.CSS_SELECTOR, "td[data-logit]")
        if cells:
            rows[row.get_attribute("data-backend")] = [int(c.text) for c in cells]
    return rows


def test_other_models_on_the_gradio_page_in_chromium(tmp_path_factory: pytest.TempPathFactory,
                                                     tmp_path: Path) -> None:
    """A 1x32x32 model drawn, a 3x20x18 model uploaded, through the served page."""
    need("chromium")
    need("chromedriver")
    pytest.importorskip("selenium")
    from PIL import Image
    from selenium.webdriver.common.by import By

    from mnist_edge.targets.browser import chromium

    driver = chromium(1100, 1400)
    try:
        run = _other_run(tmp_path_factory, "grey32")
        graph = qgraph.load_run(run)
        with serve(run, "golden,c") as (url, _, _):
            driver.get(url)
            wait_for(lambda: driver.execute_script(
                "return !!window.mnistEdgeDemo && !!document.querySelector('#me-canvas')"), 60)
            draw(driver, driver.find_element(By.ID, "me-canvas"), SEVEN)
            el = wait_for(lambda: driver.find_elements(By.ID, "demo-input"), 60)[0]
            recorded = driver.execute_script("return window.mnistEdgeDemo.strokes")
            pixels = np.frombuffer(bytes.fromhex(el.get_attribute("data-pixels")), np.uint8)
            want = pp.preprocess_strokes(recorded, size=(32, 32))
            np.testing.assert_array_equal(pixels.reshape(32, 32), want)
            reference = golden.run_int8(graph, want[None])[0].tolist()
            assert demo_rows(driver) == {"golden": reference, "c": reference}
        run = _other_run(tmp_path_factory, "rgb")
        graph = qgraph.load_run(run)
        with serve(run, "golden,c") as (url, _, _):
            driver.get(url)
            field = wait_for(lambda: driver.find_elements(
                By.CSS_SELECTOR, "#demo-upload input[type=file]"), 60)[0]
            assert not driver.find_elements(By.ID, "me-canvas")
            photo = np.random.default_rng(2).integers(0, 256, (31, 26, 3)).astype(np.uint8)
            path = tmp_path / "photo.png"
            Image.fromarray(photo).save(path)
            field.send_keys(str(path))
            el = wait_for(lambda: driver.find_elements(By.ID, "demo-input"), 60)[0]
            pixels = np.frombuffer(bytes.fromhex(el.get_attribute("data-pixels")), np.uint8)
            want = pp.image_from_rgba(np.asarray(Image.open(path).convert("RGBA")), 3,
                                      (20, 18)).transpose(2, 0, 1)
            np.testing.assert_array_equal(pixels.reshape(3, 20, 18), want)
            reference = golden.run_int8(graph, want[None])[0].tolist()
            assert demo_rows(driver) == {"golden": reference, "c": reference}
    finally:
        driver.quit()
