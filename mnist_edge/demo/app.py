"""`mnist-edge demo RUN`: draw a digit, see every backend's int8 logits side by side.

A Gradio page (bound to 127.0.0.1 unless --host says otherwise) with a drawing canvas
whose strokes are rasterized in Python by the same integer algorithm as the static
page (demo/preprocess.py), an image upload, the MNIST-style 28x28 input, the logits
of every backend the machine can run (built once at start-up by demo.engine), the
float model's probabilities, the int8 feature maps, and a test-set browser.

Gradio is imported only here, and only when the command runs: it is slow to import.
"""

from __future__ import annotations

import html
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MnistEdgeError
from ..paths import TEMPLATES_DIR
from . import preprocess as pp
from .engine import DEMO_BACKENDS, Engine, Panel

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = pp.MAX_SIDE * pp.MAX_SIDE
PREVIEW_SCALE = 8


# ------------------------------------------------------------------ inputs -> ink
def load_upload(path: str | Path) -> np.ndarray:
    """An uploaded file -> ink bitmap; every bad upload becomes a one-line MnistEdgeError."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise MnistEdgeError("the uploaded file is empty")
    if size > MAX_UPLOAD_BYTES:
        raise MnistEdgeError(f"the uploaded file is {size / 1e6:.1f} MB; the limit is "
                             f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w > pp.MAX_SIDE or h > pp.MAX_SIDE:
                raise MnistEdgeError(f"the image is {w}x{h} pixels; at most {pp.MAX_SIDE} "
                                     "a side")
            img.load()
            rgba = np.asarray(img.convert("RGBA"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise MnistEdgeError("the uploaded file is not an image this demo can read "
                             "(PNG, JPEG, GIF, BMP, WebP)") from None
    return pp.ink_from_rgba(rgba)


def parse_strokes(payload: Any) -> tuple[list, int, int]:
    """{"strokes": [[[x, y], ...], ...], "width": W, "height": H} (dict or JSON text)."""
    try:
        data = json.loads(payload) if isinstance(payload, str) else dict(payload or {})
        width = int(data.get("width", pp.CANVAS))
        height = int(data.get("height", pp.CANVAS))
        strokes = [[(int(p[0]), int(p[1])) for p in s] for s in data.get("strokes", [])]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise MnistEdgeError("the drawing could not be read (expected strokes of [x, y] "
                             "integer points)") from None
    if sum(len(s) for s in strokes) > 100_000:
        raise MnistEdgeError("the drawing has too many points")
    return strokes, width, height


# ------------------------------------------------------------------ rendering
def _fmt_ms(ms: float | None) -> str:
    return "" if ms is None else (f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms")


def results_html(panel: Panel, label: int | None = None, strokes: int | None = None) -> str:
    """The side-by-side table: one row per backend, differing logits in red.

    The hidden #demo-input carries the 28x28 bytes (hex) and the number of strokes they
    were made from, for tests and scripts reading the page."""
    esc = html.escape
    ref = panel.golden
    ran = [r for r in panel.rows if r.logits is not None]
    classes = len(ref.logits or [])
    if panel.first_difference is None:
        mark = (f"<div id='demo-exact' class='exact'>&#10004; bit-exact across {len(ran)} "
                f"backend{'s' if len(ran) != 1 else ''}</div>")
    else:
        d = panel.first_difference
        mark = (f"<div id='demo-exact' class='differ'>&#10008; {esc(d['backend'])} differs "
                f"from golden at logit {d['logit']}: golden {d['golden']}, "
                f"{esc(d['backend'])} {d['value']} ({panel.exact_backends} of {len(ran)} "
                "exact)</div>")
    truth = "" if label is None else f" &middot; label <b id='demo-label'>{label}</b>"
    parts = [
        "<div class='me-results'>",
        f"<div class='me-class'>class <span id='demo-class'>{ref.predicted}</span>{truth}</div>",
        mark,
        "<table id='demo-backends'><tr><th>backend</th><th>class</th>"
        + "".join(f"<th>{c}</th>" for c in range(classes)) + "<th>time</th></tr>",
    ]
    for row in panel.rows:
        if row.logits is None:
            parts.append(f"<tr data-backend='{esc(row.name)}' class='{row.status}'>"
                         f"<td>{esc(row.name)}</td><td colspan='{classes + 2}'>"
                         f"{esc(row.status)}: {esc(row.message)}</td></tr>")
            continue
        cells = []
        for c, v in enumerate(row.logits):
            bad = v != ref.logits[c]
            style = " style='color:#c00;font-weight:bold'" if bad else ""
            cells.append(f"<td data-logit='{c}'{style}>{v}</td>")
        parts.append(f"<tr data-backend='{esc(row.name)}'><td>{esc(row.name)}</td>"
                     f"<td data-class>{row.predicted}</td>{''.join(cells)}"
                     f"<td>{_fmt_ms(row.milliseconds)}</td></tr>")
    probs = [("int8 probability (golden)", ref.probabilities)]
    if panel.float_probabilities is not None:
        probs.append(("float model probability", panel.float_probabilities))
    for title, values in probs:
        if values is None:
            continue
        parts.append(f"<tr class='prob'><td>{esc(title)}</td><td></td>"
                     + "".join(f"<td>{100 * v:.1f}%</td>" for v in values) + "<td></td></tr>")
    if panel.float_probabilities is None:
        parts.append(f"<tr class='prob'><td>float model</td><td colspan='{classes + 2}'>"
                     "missing: no folded float graph in this run</td></tr>")
    parts.append("</table>")
    hexed = bytes(np.asarray(panel.pixels, np.uint8).reshape(-1)).hex()
    count = "" if strokes is None else f" data-strokes='{strokes}'"
    parts.append(f"<div id='demo-input' data-pixels='{hexed}'{count} hidden></div></div>")
    return "\n".join(parts)


def message_html(text: str) -> str:
    return f"<div id='demo-message' class='me-message'>{html.escape(text)}</div>"


def preview(pixels: np.ndarray) -> np.ndarray:
    """The 28x28 input, upscaled, dark ink on white (what the model sees)."""
    return 255 - pp.upscale(pixels, PREVIEW_SCALE)


def panel_json(panel: Panel) -> dict[str, Any]:
    return {
        "input": bytes(np.asarray(panel.pixels, np.uint8).reshape(-1)).hex(),
        "predicted": panel.golden.predicted,
        "exact_backends": panel.exact_backends,
        "first_difference": panel.first_difference,
        "float_probabilities": panel.float_probabilities,
        "backends": [{"name": r.name, "status": r.status, "message": r.message,
                      "logits": r.logits, "predicted": r.predicted, "ms": r.milliseconds}
                     for r in panel.rows],
    }


# ------------------------------------------------------------------ the app
class Demo:
    """The page's callbacks, over one Engine (plain Python: testable without Gradio)."""

    def __init__(self, engine: Engine, data_dir: str | None = None) -> None:
        self.engine = engine
        self.images: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.wrong: list[int] = []
        self.test_note = ""
        try:
            from .. import data, golden

            # Only MNIST files already here: the demo never downloads anything.
            local = data.resolve_data_dir(data_dir, download=False)
            self.images, self.labels = data.load_mnist("test", local)
            pred = golden.predict(golden.run_int8(engine.graph, self.images))
            self.wrong = [int(i) for i in np.flatnonzero(pred != self.labels)]
        except MnistEdgeError as exc:
            self.test_note = f"test set unavailable: {exc}"

    def _show(self, pixels: np.ndarray, label: int | None = None, strokes: int | None = None):
        from .features import feature_figure, figure_rgb

        panel = self.engine.panel(pixels)
        fmap = figure_rgb(feature_figure(self.engine.graph, panel.pixels, panel.trace))
        return preview(panel.pixels), results_html(panel, label, strokes), fmap

    def _guard(self, fn, *args):
        """Every error becomes a message on the page (never a traceback)."""
        try:
            return fn(*args)
        except MnistEdgeError as exc:
            return None, message_html(str(exc)), None
        except Exception as exc:  # noqa: BLE001 - the page must show something, not crash
            return None, message_html(f"internal error: {type(exc).__name__}: {exc}"), None

    def on_strokes(self, payload: Any):
        def run():
            strokes, w, h = parse_strokes(payload)
            return self._show(pp.preprocess(pp.rasterize(strokes, w, h)), strokes=len(strokes))
        return self._guard(run)

    def on_upload(self, path: str | None):
        def run():
            if not path:
                raise MnistEdgeError("no file uploaded")
            return self._show(pp.preprocess(load_upload(path)))
        return self._guard(run)

    def on_test_image(self, index: Any):
        def run():
            if self.images is None:
                raise MnistEdgeError(self.test_note)
            try:
                i = int(str(index).split()[0])
            except (ValueError, IndexError):
                raise MnistEdgeError(f"not a test image index: {index!r}") from None
            if not 0 <= i < len(self.images):
                raise MnistEdgeError(f"test image index {i} is outside 0..{len(self.images) - 1}")
            return self._show(self.images[i], int(self.labels[i]))
        return self._guard(run)

    def api_strokes(self, payload: str) -> str:
        """JSON in, JSON out: the strokes -> every backend's logits (for scripts and tests)."""
        try:
            strokes, w, h = parse_strokes(payload)
            panel = self.engine.panel(pp.preprocess(pp.rasterize(strokes, w, h)), trace=False)
            return json.dumps(panel_json(panel))
        except MnistEdgeError as exc:
            return json.dumps({"error": str(exc)})


CSS = """
.me-class { font-size: 28px; margin: 4px 0; }
#demo-class { font-weight: bold; font-size: 40px; }
.exact { color: #070; font-weight: bold; }
.differ { color: #c00; font-weight: bold; }
#demo-backends td, #demo-backends th { padding: 1px 6px; text-align: right; }
#demo-backends tr.missing td, #demo-backends tr.error td { color: #888; }
.me-message { color: #c00; font-weight: bold; }
"""

CANVAS_HTML = (f"<canvas id='me-canvas' width='{pp.CANVAS}' height='{pp.CANVAS}' "
               "style='border:1px solid #888;touch-action:none;cursor:crosshair;"
               "background:#fff'></canvas>")

# Pointer events (mouse, touch, pen) -> strokes at integer canvas coordinates. The
# canvas shows the same capsules Python rasterizes; each finished stroke sends the
# whole stroke list to the server.
CANVAS_JS = """
const canvas = element.querySelector('#me-canvas');
const P = MnistPreprocess;
const W = canvas.width, H = canvas.height, R = P.brushRadius(W, H);
const st = { strokes: [], current: null, ink: new Uint8Array(W * H) };
window.mnistEdgeDemo = st;
function paint() {
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(W, H);
  for (let i = 0; i < st.ink.length; i++) {
    const v = 255 - st.ink[i];
    img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
function at(e) {
  const r = canvas.getBoundingClientRect();
  return [Math.floor((e.clientX - r.left) * W / r.width),
          Math.floor((e.clientY - r.top) * H / r.height)];
}
function add(p) {
  const s = st.current;
  const prev = s.length ? s[s.length - 1] : p;
  s.push(p);
  P.drawStroke(st.ink, W, H, [prev, p], R);
  paint();
}
st.clear = () => { st.strokes = []; st.current = null; st.ink = new Uint8Array(W * H); paint(); };
canvas.addEventListener('pointerdown', (e) => {
  e.preventDefault(); canvas.setPointerCapture(e.pointerId);
  st.current = []; st.strokes.push(st.current); add(at(e));
});
canvas.addEventListener('pointermove', (e) => {
  if (st.current === null) return; e.preventDefault(); add(at(e));
});
const end = (e) => {
  if (st.current === null) return;
  e.preventDefault(); st.current = null;
  trigger('click', { strokes: st.strokes, width: W, height: H });
};
canvas.addEventListener('pointerup', end);
canvas.addEventListener('pointercancel', end);
paint();
"""


def build_app(demo: Demo):
    import gradio as gr

    head = f"<script>{(TEMPLATES_DIR / 'web' / 'preprocess.js').read_text()}</script>"
    graph = demo.engine.graph
    missing = ", ".join(f"{k} ({v})" for k, v in demo.engine.missing.items())
    with gr.Blocks(title=f"mnist-edge: {graph.name}", analytics_enabled=False) as blocks:
        gr.Markdown(f"## mnist-edge demo: {graph.name}\nDraw a digit: it is preprocessed "
                    "as MNIST was (ink box scaled to 20 px, centre of mass in 28x28) and run "
                    "through every backend this machine can run, bit for bit."
                    + (f"\n\nMissing here: {missing}." if missing else ""))
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("Draw"):
                    canvas = gr.HTML(CANVAS_HTML, js_on_load=CANVAS_JS, head=head,
                                     elem_id="demo-canvas")
                    clear = gr.Button("Clear", elem_id="demo-clear")
                with gr.Tab("Upload"):
                    upload = gr.File(label="an image of a digit", file_count="single",
                                     type="filepath", elem_id="demo-upload")
                with gr.Tab("Test set"):
                    count = 0 if demo.images is None else len(demo.images)
                    index = gr.Number(label=f"test image index (0..{count - 1})", value=0,
                                      precision=0, elem_id="demo-index")
                    show = gr.Button("Show", elem_id="demo-show")
                    wrong = gr.Dropdown(
                        label=f"misclassified by the int8 model ({len(demo.wrong)})",
                        choices=[f"{i} (label {int(demo.labels[i])})" for i in demo.wrong]
                        if demo.labels is not None else [], elem_id="demo-wrong")
                    if demo.test_note:
                        gr.Markdown(demo.test_note)
            with gr.Column(scale=1):
                pixels = gr.Image(label="model input (28x28)", interactive=False,
                                  height=240, elem_id="demo-pixels")
        results = gr.HTML(message_html("draw a digit"), elem_id="demo-results")
        fmap = gr.Image(label="int8 feature maps (golden, dequantized)", interactive=False,
                        elem_id="demo-features")
        outputs = [pixels, results, fmap]

        def strokes_event(evt):
            return demo.on_strokes(getattr(evt, "_data", None))
        # A real annotation object (this module's are strings): Gradio finds EventData by it.
        strokes_event.__annotations__ = {"evt": gr.EventData}

        # always_last: a stroke finished while the previous one is still being answered is
        # not dropped; the page ends up showing the whole drawing.
        canvas.click(strokes_event, None, outputs, api_visibility="private",
                     trigger_mode="always_last")
        clear.click(lambda: (None, message_html("draw a digit"), None), None, outputs,
                    js="() => { window.mnistEdgeDemo && window.mnistEdgeDemo.clear(); }",
                    api_visibility="private")
        upload.upload(demo.on_upload, upload, outputs, api_visibility="private")
        show.click(demo.on_test_image, index, outputs, api_visibility="private")
        wrong.change(demo.on_test_image, wrong, outputs, api_visibility="private")
        gr.api(demo.api_strokes, api_name="predict_strokes", queue=False)
    return blocks


def demo_command(args: Any) -> int:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # never phone home
    os.environ.setdefault("GRADIO_SERVER_NAME", args.host)
    backends = ([b for b in args.backends.split(",") if b] if args.backends
                else list(DEMO_BACKENDS))
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise MnistEdgeError("gradio not found: pip install 'mnist-edge[demo]' "
                             "(scripts/setup.sh installs it)") from None
    print(f"mnist-edge demo: building {', '.join(backends)} once", flush=True)
    engine = Engine(Path(args.run), backends, log=lambda s: print(s, flush=True))
    try:
        demo = Demo(engine, args.data)
        blocks = build_app(demo)
        blocks.queue(default_concurrency_limit=1)
        try:
            blocks.launch(server_name=args.host, server_port=args.port, css=CSS,
                          max_file_size=MAX_UPLOAD_BYTES, show_error=False, quiet=True,
                          footer_links=[], ssr_mode=False, prevent_thread_lock=True)
        except OSError as exc:
            raise MnistEdgeError(f"cannot serve on {args.host}:{args.port} ({exc}); "
                                 "pass another --port or --host") from None
        print(f"mnist-edge demo: serving on http://{args.host}:{args.port}/ (Ctrl-C stops)",
              flush=True)
        # SIGTERM ends the demo like Ctrl-C, so the temporary builds are removed.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            blocks.block_thread()
        finally:
            blocks.close()
    finally:
        engine.close()
    return 0

