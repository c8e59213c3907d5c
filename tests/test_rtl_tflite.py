"""RTL backend in the `tflite` arithmetic: the requantizer against requant.py, and
tflite-arithmetic graphs exact in Verilator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from helpers import need

from mnist_edge.paths import TEMPLATES_DIR
from mnist_edge.requant import quantize_multiplier, requantize_tflite

TFL_TB = r"""
#include <cstdio>
#include "Vmnist_edge_requant_tfl.h"
// one row a cycle: acc m shift zy act_lo act_hi divide half bypass
int main() {
    Vmnist_edge_requant_tfl t;
    long r[9], sent = 0, got = 0;
    int ok = 1;
    t.clk = 0; t.in_valid = 0; t.eval();
    for (;;) {
        if (ok) ok = std::scanf("%ld %ld %ld %ld %ld %ld %ld %ld %ld", &r[0], &r[1], &r[2],
                                &r[3], &r[4], &r[5], &r[6], &r[7], &r[8]) == 9;
        t.in_valid = ok;
        t.acc = (unsigned)r[0]; t.m = (unsigned)r[1]; t.shift = r[2] & 0xFF;
        t.zy = r[3] & 0xFF; t.act_lo = r[4] & 0xFF; t.act_hi = r[5] & 0xFF;
        t.divide = r[6]; t.half = r[7]; t.bypass = r[8];
        t.clk = 1; t.eval(); t.clk = 0; t.eval();
        if (t.out_valid) { std::printf("%d\n", (signed char)t.out_y); got++; }
        if (ok) sent++;
        if (!ok && got == sent) break;
    }
    return 0;
}
"""


def run_requant_tfl(folder: Path, cases: np.ndarray) -> np.ndarray:
    """mnist_edge_requant_tfl.v in Verilator on rows (acc, m, shift, zy, lo, hi, divide,
    half, bypass), one row a cycle."""
    exe = need("verilator")
    (folder / "tb.cpp").write_text(TFL_TB)
    shutil.copy(TEMPLATES_DIR / "rtl" / "mnist_edge_requant_tfl.v", folder)
    subprocess.run([exe, "--cc", "--exe", "--build", "-O2", "--top-module",
                    "mnist_edge_requant_tfl", "mnist_edge_requant_tfl.v", "tb.cpp", "-o", "tb"],
                   cwd=folder, check=True, capture_output=True)
    text = "\n".join(" ".join(str(int(v)) for v in row) for row in cases) + "\n"
    proc = subprocess.run([str(folder / "obj_dir" / "tb")], input=text, capture_output=True,
                          text=True, check=True)
    hw = np.array(proc.stdout.split(), dtype=np.int64)
    assert hw.size == len(cases)
    return hw


def _tfl_expected(cases: np.ndarray) -> np.ndarray:
    """requant.requantize_tflite row by row (bypass: the low byte, clamped); divide rows:
    TFLM's average-pool rounding of acc / N with N = 2 * half or 2 * half + 1, as the
    generator's m = ceil(2^31 / N) encodes it."""
    out = np.empty(len(cases), np.int64)
    for k, (acc, m, shift, zy, lo, hi, div, half, byp) in enumerate(cases):
        if byp:
            low = ((int(acc) & 0xFF) ^ 0x80) - 0x80
            out[k] = min(max(low, lo), hi)
        elif div:
            n = _count_of(int(m), int(half))
            q = (acc + n // 2) // n if acc > 0 else -((n // 2 - acc) // n)
            out[k] = min(max(q, lo), hi)
        else:
            out[k] = requantize_tflite(np.array([acc]), m, shift, int(zy), (int(lo), int(hi)))[0]
    return out


def _count_of(m: int, half: int) -> int:
    for n in (2 * half, 2 * half + 1):
        if n >= 1 and -(-(1 << 31) // n) == m:
            return n
    raise AssertionError((m, half))


def test_requant_tfl_matches_tflm_arithmetic(tmp_path: Path) -> None:
    """The Q31 requantizer against requant.requantize_tflite (TFLM's MultiplyByQuantized-
    Multiplier, double rounding, + z_y, activation clamp): multipliers at both ends of the
    Q31 range and from real scales, every shift TFLite gives (-31..30), accumulators at the
    int32 ends, 0, +-1, the rounding ties of both roundings and random values; the
    average pool's division (every sum for N in 2, 3, 9, 64) and the bypass."""
    rng = np.random.default_rng(23)
    mults = [(1 << 31) - 1, (1 << 31) - 2, 1 << 30, (1 << 30) + 1, 1 << 31 >> 1 | 1]
    mults += [quantize_multiplier(float(r))[0]
              for r in np.exp(rng.uniform(np.log(1e-9), np.log(3e9), 40))]
    mults += list(rng.integers(1 << 30, 1 << 31, 20))
    shifts = np.arange(-31, 31)
    edge = np.array([-(1 << 31), -(1 << 31) + 1, (1 << 31) - 1, (1 << 31) - 2, 0, 1, -1, 2, -2,
                     1 << 30, -(1 << 30), (1 << 24) - 1, -(1 << 24)], np.int64)
    rows = []
    for m in mults:
        for s in rng.choice(shifts, 12, replace=False).tolist() + [-31, 0, 30]:
            acc = np.concatenate([edge, rng.integers(-(1 << 31), 1 << 31, 24),
                                  rng.integers(-(1 << 16), 1 << 16, 8)])
            if s < 0:  # ties of the divide by 2^-s after the high multiply, and neighbours
                e = -s
                q = rng.integers(-(1 << 20), 1 << 20, 6) * (1 << e) + (1 << (e - 1))
                x = (q.astype(object) << 31) // int(m) if m else q
                acc = np.concatenate([acc, np.clip(np.array(x, np.int64) + rng.integers(-1, 2, 6),
                                                   -(1 << 31), (1 << 31) - 1)])
            for a in acc:
                zy = int(rng.integers(-128, 128))
                lo, hi = sorted(rng.integers(-128, 128, 2).tolist()) if rng.random() < 0.3 \
                    else (-128, 127)
                rows.append((a, m, s, zy, lo, hi, 0, 0, 0))
    for n in (2, 3, 9, 64):  # every sum of n int8 values
        m = -(-(1 << 31) // n)
        for a in range(-128 * n, 127 * n + 1):
            rows.append((a, m, 0, 0, -128, 127, 1, n // 2, 0))
    for a in rng.integers(-(1 << 31), 1 << 31, 200):
        rows.append((a, 0, 0, 0, -100, 100, 0, 0, 1))
    cases = np.array(rows, dtype=np.int64)
    hw = run_requant_tfl(tmp_path, cases)
    want = _tfl_expected(cases)
    bad = np.flatnonzero(hw != want)
    assert bad.size == 0, (len(cases), bad.size, cases[bad[:5]], hw[bad[:5]], want[bad[:5]])
