// The page: a drawing canvas (models of one channel of pixels: MNIST-style to the model's
// H x W), an image upload (grey or RGB models), the embedded test vectors (every model),
// the model's input and the int8 logits from the generated C compiled to WebAssembly.
// Inputs are kept as the C reads them (HWC bytes; int8 as two's complement). No server,
// no network: it runs from file://.
"use strict";

const MnistEdge = (() => {
  const P = MnistPreprocess;
  const model = MNIST_EDGE_MODEL;
  const input = model.input;
  const state = { strokes: [], current: null, ink: null, width: 0, height: 0,
                  exports: null, last: null };

  function base64Bytes(text) {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  // Over http(s) the page loads mnist_edge.wasm; browsers refuse to fetch files from a
  // file:// page, so there it instantiates the same bytes embedded in this script.
  async function loadWasm() {
    let bytes = null;
    let source = "embedded";
    if (location.protocol === "http:" || location.protocol === "https:") {
      try {
        const response = await fetch(model.wasmFile);
        if (response.ok) {
          bytes = new Uint8Array(await response.arrayBuffer());
          source = model.wasmFile;
        }
      } catch (err) {
        bytes = null;
      }
    }
    if (bytes === null) bytes = base64Bytes(MNIST_EDGE_WASM_BASE64);
    const { instance } = await WebAssembly.instantiate(bytes, {});
    if (instance.exports._initialize) instance.exports._initialize();
    state.exports = instance.exports;
    state.source = source;
  }

  // The int8 logits of one input (input.size bytes as the C reads them), from WebAssembly.
  function runModel(pixels) {
    const ex = state.exports;
    const mem = new Uint8Array(ex.memory.buffer);
    mem.set(pixels, ex.web_input());
    const cls = ex.web_predict();
    const logits = Array.from(new Int8Array(ex.memory.buffer, ex.web_logits(), model.classes));
    return { cls, logits };
  }

  function probabilities(logits) {
    const real = logits.map((q) => model.outputScale * (q - model.outputZeroPoint));
    const top = Math.max(...real);
    const e = real.map((v) => Math.exp(v - top));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
  }

  function $(id) { return document.getElementById(id); }

  function paintInk() {
    const canvas = $("draw");
    if (!canvas) return;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(state.width, state.height);
    for (let i = 0; i < state.ink.length; i++) {
      const v = 255 - state.ink[i];
      img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  // The model's input as it sees it: grey ink dark on white, RGB as it is.
  function paintInput(pixels) {
    const canvas = $("model-input");
    if (!canvas) return;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(input.width, input.height);
    const n = input.width * input.height;
    for (let p = 0; p < n; p++) {
      for (let c = 0; c < 3; c++) {
        img.data[4 * p + c] = input.channels === 3 ? pixels[3 * p + c] : 255 - pixels[p];
      }
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function showResult(result) {
    $("class").textContent = String(result.cls);
    $("status").textContent = "";
    const probs = probabilities(result.logits);
    for (let c = 0; c < model.classes; c++) {
      $(`logit-${c}`).textContent = String(result.logits[c]);
      $(`prob-${c}`).textContent = (100 * probs[c]).toFixed(1) + " %";
      $(`row-${c}`).className = c === result.cls ? "top" : "";
    }
  }

  function clearResult(message) {
    $("class").textContent = "–";
    $("status").textContent = message;
    $("vector-exact").textContent = "";
    for (let c = 0; c < model.classes; c++) {
      $(`logit-${c}`).textContent = "";
      $(`prob-${c}`).textContent = "";
      $(`row-${c}`).className = "";
    }
    paintInput(new Uint8Array(input.size));
  }

  // One input (bytes as the C reads them) -> WebAssembly -> the table. Returns the result.
  function show(pixels, source) {
    const result = runModel(pixels);
    result.input = Array.from(pixels);
    result.source = source;
    state.last = result;
    paintInput(pixels);
    showResult(result);
    return result;
  }

  // The page's ink -> preprocessing -> WebAssembly -> the table. Returns the result.
  function predict() {
    let pixels;
    try {
      pixels = P.preprocess(state.ink, state.width, state.height, input.height, input.width);
    } catch (err) {
      state.last = null;
      clearResult(err.message);
      return null;
    }
    return show(pixels, "drawing");
  }

  function clear() {
    state.strokes = [];
    state.current = null;
    state.ink = new Uint8Array(state.width * state.height);
    state.last = null;
    paintInk();
    clearResult("");
  }

  // Replace the drawing by an ink bitmap (0 = background): how the benchmark draws
  // MNIST digits at canvas size. The rows x cols `pixels` (square by default) are
  // upscaled by `factor` at (x, y).
  function drawDigit(pixels, factor, x, y, rows, cols) {
    const side = Math.round(Math.sqrt(pixels.length));
    rows = rows === undefined ? side : rows;
    cols = cols === undefined ? Math.floor(pixels.length / rows) : cols;
    clear();
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const v = pixels[i * cols + j];
        for (let a = 0; a < factor; a++) {
          const row = y + i * factor + a;
          if (row < 0 || row >= state.height) continue;
          for (let b = 0; b < factor; b++) {
            const col = x + j * factor + b;
            if (col >= 0 && col < state.width) state.ink[row * state.width + col] = v;
          }
        }
      }
    }
    paintInk();
    return predict();
  }

  // An uploaded image's RGBA bytes (width x height) -> the model's input: read as a
  // drawing (MNIST-style, one channel) or taken whole (grey or RGB, area resize).
  function fromRGBA(rgba, width, height, mode) {
    let pixels;
    try {
      if (mode === "drawing") {
        const ink = P.inkFromRGBA(rgba, width, height);
        pixels = P.preprocess(ink, width, height, input.height, input.width);
      } else {
        pixels = P.imageFromRGBA(rgba, width, height, input.channels, input.height,
                                 input.width);
      }
    } catch (err) {
      state.last = null;
      clearResult(err.message);
      return null;
    }
    return show(pixels, `upload (${mode})`);
  }

  function uploadMode() {
    const select = $("upload-mode");
    return select ? select.value : "whole";
  }

  // The file's pixels as decoded, at their own size (no browser scaling, no colour
  // management): what image_from_rgba / ink_from_rgba read in Python.
  async function upload(file) {
    if (!file) return null;
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { colorSpaceConversion: "none",
                                               premultiplyAlpha: "none" });
    } catch (err) {
      clearResult("the file is not an image this page can read");
      return null;
    }
    const { width, height } = bitmap;
    if (width > P.MAX_SIDE || height > P.MAX_SIDE) {
      clearResult(`the image is ${width}x${height} pixels; at most ${P.MAX_SIDE} a side`);
      return null;
    }
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    state.upload = { width, height };
    return fromRGBA(rgba, width, height, uploadMode());
  }

  // Test vector i (embedded at generation with golden's logits) through WebAssembly.
  function runVector(i) {
    const bytes = base64Bytes(model.vectors.inputs[i]);
    $("vector").value = String(i);
    const result = show(bytes, `test vector ${i}`);
    const golden = model.vectors.logits[i];
    result.golden = golden;
    result.exact = golden.every((v, c) => v === result.logits[c]);
    const mark = $("vector-exact");
    mark.className = result.exact ? "exact" : "differ";
    mark.textContent = result.exact ? "\u2714 equals golden" : "\u2718 differs from golden";
    return result;
  }

  function pointAt(event) {
    const canvas = $("draw");
    const rect = canvas.getBoundingClientRect();
    const x = Math.floor((event.clientX - rect.left) * canvas.width / rect.width);
    const y = Math.floor((event.clientY - rect.top) * canvas.height / rect.height);
    return [x, y];
  }

  function addPoint(point) {
    const stroke = state.current;
    const prev = stroke.length ? stroke[stroke.length - 1] : point;
    stroke.push(point);
    const r = P.brushRadius(state.width, state.height);
    P.drawStroke(state.ink, state.width, state.height, [prev, point], r);
    paintInk();
  }

  function bindCanvas() {
    const canvas = $("draw");
    if (!canvas) return;
    canvas.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      state.current = [];
      state.strokes.push(state.current);
      addPoint(pointAt(event));
    });
    canvas.addEventListener("pointermove", (event) => {
      if (state.current === null) return;
      event.preventDefault();
      addPoint(pointAt(event));
    });
    const end = (event) => {
      if (state.current === null) return;
      event.preventDefault();
      state.current = null;
      predict();
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    $("clear").addEventListener("click", clear);
  }

  function bindSources() {
    const file = $("upload");
    if (file) file.addEventListener("change", () => upload(file.files[0]));
    const mode = $("upload-mode");
    if (mode) mode.addEventListener("change", () => upload(file.files[0]));
    $("run-vector").addEventListener("click", () => runVector(Number($("vector").value)));
  }

  async function start() {
    const canvas = $("draw");
    state.width = canvas ? canvas.width : 0;
    state.height = canvas ? canvas.height : 0;
    bindCanvas();
    bindSources();
    clear();
    try {
      await loadWasm();
      $("status").textContent = input.draw ? "ready: draw a digit"
        : input.image ? "ready: upload an image" : "ready: run a test vector";
      document.body.dataset.ready = "1";
    } catch (err) {
      $("status").textContent = `cannot load the WebAssembly model: ${err.message}`;
    }
  }

  return { start, predict, clear, drawDigit, fromRGBA, upload, runVector, state, runModel,
           model };
})();

window.addEventListener("DOMContentLoaded", () => MnistEdge.start());
