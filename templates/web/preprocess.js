// MNIST-style preprocessing: strokes -> ink bitmap -> H x W uint8 pixels (28x28 by
// default: the box is BOX/SIZE of each side, 20x20 in 28x28), and uploaded images taken
// whole (grey or RGB, integer area resize to H x W).
// The same integer algorithm as mnist_edge/demo/preprocess.py, step for step, so that
// both give the same bytes for the same stroke list or image (tests/test_web.py checks it).
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

  function checkOut(outH, outW) {
    if (!(Number.isInteger(outH) && Number.isInteger(outW) && outH > 0 && outH <= MAX_SIDE &&
          outW > 0 && outW <= MAX_SIDE)) {
      throw new Error(`model input ${outH}x${outW} is outside 1..${MAX_SIDE} a side`);
    }
  }

  // Source pixels overlapping output cell i (of nOut over nSrc) and their integer overlaps
  // (units 1/nOut): cell i covers [i*nSrc, (i+1)*nSrc), source k covers [k*nOut, (k+1)*nOut).
  function spans(nSrc, nOut) {
    const out = [];
    for (let i = 0; i < nOut; i++) {
      const first = floorDiv(i * nSrc, nOut);
      const last = floorDiv((i + 1) * nSrc - 1, nOut);
      const ks = [];
      const ws = [];
      for (let k = first; k <= last; k++) {
        const lo = Math.max(i * nSrc, k * nOut);
        const hi = Math.min((i + 1) * nSrc, (k + 1) * nOut);
        if (hi > lo) { ks.push(k); ws.push(hi - lo); }
      }
      out.push([ks, ws]);
    }
    return out;
  }

  // Integer area (box) filter, as area_resize in Python: the h x w x ch region of `src`
  // starting at (r0, c0) (row stride `stride` pixels) -> Uint8Array(outH * outW * ch), HWC.
  function areaResizeRegion(src, stride, ch, r0, c0, h, w, outH, outW) {
    const sr = spans(h, outH);
    const sc = spans(w, outW);
    // Columns first: tmp[k][j][c] = sum_l wc[j][l] * src[k][l][c]; then rows.
    const tmp = new Array(h * outW * ch).fill(0);
    for (let k = 0; k < h; k++) {
      const row = ((r0 + k) * stride + c0) * ch;
      for (let j = 0; j < outW; j++) {
        const [ls, ws] = sc[j];
        for (let c = 0; c < ch; c++) {
          let s = 0;
          for (let t = 0; t < ls.length; t++) s += ws[t] * src[row + ls[t] * ch + c];
          tmp[(k * outW + j) * ch + c] = s;
        }
      }
    }
    const out = new Uint8Array(outH * outW * ch);
    for (let i = 0; i < outH; i++) {
      const [ks, ws] = sr[i];
      for (let j = 0; j < outW; j++) {
        for (let c = 0; c < ch; c++) {
          let s = 0;
          for (let t = 0; t < ks.length; t++) s += ws[t] * tmp[(ks[t] * outW + j) * ch + c];
          out[(i * outW + j) * ch + c] = divRound(s, h * w);
        }
      }
    }
    return out;
  }

  // uint8 image h x w x ch (HWC) -> outH x outW x ch, as area_resize in Python.
  function areaResize(src, h, w, ch, outH, outW) {
    checkSize(w, h);
    checkOut(outH, outW);
    return areaResizeRegion(src, w, ch, 0, 0, h, w, outH, outW);
  }

  // The digit's box in an outH x outW input: BOX/SIZE of each side, rounded half up.
  function boxLimits(outH, outW) {
    return [Math.max(1, divRound(outH * BOX, SIZE)), Math.max(1, divRound(outW * BOX, SIZE))];
  }

  function boxSize(h, w, bh, bw) {
    if (h * bw >= w * bh) return [bh, Math.max(1, divRound(w * bh, h))];
    return [Math.max(1, divRound(h * bw, w)), bw];
  }

  // ink: Uint8Array of width*height (0 = background) -> Uint8Array(outH * outW), 28x28
  // by default. Throws on an empty drawing.
  function preprocess(ink, width, height, outH = SIZE, outW = SIZE) {
    checkSize(width, height);
    checkOut(outH, outW);
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
    const [bh, bw] = boxLimits(outH, outW);
    const [oh, ow] = boxSize(h, w, bh, bw);
    const box = areaResizeRegion(ink, width, 1, r0, c0, h, w, oh, ow);
    let total = 0, rowM = 0, colM = 0;
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const v = box[i * ow + j];
        total += v;
        rowM += (2 * i + 1) * v;
        colM += (2 * j + 1) * v;
      }
    }
    let top, left;
    if (total === 0) {
      top = Math.floor((outH - oh) / 2);
      left = Math.floor((outW - ow) / 2);
    } else {
      top = divRound(outH * total - rowM, 2 * total);
      left = divRound(outW * total - colM, 2 * total);
      top = Math.min(Math.max(top, 0), outH - oh);
      left = Math.min(Math.max(left, 0), outW - ow);
    }
    const out = new Uint8Array(outH * outW);
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) out[(top + i) * outW + left + j] = box[i * ow + j];
    }
    return out;
  }

  // RGBA bytes (4 per pixel) -> RGB composited over white, as _over_white in Python.
  function overWhite(rgba, n) {
    const rgb = new Uint8Array(3 * n);
    for (let p = 0; p < n; p++) {
      const a = rgba[4 * p + 3];
      for (let c = 0; c < 3; c++) {
        rgb[3 * p + c] = Math.floor((a * rgba[4 * p + c] + (255 - a) * 255 + 127) / 255);
      }
    }
    return rgb;
  }

  function luma(rgb, p) {
    return Math.floor((299 * rgb[3 * p] + 587 * rgb[3 * p + 1] + 114 * rgb[3 * p + 2] + 500)
                      / 1000);
  }

  // Twice the median of bytes (the mean of the middle two for an even count).
  function median2(values) {
    const hist = new Array(256).fill(0);
    for (let i = 0; i < values.length; i++) hist[values[i]]++;
    const n = values.length;
    const at = (rank) => {   // the rank-th smallest value (0-based)
      let seen = 0;
      for (let v = 0; v < 256; v++) {
        seen += hist[v];
        if (seen > rank) return v;
      }
      return 255;
    };
    return n % 2 ? 2 * at((n - 1) / 2) : at(n / 2 - 1) + at(n / 2);
  }

  // An uploaded image read as a drawing, as ink_from_rgba in Python: RGBA (4 bytes a
  // pixel, width x height) -> ink Uint8Array (0 = background), either polarity.
  function inkFromRGBA(rgba, width, height) {
    checkSize(width, height);
    const n = width * height;
    const rgb = overWhite(rgba, n);
    const ink = new Uint8Array(n);
    for (let p = 0; p < n; p++) ink[p] = 255 - luma(rgb, p);
    if (median2(ink) > 254) for (let p = 0; p < n; p++) ink[p] = 255 - ink[p];
    const bg = Math.floor(median2(ink) / 2);
    for (let p = 0; p < n; p++) ink[p] = Math.max(0, ink[p] - bg);
    return ink;
  }

  // An uploaded image taken whole, as image_from_rgba in Python: grey (channels 1) or RGB
  // (3), area-resized to outH x outW -> Uint8Array HWC (the C's layout).
  function imageFromRGBA(rgba, width, height, channels, outH, outW) {
    checkSize(width, height);
    if (channels !== 1 && channels !== 3) {
      throw new Error(`an image gives 1 (grey) or 3 (RGB) channels, not ${channels}`);
    }
    const n = width * height;
    const rgb = overWhite(rgba, n);
    let img = rgb;
    if (channels === 1) {
      img = new Uint8Array(n);
      for (let p = 0; p < n; p++) img[p] = luma(rgb, p);
    }
    return areaResize(img, height, width, channels, outH, outW);
  }

  function preprocessStrokes(strokes, width, height, outH = SIZE, outW = SIZE) {
    return preprocess(rasterize(strokes, width, height), width, height, outH, outW);
  }

  return { BOX, SIZE, MAX_SIDE, brushRadius, rasterize, drawStroke, preprocess,
           preprocessStrokes, areaResize, boxLimits, inkFromRGBA, imageFromRGBA };
})();

if (typeof module !== "undefined") module.exports = MnistPreprocess;
