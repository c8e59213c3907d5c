"""`mnist-edge demo RUN`: draw a digit, see every backend's int8 logits side by side.

A Gradio page (bound to 127.0.0.1 unless --host says otherwise) with, depending on what
the model takes:

- one channel of uint8 pixels (any H x W): a drawing canvas whose strokes are rasterized
  in Python by the same integer algorithm as the static page (demo/preprocess.py) and
  preprocessed MNIST-style to the model's own H x W;
- grey or RGB pixels: an image upload, read as a drawing (one channel) or taken whole
  (converted to grey or RGB, resized to H x W by an integer area filter);
- anything, features and vectors included: the test data (`--data`: MNIST, an .npz or an
  image folder; else MNIST for a 1x28x28 model, seeded random inputs for any other);

then the model's input, the logits of every backend the machine can run (built once at
start-up by demo.engine), the float model's probabilities and the int8 feature maps.
Classes are shown by index.

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
PREVIEW_SIDE = 224   # the preview of the model input, about this many pixels a side


# ------------------------------------------------------------------ inputs -> ink
def load_upload(path: str | Path) -> np.ndarray:
    """An uploaded file -> its RGBA pixels uint8 [h, w, 4]; every bad upload becomes a
    one-line MnistEdgeError."""
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
    return rgba


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

    The hidden #demo-input carries the input's bytes (hex, the QGraph's layout: C,H,W or
    K) and the number of strokes they were made from, for tests and scripts reading the
    page."""
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


def preview(pixels: np.ndarray) -> np.ndarray | None:
    """The model's input as it sees it, upscaled to about 224 px: grey ink dark on white,
    RGB as it is; None for features and vectors (the feature maps show those)."""
    px = np.asarray(pixels)
    if px.dtype != np.uint8 or px.ndim != 3 or px.shape[0] not in (1, 3):
        return None
    scale = max(1, PREVIEW_SIDE // max(px.shape[1:]))
    if px.shape[0] == 1:
        return 255 - pp.upscale(px[0], scale)
    return pp.upscale(px.transpose(1, 2, 0), scale)


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
UPLOAD_MODES = {"drawing": "read as a drawing (MNIST-style)",
                "whole": "the whole image (area resize)"}
RANDOM_INPUTS = 100


class Demo:
    """The page's callbacks, over one Engine (plain Python: testable without Gradio)."""

    def __init__(self, engine: Engine, data_dir: str | None = None) -> None:
        from .. import inputs as input_data

        self.engine = engine
        graph = engine.graph
        self.spec = input_data.spec_of(graph)
        self.image = pp.image_shape(graph)           # (C, H, W) of an image model, or None
        self.can_draw = self.image is not None and self.image[0] == 1
        self.inputs: np.ndarray | None = None        # the test data, as the loaders give it
        self.labels: np.ndarray | None = None
        self.wrong: list[int] = []
        self.test_note = ""
        self.source = ""
        try:
            self._load_test_data(data_dir)
        except MnistEdgeError as exc:
            self.test_note = f"test data unavailable: {exc}"

    def _load_test_data(self, data_dir: str | None) -> None:
        from .. import data, golden
        from .. import inputs as input_data

        graph = self.engine.graph
        if input_data._source(data_dir, self.spec) == "mnist":
            if not input_data._mnist_shaped(self.spec) and data_dir is None:
                self.inputs = input_data.synthetic(self.spec, RANDOM_INPUTS)
                self.source = (f"{RANDOM_INPUTS} seeded random inputs (the model does not "
                               "read MNIST; pass --data for real ones)")
                return
            # Only MNIST files already here: the demo never downloads anything.
            data_dir = str(data.resolve_data_dir(data_dir, download=False))
        ds = input_data.load(data_dir, self.spec, "test")
        self.inputs, self.labels, self.source = ds.x, ds.y, ds.source
        if self.labels is not None:
            pred = golden.predict(golden.run_int8(graph, input_data.graph_input(graph, ds.x)))
            self.wrong = [int(i) for i in np.flatnonzero(pred != self.labels)]

    @property
    def images(self) -> np.ndarray | None:   # the name before other inputs were taken
        return self.inputs

    @property
    def tabs(self) -> list[str]:
        """The page's input tabs, for this model."""
        return (["Draw"] if self.can_draw else []) + (["Upload"] if self.image else []) + [
            "Test data"]

    def size(self) -> tuple[int, int]:
        if self.image is None:
            raise MnistEdgeError(f"model {self.engine.graph.name} takes "
                                 f"{self.spec.describe()}, not an image: use the test data")
        return self.image[1], self.image[2]

    def drawing(self, strokes, width: int, height: int) -> np.ndarray:
        """Strokes -> the model's input [1, H, W], MNIST-style at its own H x W."""
        size = self.size()
        if not self.can_draw:
            raise MnistEdgeError(f"model {self.engine.graph.name} reads {self.image[0]} "
                                 "channels: a drawing gives one; upload an image")
        return pp.preprocess(pp.rasterize(strokes, width, height), size)[None]

    def from_upload(self, path: str, mode: str | None = None) -> np.ndarray:
        """An uploaded file -> the model's input [C, H, W]: read as a drawing (one channel,
        the default there) or taken whole (grey or RGB, integer area resize)."""
        size = self.size()
        mode = mode or ("drawing" if self.can_draw else "whole")
        if mode not in UPLOAD_MODES or (mode == "drawing" and not self.can_draw):
            raise MnistEdgeError(f"upload mode {mode!r}: choose "
                                 + ("drawing or whole" if self.can_draw else "whole"))
        rgba = load_upload(path)
        if mode == "drawing":
            return pp.preprocess(pp.ink_from_rgba(rgba), size)[None]
        return pp.image_from_rgba(rgba, self.image[0], size).transpose(2, 0, 1)

    def _show(self, x: np.ndarray, label: int | None = None, strokes: int | None = None,
              features: np.ndarray | None = None):
        from .features import feature_figure, figure_rgb

        panel = self.engine.panel(x, features=features)
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
            return self._show(self.drawing(strokes, w, h), strokes=len(strokes))
        return self._guard(run)

    def on_upload(self, path: str | None, mode: str | None = None):
        def run():
            if not path:
                raise MnistEdgeError("no file uploaded")
            return self._show(self.from_upload(path, mode))
        return self._guard(run)

    def on_test_image(self, index: Any):
        def run():
            from .. import inputs as input_data

            if self.inputs is None:
                raise MnistEdgeError(self.test_note)
            try:
                i = int(str(index).split()[0])
            except (ValueError, IndexError):
                raise MnistEdgeError(f"not a test input index: {index!r}") from None
            if not 0 <= i < len(self.inputs):
                raise MnistEdgeError(f"test input index {i} is outside "
                                     f"0..{len(self.inputs) - 1}")
            x = self.inputs[i]
            q = input_data.graph_input(self.engine.graph, x[None])[0]
            features = x if self.spec.kind == "features" else None
            label = None if self.labels is None else int(self.labels[i])
            return self._show(q, label, features=features)
        return self._guard(run)

    def api_strokes(self, payload: str) -> str:
        """JSON in, JSON out: the strokes -> every backend's logits (for scripts and tests)."""
        try:
            strokes, w, h = parse_strokes(payload)
            panel = self.engine.panel(self.drawing(strokes, w, h), trace=False)
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

    from ..backends.c import input_doc

    head = f"<script>{(TEMPLATES_DIR / 'web' / 'preprocess.js').read_text()}</script>"
    graph = demo.engine.graph
    missing = ", ".join(f"{k} ({v})" for k, v in demo.engine.missing.items())
    if demo.can_draw:
        h, w = demo.size()
        intro = (f"Draw a digit: it is preprocessed as MNIST was (ink box scaled to 20/28 of "
                 f"each side, centre of mass in the middle of the model's {h}x{w}) and run "
                 "through every backend this machine can run, bit for bit. Or upload an "
                 "image, or pick a test input.")
    elif demo.image is not None:
        intro = ("Upload an image: it is converted to RGB and resized to the model's "
                 f"{demo.image[1]}x{demo.image[2]} by an integer area filter, then run "
                 "through every backend this machine can run, bit for bit. Or pick a test "
                 "input.")
    else:
        intro = ("This model takes features, not an image: pick a test input and see it "
                 "run through every backend this machine can run, bit for bit.")
    with gr.Blocks(title=f"mnist-edge: {graph.name}", analytics_enabled=False) as blocks:
        gr.Markdown(f"## mnist-edge demo: {graph.name}\n{intro}\n\nModel input: "
                    f"{input_doc(graph)} (as the C reads it). Classes are shown by index."
                    + (f"\n\nMissing here: {missing}." if missing else ""))
        with gr.Row():
            with gr.Column(scale=1):
                canvas = clear = upload = mode = None
                if demo.can_draw:
                    with gr.Tab("Draw"):
                        canvas = gr.HTML(CANVAS_HTML, js_on_load=CANVAS_JS, head=head,
                                         elem_id="demo-canvas")
                        clear = gr.Button("Clear", elem_id="demo-clear")
                if demo.image is not None:
                    with gr.Tab("Upload"):
                        upload = gr.File(label="an image", file_count="single",
                                         type="filepath", elem_id="demo-upload")
                        if demo.can_draw:
                            mode = gr.Radio([(v, k) for k, v in UPLOAD_MODES.items()],
                                            value="drawing", label="read the image",
                                            elem_id="demo-upload-mode")
                with gr.Tab("Test data"):
                    count = 0 if demo.inputs is None else len(demo.inputs)
                    index = gr.Number(label=f"test input index (0..{count - 1})", value=0,
                                      precision=0, elem_id="demo-index")
                    show = gr.Button("Show", elem_id="demo-show")
                    wrong = None
                    if demo.labels is not None:
                        wrong = gr.Dropdown(
                            label=f"misclassified by the int8 model ({len(demo.wrong)})",
                            choices=[f"{i} (label {int(demo.labels[i])})" for i in demo.wrong],
                            elem_id="demo-wrong")
                    gr.Markdown(demo.test_note or f"from {demo.source}")
            with gr.Column(scale=1, visible=demo.image is not None):
                size = "x".join(map(str, demo.image[1:])) if demo.image else ""
                pixels = gr.Image(label=f"model input ({size})", interactive=False,
                                  height=240, elem_id="demo-pixels")
        results = gr.HTML(message_html("draw a digit"), elem_id="demo-results")
        fmap = gr.Image(label="int8 feature maps (golden, dequantized)", interactive=False,
                        elem_id="demo-features")
        outputs = [pixels, results, fmap]

        if canvas is not None:
            def strokes_event(evt):
                return demo.on_strokes(getattr(evt, "_data", None))
            # A real annotation object (this module's are strings): Gradio finds EventData
            # by it.
            strokes_event.__annotations__ = {"evt": gr.EventData}

            # always_last: a stroke finished while the previous one is still being answered
            # is not dropped; the page ends up showing the whole drawing.
            canvas.click(strokes_event, None, outputs, api_visibility="private",
                         trigger_mode="always_last")
            clear.click(lambda: (None, message_html("draw a digit"), None), None, outputs,
                        js="() => { window.mnistEdgeDemo && window.mnistEdgeDemo.clear(); }",
                        api_visibility="private")
            gr.api(demo.api_strokes, api_name="predict_strokes", queue=False)
        if upload is not None:
            if mode is not None:
                upload.upload(demo.on_upload, [upload, mode], outputs, api_visibility="private")
                mode.change(demo.on_upload, [upload, mode], outputs, api_visibility="private")
            else:
                upload.upload(demo.on_upload, upload, outputs, api_visibility="private")
        show.click(demo.on_test_image, index, outputs, api_visibility="private")
        if wrong is not None:
            wrong.change(demo.on_test_image, wrong, outputs, api_visibility="private")
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

