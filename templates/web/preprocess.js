// MNIST-style preprocessing: strokes -> ink bitmap -> 28x28 uint8 pixels.
// The same integer algorithm as mnist_edge/demo/preprocess.py, step for step, so that
// both give the same bytes for the same stroke list (tests/test_web.py checks it).
// Every value is an integer below 2^53, where JavaScript numbers are exact.
"use strict";

const MnistPreprocess = (() => {
  const BOX = 20;
  const SIZE = 28;
  const MAX_SIDE = 4096;

  function brushRadius(width, height) {
    return Math.max(1, Math.floor(Math.min(width, height) / 24));
  }

  // Floor division of integers (also for negative numerators), exact.
  function floorDiv(a, b) {
    const m = ((a % b) + b) % b;
    return (a - m) / b;
  }

  // num / den rounded half up, as _div_round in Python.
  function divRound(num, den) {
    return floorDiv(2 * num + den, 2 * den);
  }

  function checkSize(width, height) {
    if (!(width > 0 && width <= MAX_SIDE && height > 0 && height <= MAX_SIDE)) {
      throw new Error(`canvas ${width}x${height} is outside 1..${MAX_SIDE} pixels a side`);
    }
  }

  // Set to 255 every pixel within distance r of the segment (x0,y0)-(x1,y1), exactly.
  function capsule(ink, width, height, x0, y0, x1, y1, r) {
    const bx0 = Math.max(0, Math.min(x0, x1) - r);
    const bx1 = Math.min(width - 1, Math.max(x0, x1) + r);
    const by0 = Math.max(0, Math.min(y0, y1) - r);
    const by1 = Math.min(height - 1, Math.max(y0, y1) + r);
    const dx = x1 - x0;
    const dy = y1 - y0;
    const len2 = dx * dx + dy * dy;
    const r2 = r * r;
    for (let py = by0; py <= by1; py++) {
      for (let px = bx0; px <= bx1; px++) {
        const ax = px - x0;
        const ay = py - y0;
        const d0 = ax * ax + ay * ay;
        let inside;
        if (len2 === 0) {
          inside = d0 <= r2;
        } else {
          const t = ax * dx + ay * dy;
          if (t <= 0) {
            inside = d0 <= r2;
          } else if (t >= len2) {
            const bx = px - x1;
            const by = py - y1;
            inside = bx * bx + by * by <= r2;
          } else {
            const cross = dx * ay - dy * ax;
            inside = cross * cross <= r2 * len2;
          }
        }
        if (inside) ink[py * width + px] = 255;
      }
    }
  }

  // Draw one polyline (a list of [x, y] integer points) into the ink bitmap.
  function drawStroke(ink, width, height, stroke, r) {
    const pts = stroke.map((p) => [Math.trunc(p[0]), Math.trunc(p[1])]);
    if (pts.length === 0) return;
    if (pts.length === 1) {
      capsule(ink, width, height, pts[0][0], pts[0][1], pts[0][0], pts[0][1], r);
      return;
    }
    for (let i = 0; i + 1 < pts.length; i++) {
      capsule(ink, width, height, pts[i][0], pts[i][1], pts[i + 1][0], pts[i + 1][1], r);
    }
  }

  function rasterize(strokes, width, height, radius) {
    checkSize(width, height);
    const r = radius === undefined ? brushRadius(width, height) : radius;
    const ink = new Uint8Array(width * height);
    for (const stroke of strokes) drawStroke(ink, width, height, stroke, r);
    return ink;
  }

  // [nOut * nSrc] integer overlaps of output cell i with source pixel k (units 1/nOut).
  function weights(nSrc, nOut) {
    const w = new Array(nOut * nSrc).fill(0);
    for (let i = 0; i < nOut; i++) {
      for (let k = 0; k < nSrc; k++) {
        const lo = Math.max(i * nSrc, k * nOut);
        const hi = Math.min((i + 1) * nSrc, (k + 1) * nOut);
        if (hi > lo) w[i * nSrc + k] = hi - lo;
      }
    }
    return w;
  }

  function boxSize(h, w) {
    if (h >= w) return [BOX, Math.max(1, divRound(w * BOX, h))];
    return [Math.max(1, divRound(h * BOX, w)), BOX];
  }

  // ink: Uint8Array of width*height (0 = background) -> Uint8Array(784). Throws on empty.
  function preprocess(ink, width, height) {
    checkSize(width, height);
    let r0 = height, r1 = -1, c0 = width, c1 = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (ink[y * width + x] > 0) {
          if (y < r0) r0 = y;
          if (y > r1) r1 = y;
          if (x < c0) c0 = x;
          if (x > c1) c1 = x;
        }
      }
    }
    if (r1 < 0) throw new Error("the drawing is empty: draw a digit first");
    const h = r1 - r0 + 1;
    const w = c1 - c0 + 1;
    const [oh, ow] = boxSize(h, w);
    const wr = weights(h, oh);
    const wc = weights(w, ow);
    // Columns first: tmp[k][j] = sum_l wc[j][l] * crop[k][l]; then rows.
    const tmp = new Array(h * ow).fill(0);
    for (let k = 0; k < h; k++) {
      const row = (r0 + k) * width + c0;
      for (let j = 0; j < ow; j++) {
        let s = 0;
        for (let l = 0; l < w; l++) {
          const wt = wc[j * w + l];
          if (wt !== 0) s += wt * ink[row + l];
        }
        tmp[k * ow + j] = s;
      }
    }
    const box = new Array(oh * ow).fill(0);
    let total = 0, rowM = 0, colM = 0;
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        let s = 0;
        for (let k = 0; k < h; k++) {
          const wt = wr[i * h + k];
          if (wt !== 0) s += wt * tmp[k * ow + j];
        }
        const v = divRound(s, h * w);
        box[i * ow + j] = v;
        total += v;
        rowM += (2 * i + 1) * v;
        colM += (2 * j + 1) * v;
      }
    }
    let top, left;
    if (total === 0) {
      top = Math.floor((SIZE - oh) / 2);
      left = Math.floor((SIZE - ow) / 2);
    } else {
      top = divRound(SIZE * total - rowM, 2 * total);
      left = divRound(SIZE * total - colM, 2 * total);
      top = Math.min(Math.max(top, 0), SIZE - oh);
      left = Math.min(Math.max(left, 0), SIZE - ow);
    }
    const out = new Uint8Array(SIZE * SIZE);
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) out[(top + i) * SIZE + left + j] = box[i * ow + j];
    }
    return out;
  }

  function preprocessStrokes(strokes, width, height) {
    return preprocess(rasterize(strokes, width, height), width, height);
  }

  return { BOX, SIZE, brushRadius, rasterize, drawStroke, preprocess, preprocessStrokes };
})();

if (typeof module !== "undefined") module.exports = MnistPreprocess;
