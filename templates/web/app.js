// The page: a drawing canvas, the MNIST-style 28x28 input, and the int8 logits from the
// generated C compiled to WebAssembly. No server, no network: it runs from file://.
"use strict";

const MnistEdge = (() => {
  const P = MnistPreprocess;
  const model = MNIST_EDGE_MODEL;
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

  // The int8 logits of one 28x28 uint8 input, from the WebAssembly module.
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
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(state.width, state.height);
    for (let i = 0; i < state.ink.length; i++) {
      const v = 255 - state.ink[i];
      img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function paintInput(pixels) {
    const ctx = $("input28").getContext("2d");
    const img = ctx.createImageData(P.SIZE, P.SIZE);
    for (let i = 0; i < pixels.length; i++) {
      const v = 255 - pixels[i];
      img.data[4 * i] = v; img.data[4 * i + 1] = v; img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
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
    for (let c = 0; c < model.classes; c++) {
      $(`logit-${c}`).textContent = "";
      $(`prob-${c}`).textContent = "";
      $(`row-${c}`).className = "";
    }
    paintInput(new Uint8Array(P.SIZE * P.SIZE));
  }

  // The page's ink -> preprocessing -> WebAssembly -> the table. Returns the result.
  function predict() {
    let pixels;
    try {
      pixels = P.preprocess(state.ink, state.width, state.height);
    } catch (err) {
      state.last = null;
      clearResult(err.message);
      return null;
    }
    const result = runModel(pixels);
    result.input = Array.from(pixels);
    state.last = result;
    paintInput(pixels);
    showResult(result);
    return result;
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
  // MNIST digits at canvas size. The 28x28 `pixels` are upscaled by `factor` at (x, y).
  function drawDigit(pixels, factor, x, y) {
    clear();
    for (let i = 0; i < P.SIZE; i++) {
      for (let j = 0; j < P.SIZE; j++) {
        const v = pixels[i * P.SIZE + j];
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

  async function start() {
    const canvas = $("draw");
    state.width = canvas.width;
    state.height = canvas.height;
    bindCanvas();
    clear();
    try {
      await loadWasm();
      $("status").textContent = "ready: draw a digit";
      document.body.dataset.ready = "1";
    } catch (err) {
      $("status").textContent = `cannot load the WebAssembly model: ${err.message}`;
    }
  }

  return { start, predict, clear, drawDigit, state, runModel, model };
})();

window.addEventListener("DOMContentLoaded", () => MnistEdge.start());
