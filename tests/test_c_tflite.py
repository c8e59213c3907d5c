"""The generated C in the tflite arithmetic: bit-exact with golden (hence TFLM).

* the four MLPerf Tiny models (../shared/models/mlperf-tiny): import -> C on the host
  (`c`, `c-int`) on structured + random inputs, a few inputs in QEMU on a Cortex-M4,
  and the self-test under ASan + UBSan with the strict warnings and -pedantic;
* the C requantization (TFLM's MultiplyByQuantizedMultiplier and the output stage)
  against `requant.py` over edge cases: INT32_MIN/MAX, every shift -31..30, exact ties;
* each kernel on its own: the single-op TFLite fixtures of test_tflite_fixtures, and
  small two-branch models for ADD/SUB/MUL/CONCATENATION, fused and padded max pools
  and SOFTMAX, and test_tflite_ops' MEAN, HARD_SWISH, QUANTIZE and broadcasting
  fixtures; what the C kernels do not implement is refused by name.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import MODELS, mlperf_run, need

from mnist_edge import qgraph
from mnist_edge.backends.c import C_WARNINGS, generate_c, render_tree
from mnist_edge.backends.tflite_flatbuffer import build
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers import import_tflite
from mnist_edge.probe_inputs import probe_batch
from mnist_edge.requant import multiply_by_quantized_multiplier, requantize_tflite
from mnist_edge.testing import random_inputs
from mnist_edge.validate import validate_backend

SOURCES = ["mnist_edge_model.c", "mnist_edge_kernels.c", "mnist_edge_weights.c"]
STRICT = ["-std=c99", *C_WARNINGS, "-pedantic"]
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def _inputs(graph: qgraph.QGraph, n: int, seed: int = 0) -> np.ndarray:
    """Structured probes (extremes, ramps, checkerboards...) then seeded random inputs."""
    return np.concatenate([probe_batch(graph, n // 2, seed),
                           random_inputs(graph, n - n // 2, seed=seed + 1)])



def _exact(run_dir: Path, backend: str, inputs: np.ndarray) -> None:
    f = validate_backend(run_dir, backend, inputs, None)
    assert f["exact_logit_fraction"] == 1.0, (backend, f)
    assert f["images"] == len(inputs)


@pytest.mark.parametrize("backend", ["c", "c-int", "c-x86"])
@pytest.mark.parametrize("key", sorted(MODELS))
def test_mlperf_host_c_exact(mlperf_runs, key: str, backend: str) -> None:
    run_dir = mlperf_run(mlperf_runs, key)
    _exact(run_dir, backend, _inputs(qgraph.load_run(run_dir), 24))


@pytest.mark.parametrize("key", sorted(MODELS))
def test_mlperf_qemu_m4_exact(mlperf_runs, key: str) -> None:
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    run_dir = mlperf_run(mlperf_runs, key)
    _exact(run_dir, "qemu-m4", _inputs(qgraph.load_run(run_dir), 4, seed=3))


@pytest.mark.parametrize("key", sorted(MODELS))
def test_mlperf_qemu_m55_exact(mlperf_runs, key: str) -> None:
    """The Cortex-M55's Helium kernels (mnist_edge_kernels_mve.c) in the tflite arithmetic."""
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    run_dir = mlperf_run(mlperf_runs, key)
    _exact(run_dir, "qemu-m55", _inputs(qgraph.load_run(run_dir), 4, seed=5))


def test_adr_functions_word_aligned_at_os(mlperf_runs) -> None:
    """The pair-packed conv's loops (and the any-k q15 channel loops) jump into their loop
    by ADR, which GNU as resolves for a word-aligned function start; at -Os gcc aligns
    functions to a halfword only. KWS (its convs take me_conv2d_packed_s8) at -Os on the
    scalar Cortex-M55: exact, and both word-aligned."""
    pytest.importorskip("elftools")
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    from mnist_edge.targets import mcu_bench

    run_dir = mlperf_run(mlperf_runs, "kws")
    graph = qgraph.load_run(run_dir)
    mcu_bench.bench(run_dir, graph, "cortex-m55-nomve", size=True,
                    pixels=_inputs(graph, 1, seed=4)[0])  # raises where logits differ
    elf = run_dir / "firmware" / "bench-cortex-m55-nomve-Os" / "build" / "firmware.elf"
    _, symbols = mcu_bench._elf_image(elf)
    for name in ("me_pw3_run", "me_pw3_run_z"):
        assert name in symbols and (symbols[name].addr & ~1) % 4 == 0, name  # less the Thumb bit


def _selftest(src: Path, flags: list[str], exe: str = "selftest") -> str:
    gcc = need("gcc")
    proc = subprocess.run([gcc, *STRICT, *flags, "-o", exe, "main.c", *SOURCES], cwd=src,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = subprocess.run([str(src / exe)], cwd=src, capture_output=True, text=True)
    assert run.returncode == 0 and "PASS" in run.stdout, (run.stdout[-800:], run.stderr[-2000:])
    return run.stdout


@pytest.mark.parametrize("key", sorted(MODELS))
def test_mlperf_selftest_strict_and_sanitized(mlperf_runs, key: str, tmp_path: Path) -> None:
    """-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror -pedantic, then the self-test
    under ASan + UBSan, portable, with the emulated Arm DSP path and c-x86's kernels."""
    run_dir = mlperf_run(mlperf_runs, key)
    graph = qgraph.load_run(run_dir)
    src = generate_c(graph, tmp_path / "c", "int", _inputs(graph, 8, seed=7))
    _selftest(src, SANITIZE)
    _selftest(src, [*SANITIZE, "-DMNIST_EDGE_DSP_EMULATION"], "selftest_dsp")
    _selftest(src, [*SANITIZE, "-march=native", "-DMNIST_EDGE_X86", "mnist_edge_kernels_x86.c"],
              "selftest_x86")


@pytest.mark.parametrize("flags", [[], ["-DMNIST_EDGE_DSP_EMULATION"],
                                   ["-march=native", "-DMNIST_EDGE_X86"]])
def test_tflite_tree_clang_weverything(mlperf_runs, tmp_path: Path, flags: list[str]) -> None:
    """A tflite tree (KWS: bands, depthwise, pointwise) under clang -Weverything as errors:
    what test_c_backend asks of the onnx trees."""
    clang = need("clang")
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "kws"))
    src = generate_c(graph, tmp_path / "c", "int", _inputs(graph, 2))
    x86 = ["mnist_edge_kernels_x86.c"] if "-DMNIST_EDGE_X86" in flags else []
    for name in [*SOURCES, "main.c", *x86]:
        proc = subprocess.run([clang, "-std=c99", "-Weverything", "-Wno-padded", "-Werror",
                               "-O2", *flags, "-c", name, "-o", str(tmp_path / f"{name}.o")],
                              cwd=src, capture_output=True, text=True)
        assert proc.returncode == 0, (name, proc.stderr[-3000:])


def test_requant_option_does_not_apply_to_tflite(mlperf_runs) -> None:
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "kws"))
    pixels = _inputs(graph, 4)
    assert render_tree(graph, "float", pixels) == render_tree(graph, "int", pixels)


# ------------------------------------------------------------- the C requantization

HARNESS = r"""
#include <string.h>
#include "mnist_edge_kernels.c" /* the static helpers, as the kernels use them */

/* A case: x0..x3, m, shift, z_y, act_min, act_max (int32 each). */
#define COLS 9
#define RES 5

/* res: for x0, me_mul_by_quantized_multiplier, me_mul_by_positive_multiplier and
 * me_requantize (both 0 for m < 0); then the q15 conv's output stage
 * me_requantize_channel on the four outputs x0..x3 of one channel (DSP builds; else
 * me_requantize again): its first byte, and how many of the four differ from
 * me_requantize or touched a byte between them. */
static void check(const int32_t *row, int32_t *res)
{
    const int32_t acc = row[0], mult = row[4], shift = row[5];
    const int8_t sh = (int8_t)shift;
    const me_requant_params q = {&mult, &sh, row[6], row[7], row[8], 0, NULL};
    res[0] = me_mul_by_quantized_multiplier(acc, mult, shift);
    res[1] = mult >= 0 ? me_mul_by_positive_multiplier(acc, mult, shift) : 0;
    res[2] = mult >= 0 ? me_requantize(acc, &q, 0) : 0;
    res[3] = res[2];
    res[4] = 0;
#if ME_USE_DSP
    if (mult >= 0) {
        const me_requant_lanes lanes = me_lanes(&q);
        int8_t out[8]; /* stride 2: the odd bytes must stay as they are */
        int32_t j;
        memset(out, 0x5A, sizeof out);
        me_requantize_channel(row, 4, &q, 0, out, 2, &lanes);
        res[3] = out[0];
        for (j = 0; j < 4; j++) {
            res[4] += out[2 * j] != me_requantize(row[j], &q, 0) || out[2 * j + 1] != 0x5A;
        }
    }
#endif
#if ME_ASM_LOOPS
    /* the channel constants' Thumb-2 requantization (depthwise, pointwise, q15 channel
     * functions: one SMLAL onto r + sign and 2^30 xor the sign bit), where it applies:
     * four channels of this m and shift, int8's whole range */
    if (mult >= 0) {
        const int32_t m4[4] = {mult, mult, mult, mult};
        const int8_t s4[4] = {sh, sh, sh, sh};
        const me_requant_params q4 = {m4, s4, row[6], -128, 127, 0, NULL};
        me_ch_requant d[4];
        if (me_ch_prepare(&q4, 4, d, 0)) {
            const me_ch_requant *dp = d;
            me_acc4 a;
            int32_t v, j;
            a.a0 = row[0];
            a.a1 = row[1];
            a.a2 = row[2];
            a.a3 = row[3];
            v = me_ch_requantize4(a, &dp);
            for (j = 0; j < 4; j++) {
                res[4] += (int8_t)(v >> (8 * j)) != me_requantize(row[j], &q4, 0);
            }
        }
    }
#endif
}

static int32_t rows[256][COLS], res[256][RES];

#ifdef HARNESS_FIRMWARE
#include "semihost.h"

/* cases.bin -> out.bin in QEMU's working folder, 256 cases a semihosting call. */
int main(void)
{
    const int32_t in = sh_open("cases.bin", SH_MODE_RB), out = sh_open("out.bin", SH_MODE_WB);
    int32_t left = in < 0 ? 0 : sh_flen(in) / (int32_t)sizeof rows[0];
    if (in < 0 || out < 0) {
        return 1;
    }
    while (left > 0) {
        const int32_t n = left < 256 ? left : 256;
        int32_t i;
        if (sh_read(in, rows, (uint32_t)n * sizeof rows[0]) != 0) {
            return 1;
        }
        for (i = 0; i < n; i++) {
            check(rows[i], res[i]);
        }
        if (sh_write(out, res, (uint32_t)n * sizeof res[0]) != 0) {
            return 1;
        }
        left -= n;
    }
    return sh_close(out) != 0 || sh_close(in) != 0;
}
#else
#include <stdio.h>

/* The cases on stdin, the results on stdout, both int32 binary. */
int main(void)
{
    size_t n, i;
    while ((n = fread(rows, sizeof rows[0], 256, stdin)) > 0) {
        for (i = 0; i < n; i++) {
            check(rows[i], res[i]);
        }
        if (fwrite(res, sizeof res[0], n, stdout) != n) {
            return 1;
        }
    }
    return 0;
}
#endif
"""


def _requant_cases(seed: int = 11) -> np.ndarray:
    """(x, m, shift, z_y, act_min, act_max) rows: the int32 limits, powers of two and their
    neighbours, exact ties of the final rounding for every right shift, random values."""
    rng = np.random.default_rng(seed)
    p = np.int64(1) << np.arange(31)
    xs = np.unique(np.concatenate([[0, 1, -1, 2**31 - 1, -(2**31), -(2**31) + 1], p, -p, p - 1,
                                   -p + 1, p + 1, rng.integers(-(2**31), 2**31, 40)]))
    ms = np.array([0, 1, 1 << 30, (1 << 30) + 1, 2**31 - 1, 1518500250, 1073741823,
                   -(1 << 30), -(2**31), *rng.integers(1 << 30, 2**31, 6)], np.int64)
    rows = []
    for shift in range(-31, 31):
        for m in ms:
            for x in xs:
                rows.append((x, m, shift))
    # ties: with m = 2^30 the high multiply halves x exactly when x is even; x/2 then sits
    # halfway between two multiples of 2^r for x = (2k + 1) * 2^r, both signs
    for r in range(1, 31):
        k = rng.integers(-(2**(30 - r)), 2**(30 - r), 8)
        for x in np.unique((2 * k + 1) << r):
            if -(2**31) <= x < 2**31:
                rows.append((x, 1 << 30, -r))
    rows = np.array(rows, np.int64)
    zp = rng.integers(-128, 128, len(rows))
    lo = rng.integers(-128, 0, len(rows))
    lo[::3] = -128
    hi = rng.integers(0, 128, len(rows))
    hi[::3] = 127
    return np.column_stack([rows, zp, lo, hi])


def _harness_rows(cases: np.ndarray) -> np.ndarray:
    """The harness's int32 rows: x0 (the case's x) and three neighbours x1..x3 (other
    cases' x, so the four lanes of the output stage hold unrelated values), then m,
    shift, z_y, act_min, act_max."""
    x = cases[:, 0]
    more = [np.roll(x, k) for k in (1, 7, 13)]
    return np.column_stack([x, *more, cases[:, 1:]]).astype(np.int32)


def _check_harness(cases: np.ndarray, raw: bytes, where: str) -> None:
    got = np.frombuffer(raw, np.int32).astype(np.int64)
    assert got.size == 5 * len(cases), f"{where}: {got.size} results for {len(cases)} cases"
    got = got.reshape(-1, 5)
    x, m, shift, zp, lo, hi = cases.T
    want = multiply_by_quantized_multiplier(x, m, shift)
    for column, rows in ((0, np.arange(len(cases))), (1, np.flatnonzero(m >= 0))):
        bad = rows[got[rows, column] != want[rows]]
        assert not len(bad), (f"{where}: {len(bad)} differ; first x={x[bad[0]]} m={m[bad[0]]} "
                              f"shift={shift[bad[0]]}: C {got[bad[0], column]} "
                              f"python {want[bad[0]]}")
    rows = np.flatnonzero(m[:20000] >= 0)
    want8 = np.array([requantize_tflite(np.array([a]), b, c, int(d), (int(e), int(f)))[0]
                      for a, b, c, d, e, f in cases[rows]])
    np.testing.assert_array_equal(got[rows, 2], want8, err_msg=where)
    positive = np.flatnonzero(m >= 0)
    np.testing.assert_array_equal(got[positive, 3], got[positive, 2], err_msg=where)
    assert not got[:, 4].any(), (f"{where}: the four-output stage differs from me_requantize "
                                 f"in {int((got[:, 4] != 0).sum())} cases")


def test_c_requantization_matches_requant_py(mlperf_runs, tmp_path: Path) -> None:
    """me_mul_by_quantized_multiplier == multiply_by_quantized_multiplier on every case, and
    for m >= 0 (what the planner lets through) so do the kernels' SMULL form
    me_mul_by_positive_multiplier and the output stage (zero point, clamp) ==
    requantize_tflite, and the q15 conv's per-channel stage me_requantize_channel on
    four outputs (DSP build: its C loop) == me_requantize, under ASan + UBSan."""
    gcc = need("gcc")
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "kws"))
    src = generate_c(graph, tmp_path / "c", "int", _inputs(graph, 2))
    (src / "harness.c").write_text(HARNESS)
    cases = _requant_cases()
    for extra in ([], ["-DMNIST_EDGE_DSP_EMULATION"]):
        exe = src / "harness"
        proc = subprocess.run([gcc, "-std=c99", *C_WARNINGS, *SANITIZE, *extra, "-o", str(exe),
                               "harness.c"], cwd=src, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = subprocess.run([str(exe)], input=_harness_rows(cases).tobytes(),
                             capture_output=True)
        assert run.returncode == 0, run.stderr.decode()[-2000:]
        _check_harness(cases, run.stdout, f"host {extra}")


def test_requantization_edge_cases_in_qemu_m4(mlperf_runs, tmp_path: Path) -> None:
    """The same cases as firmware on a Cortex-M4 in QEMU (-O2): there the q15 conv's
    four-output stage is the Thumb-2 one (SMULL/SMLAL, QADD16, SSUB16 + SEL), and so is
    the channel constants' (me_ch_requantize4, shifts -2 to -23), and every lane must
    equal me_requantize and requant.py, at every shift TFLite gives, at the int32 ends
    and on the rounding ties (dropping the sign from the channel constants' SMLAL fails)."""
    from mnist_edge.targets import firmware as f
    from mnist_edge.targets.boards import get_target

    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    board = get_target("qemu-m4")
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "kws"))
    fw = tmp_path / "fw"
    generate_c(graph, fw / "c", "int", _inputs(graph, 2))
    for name, data in f.render_firmware_files(graph, board, "qemu", "int", "-O2", 0).items():
        (fw / name).parent.mkdir(parents=True, exist_ok=True)
        (fw / name).write_bytes(data)
    (fw / "harness.c").write_text(HARNESS)
    (fw / "build").mkdir()  # the link map goes there
    srcs = ["harness.c", *(s for s in f.sources(board, "qemu")
                           if s != "qemu_main.c" and not s.startswith("c/"))]
    proc = subprocess.run([f.tool(board, "gcc"), *f.compile_flags(board, "-O2"),
                           "-DHARNESS_FIRMWARE", *f.link_flags(board), "-o", "harness.elf", *srcs,
                           "-lc", "-lgcc"], cwd=fw, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = _requant_cases()
    (fw / "cases.bin").write_bytes(_harness_rows(cases).tobytes())
    run = subprocess.run(f.qemu_command(board, fw / "harness.elf"), cwd=fw, capture_output=True,
                         text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, (run.stdout + run.stderr)[-2000:]
    _check_harness(cases, (fw / "out.bin").read_bytes(), "qemu-m4")


HARNESS_N = r"""
#include <stdio.h>
#include "mnist_edge_kernels.h"

/* Rows of 8 accumulators, their 8 multipliers and 8 shifts, z_y, act_min, act_max. */
int main(void)
{
    long long v[27];
    int i;
    for (;;) {
        int32_t acc[8], mult[8];
        int8_t shift[8], out[8];
        for (i = 0; i < 27; i++) {
            if (scanf("%lld", &v[i]) != 1) {
                return 0;
            }
        }
        for (i = 0; i < 8; i++) {
            acc[i] = (int32_t)v[i];
            mult[i] = (int32_t)v[8 + i];
            shift[i] = (int8_t)v[16 + i];
        }
        {
            const me_requant_params q = {mult, shift, (int32_t)v[24], (int32_t)v[25],
                                         (int32_t)v[26], 0, NULL};
            me_requantize_n(acc, 8, &q, 0, out);
        }
        for (i = 0; i < 8; i++) {
            printf("%d ", out[i]);
        }
        printf("\n");
    }
}
"""


def test_c_requantize_n_x86_matches_requant_py(tmp_path: Path) -> None:
    """The c-x86 build's requantize_n (eight channels to an AVX2 vector, each with its own
    multiplier and shift) == requantize_tflite on _requant_cases' m >= 0 rows: in their
    order (vectors with positive shifts, left to the portable loop) and with the shifts
    <= 0 shuffled across lanes, under ASan + UBSan."""
    gcc = need("gcc")
    graph = qgraph.load_run(_import(tmp_path, "dw", _depthwise(8, 1, 3, 3, 1, "SAME")))
    src = generate_c(graph, tmp_path / "c", "int", _inputs(graph, 2))
    (src / "harness.c").write_text(HARNESS_N)
    exe = src / "harness"
    proc = subprocess.run([gcc, "-std=c99", *C_WARNINGS, *SANITIZE, "-march=native",
                           "-DMNIST_EDGE_X86", "-o", str(exe), "harness.c", "mnist_edge_kernels.c",
                           "mnist_edge_kernels_x86.c"], cwd=src, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = _requant_cases()
    cases = cases[cases[:, 1] >= 0]
    rng = np.random.default_rng(3)
    rows = np.concatenate([cases, rng.permutation(cases[cases[:, 2] <= 0])])
    rows = rows[: len(rows) // 8 * 8].reshape(-1, 8, 6)
    x, m, shift = rows[:, :, 0], rows[:, :, 1], rows[:, :, 2]
    zp, lo, hi = rows[:, 0, 3], rows[:, 0, 4], rows[:, 0, 5]  # per call: the first lane's
    text = "\n".join(" ".join(map(str, [*a, *b, *c, d, e, f]))
                     for a, b, c, d, e, f in zip(x, m, shift, zp, lo, hi, strict=True)) + "\n"
    run = subprocess.run([str(exe)], input=text, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    got = np.array(run.stdout.split(), np.int64).reshape(-1, 8)
    want = np.clip(multiply_by_quantized_multiplier(x, m, shift) + zp[:, None], lo[:, None],
                   hi[:, None])
    bad = np.argwhere(got != want)
    assert not len(bad), (f"{len(bad)} differ; first x={x[tuple(bad[0])]} "
                          f"m={m[tuple(bad[0])]} shift={shift[tuple(bad[0])]}: "
                          f"C {got[tuple(bad[0])]} python {want[tuple(bad[0])]}")


# ------------------------------------------------------------- each kernel on its own

def _act(name: str, shape: list[int], scale: float, zp: int) -> dict:
    return dict(name=name, shape=shape, dtype="int8", scale=scale, zero_point=zp)


def _conv1x1(rng, name: str, cin: int, cout: int, s_in: float) -> list[dict]:
    scales = rng.uniform(0.004, 0.02, cout)
    return [dict(name=f"{name}_w", shape=[cout, 1, 1, cin], dtype="int8", scale=scales,
                 zero_point=[0] * cout, axis=0,
                 data=rng.integers(-127, 128, (cout, 1, 1, cin)).astype(np.int8)),
            dict(name=f"{name}_b", shape=[cout], dtype="int32", scale=scales * s_in,
                 zero_point=[0] * cout, data=rng.integers(-500, 500, cout).astype(np.int32))]


def _two_branch(op: str, activation: str = "NONE", same_quant: bool = False,
                swap: bool = False) -> bytes:
    """x -> CONV_2D 1x1 = a; OP(x, a) -> y (swap: OP(a, x)): a binary op on one graph input.
    a has the larger scale: ADD / SUB give it the multiplier of exactly one half."""
    rng = np.random.default_rng(len(op) + len(activation))
    shape = [1, 5, 6, 4]
    a_q = (0.05, -7) if same_quant else (0.11, 9)
    y_q = (0.05, -7) if same_quant else (0.09, 3)
    tensors = [_act("x", shape, 0.05, -7), *_conv1x1(rng, "c", 4, 4, 0.05),
               _act("a", shape, *a_q),
               _act("y", [1, 5, 6, 8] if op == "CONCATENATION" else shape, *y_q)]
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                options=dict(padding="SAME", stride_w=1, stride_h=1,
                             fused_activation="NONE")),
           dict(op=op, inputs=[3, 0] if swap else [0, 3], outputs=[4],
                options=dict(axis=3) if op == "CONCATENATION"
                else dict(fused_activation=activation))]
    return build(tensors, ops, [0], [4])


def _conv_pool(padding: str, kernel: int, stride: int) -> bytes:
    """x -> CONV_2D 1x1 (RELU) -> MAX_POOL_2D: fused when unpadded, its own kernel else."""
    rng = np.random.default_rng(kernel * 10 + stride)
    out = (8 + stride - 1) // stride if padding == "SAME" else (8 - kernel) // stride + 1
    tensors = [_act("x", [1, 8, 8, 3], 0.05, 2), *_conv1x1(rng, "c", 3, 6, 0.05),
               _act("a", [1, 8, 8, 6], 0.07, -128), _act("y", [1, out, out, 6], 0.07, -128)]
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                options=dict(padding="SAME", stride_w=1, stride_h=1, fused_activation="RELU")),
           dict(op="MAX_POOL_2D", inputs=[3], outputs=[4],
                options=dict(padding=padding, stride_w=stride, stride_h=stride,
                             filter_w=kernel, filter_h=kernel, fused_activation="NONE"))]
    return build(tensors, ops, [0], [4])


def _fc_softmax(units: int, features: int = 16) -> bytes:
    rng = np.random.default_rng(units)
    w = rng.integers(-127, 128, (units, features)).astype(np.int8)
    tensors = [_act("x", [1, features], 0.05, 3),
               dict(name="w", shape=[units, features], dtype="int8", scale=0.02, zero_point=0,
                    data=w),
               _act("z", [1, units], 0.12, -4), _act("y", [1, units], 1 / 256, -128)]
    ops = [dict(op="FULLY_CONNECTED", inputs=[0, 1, -1], outputs=[2],
                options=dict(fused_activation="NONE")),
           dict(op="SOFTMAX", inputs=[2], outputs=[3], options=dict(beta=1.0))]
    return build(tensors, ops, [0], [3])


def _fc_layers(first: int, layers: list[tuple[int, int, str, int]], seed: int,
               big_row: int | None = None) -> bytes:
    """x[1, first] -> one FULLY_CONNECTED per (in, out, activation, z_y), random int8
    weights (`big_row`: that row of the first layer all -127s)."""
    rng = np.random.default_rng(seed)
    tensors = [_act("x", [1, first], 0.05, 3)]
    ops = []
    for i, (cin, cout, act, zp) in enumerate(layers):
        s_in, s_w = tensors[-1]["scale"], 0.02
        s_out = s_in * s_w * 60 * 60 * cin ** 0.5 / 48  # about +-2.5 sigma over int8
        w = rng.integers(-127, 128, (cout, cin)).astype(np.int8)
        if i == 0 and big_row is not None:
            w[big_row] = -127
        tensors += [dict(name=f"w{i}", shape=[cout, cin], dtype="int8", scale=s_w,
                         zero_point=0, data=w),
                    dict(name=f"b{i}", shape=[cout], dtype="int32", scale=s_in * s_w,
                         zero_point=0, data=rng.integers(-3000, 3000, cout).astype(np.int32)),
                    _act(f"y{i}", [1, cout], s_out, zp)]
        n = len(tensors)
        ops.append(dict(op="FULLY_CONNECTED", inputs=[n - 4, n - 3, n - 2], outputs=[n - 1],
                        options=dict(fused_activation=act)))
    return build(tensors, ops, [0], [len(tensors) - 1])


def _fc_chain() -> bytes:
    """x[1, 21] -> FULLY_CONNECTED 21 -> 16 (the four-row C loop: 16 taps, its four-tap step
    and one scalar tap), 16 -> 9 (the Thumb-2 blocks, fc4_run: one 16-tap turn, 2 blocks,
    then one row), 9 -> 24 with RELU (z_y -4: a clamp, so the C loop), 24 -> 10 (fc4_run
    entered at its second 8 taps, then a whole turn; 2 blocks, then two rows)."""
    return _fc_layers(21, [(21, 16, "NONE", 5), (16, 9, "NONE", -3), (9, 24, "RELU", -4),
                           (24, 10, "NONE", 2)], 21)


def _fc_packed(big_row: bool = False) -> bytes:
    """x[1, 128] -> FULLY_CONNECTED 128 -> 64 (pair-packed, read from the int8 input:
    me_fcpk_run_s8, two turns of 64 taps), 64 -> 128 (the q15 copy, in <= out: me_fcpk_run,
    one turn), 128 -> 128 with RELU (z_y -4: a clamp, so the C loop over the packed
    layout), 128 -> 8 (me_fcpk_run_s8), 8 -> 4 (k = 8: rows of int8). `big_row`: 128 -> 64
    becomes 576 -> 64 with one row of -127s (sum |w| 73,152, past
    c_planner.pair_pack_bound_ok): that layer keeps the rows of int8."""
    first = 576 if big_row else 128
    return _fc_layers(first, [(first, 64, "NONE", 5), (64, 128, "NONE", 1),
                              (128, 128, "RELU", -4), (128, 8, "NONE", -3), (8, 4, "NONE", 2)],
                      26, 5 if big_row else None)


def _smlad(w: np.ndarray, x: np.ndarray) -> int:
    """The SMLADs of words w (uint32) and q15 pairs x ([..., 2]), summed (no wrap yet)."""
    h = w.astype("<u4").view("<i2").astype(np.int64).reshape(*w.shape, 2)
    return int((h * x).sum())


def test_pair_packed_decodes_and_its_algebra_is_exact() -> None:
    """c_arrays.pair_packed: the halfwords decode (low byte - 128, high byte signed) back to
    the weights; A = sum SMLAD(W, X), B = sum SMLAD(W & 0xFF00FF00, X) give row r = A - B -
    128 sum(x) (mod 2^32) and row r' = B / 256, B inside int32, at the bound's extreme:
    every weight -128 or 127 in rows of sum |w| up to 65,024 and x all -128 or 127."""
    from mnist_edge.backends.c_arrays import pair_packed
    from mnist_edge.backends.c_planner import pair_pack_bound_ok

    rng = np.random.default_rng(7)
    kk = 508  # 508 * 128 = 65,024: every row of -128s and 127s is in bound
    for w in (rng.integers(-128, 128, (8, kk)), np.where(rng.random((8, kk)) < 0.5, -128, 127),
              np.full((8, kk), -128)):
        w = w.astype(np.int64)
        assert pair_pack_bound_ok(w)
        words = pair_packed(w).astype(np.int8).view("<u4").reshape(2, kk // 4, 2, 2)
        halves = words.view("<i2").astype(np.int64).reshape(2, kk // 4, 2, 2, 2)
        lo, hi = (halves & 0xFF) - 128, halves >> 8  # [block][group][pair][word][half]
        taps = np.array([[0, 2], [1, 3]])
        for b in range(2):
            for pr in range(2):
                r = 4 * b + 2 * pr
                t = (4 * np.arange(kk // 4)[:, None, None] + taps).reshape(-1)
                np.testing.assert_array_equal(w[r, t], lo[b, :, pr].reshape(-1))
                np.testing.assert_array_equal(w[r + 1, t], hi[b, :, pr].reshape(-1))
        for x in (rng.integers(-128, 128, kk), np.full(kk, -128), np.full(kk, 127),
                  np.where(w[1] < 0, -128, 127)):
            xq = x[(4 * np.arange(kk // 4)[:, None, None] + taps)]  # [group][word][half]
            for b in range(2):
                for pr in range(2):
                    r = 4 * b + 2 * pr
                    wd = words[b, :, pr]
                    a = _smlad(wd, xq)
                    bb = _smlad(wd & 0xFF00FF00, xq)
                    assert -2**31 <= bb < 2**31 and bb % 256 == 0
                    assert ((a - bb - 128 * x.sum()) - w[r] @ x) % 2**32 == 0
                    assert bb // 256 == w[r + 1] @ x


def test_winograd_algebra_is_exact_and_its_bound_holds() -> None:
    """Winograd F(2 x 2, 3 x 3) as me_conv3x3_winograd_s8 computes it: A'^T [(G g G^T) .
    (B^T d B)] A' (G with its middle rows doubled, A' with its outer columns) is 4 times
    the direct 3 x 3 correlation for int8 tiles and kernels (random, and every value -128
    or 127), |B^T d B| <= 512 and |G g G^T| <= 1152 (int16 lanes), and every element's
    product is at most the one the bound counts, (2G) g (2G)^T's; the bound refuses 406
    input channels of -128 kernels (9 * 512 * 406 * 1152 >= 2^31) and takes 404."""
    from mnist_edge.backends.c_planner import winograd_bound_ok, winograd_weights

    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    g_kernel = np.array([[1, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 1]])
    at_kernel = np.array([[2, 1, 1, 0], [0, 1, -1, -2]])
    rng = np.random.default_rng(11)
    tiles = [rng.integers(-128, 128, (4, 4)), np.where(rng.random((4, 4)) < 0.5, -128, 127),
             np.full((4, 4), -128)]
    kernels = [rng.integers(-128, 128, (3, 3)), np.where(rng.random((3, 3)) < 0.5, -128, 127),
               np.full((3, 3), -128)]
    for d in tiles:
        v = bt @ d @ bt.T
        assert np.abs(v).max() <= 512
        for g in kernels:
            u = g_kernel @ g @ g_kernel.T
            assert np.abs(u).max() <= 1152
            assert np.all(np.abs(u) <= np.abs(winograd_weights(g[None, None])[0, 0]))
            direct = np.array([[(d[i:i + 3, j:j + 3] * g).sum() for j in range(2)]
                               for i in range(2)])
            np.testing.assert_array_equal(at_kernel @ (u * v) @ at_kernel.T, 4 * direct)
    assert not winograd_bound_ok(np.full((2, 406, 3, 3), -128))
    assert winograd_bound_ok(np.full((2, 404, 3, 3), -128))


def test_pair_pack_bound_refuses_an_over_bound_layer(tmp_path: Path) -> None:
    """One row of sum |w| = 65,536 is refused (the bound is strict); a 576-input layer with
    a row of -127s keeps the rows of int8 (no packed initializer, me_fully_connected_s8); its
    exactness:
    test_dsp_loops_and_their_tails[fc_packed_over_bound]."""
    from mnist_edge.backends.c_planner import is_pair_packed, pair_pack_bound_ok, plan_arena

    w = np.zeros((4, 1024), np.int64)
    w[2, :512] = 128
    assert not pair_pack_bound_ok(w)
    w[2, 0] = 127
    assert pair_pack_bound_ok(w)
    run_dir = _import(tmp_path, "fc_over_bound", _fc_packed(big_row=True))
    graph = qgraph.load_run(run_dir)
    packed = [is_pair_packed(graph, s) for s in plan_arena(graph).steps if s.kind == "linear"]
    assert packed == [False, True, True, True, False]
    src = generate_c(graph, tmp_path / "c", "int", None)
    assert (src / "mnist_edge_weights.c").read_text().count("#if ME_PAIR_PACKED") == 3
    model = (src / "mnist_edge_model.c").read_text()
    assert model.count(".packed_x = NULL") == 3  # 576 -> 64, 128 -> 8 (in > out), 8 -> 4
    assert model.count("me_fully_connected_packed_s8(") == 3


def _fixture_cases() -> dict:
    import test_tflite_fixtures as fx
    import test_tflite_ops as later

    cases = {k: v for k, v in fx.CASES.items() if k not in (
        "add_broadcast", "mul_broadcast_relu6", "sub", "mul", "concat", "softmax",
        "conv_dilated")}
    cases.update({
        "add_relu6": lambda: _two_branch("ADD", "RELU6"),
        "sub_two_branch": lambda: _two_branch("SUB"),
        "sub_larger_scale_first": lambda: _two_branch("SUB", "RELU", swap=True),
        "mul_relu": lambda: _two_branch("MUL", "RELU"),
        "concat_two_branch": lambda: _two_branch("CONCATENATION", same_quant=True),
        "conv_maxpool_fused": lambda: _conv_pool("VALID", 2, 2),
        "conv_maxpool_overlapping": lambda: _conv_pool("VALID", 3, 2),
        "conv_maxpool_same_padded": lambda: _conv_pool("SAME", 3, 2),
        "fc_softmax_10": lambda: _fc_softmax(10),
        "fc_softmax_300": lambda: _fc_softmax(300),
    })
    # MEAN, broadcasting ADD/SUB/MUL, PAD, RESHAPE; HARD_SWISH, QUANTIZE and a constant
    # operand lower to the lut kernel like every table, so one case each stands for them
    # (the suite's time)
    cases.update({k: v for k, v in later.CASES.items()
                  if not k.startswith(("hard_swish_", "requantize_", "add_constant",
                                       "mul_constant")) or k == "requantize_up"})
    return cases


CASES = _fixture_cases()
X86_CASES = {"add_relu6", "sub_two_branch",  # c-x86 has its own ADD / SUB: run it as well
             "sub_larger_scale_first"}
M55_CASES = {"sub_larger_scale_first"}  # the Helium build's ADD / SUB (tfl_add_mve)


def _import(tmp_path: Path, case: str, data: bytes) -> Path:
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(data)
    return import_tflite(path, tmp_path / "runs", None)[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_kernel_exact(case: str, tmp_path: Path) -> None:
    from mnist_edge import golden
    from mnist_edge.backends.c import c_inputs
    from mnist_edge.targets import host_c

    run_dir = _import(tmp_path, case, CASES[case]())
    graph = qgraph.load_run(run_dir)
    assert graph.arithmetic == "tflite"
    x = _inputs(graph, 40, seed=len(case))
    src = generate_c(graph, tmp_path / "c", "int", x[:4])
    exe = tmp_path / "runner"
    want = golden.run_int8(graph, x)  # a CxHxW output in CHW order, as golden has it
    for extra in ((), *((("-march=native", "-DMNIST_EDGE_X86"),) if case in X86_CASES else ())):
        host_c.compile_runner(src, exe, cflags=("-std=c99", "-O1", *C_WARNINGS, *SANITIZE[1:],
                                                *extra))
        got, _ = host_c.run_runner(exe, c_inputs(graph, x), graph.output.size)
        bad = np.flatnonzero(np.any(got != want, axis=1))
        assert not len(bad), (f"{case} {extra}: {len(bad)}/{len(x)} inputs differ; first "
                              f"{bad[0]}: C {got[bad[0]][:12]} golden {want[bad[0]][:12]}")
    if case in M55_CASES:
        need("arm-none-eabi-gcc")
        need("qemu-system-arm")
        _exact(run_dir, "qemu-m55", x[:8])


def _depthwise(cin: int, mult: int, kh: int, kw: int, stride: int, padding: str,
               w_scales: tuple[float, float] = (0.002, 0.02),
               hw: tuple[int, int] = (7, 9)) -> bytes:
    """x[1, 7, 9, cin] (or hw) -> DEPTHWISE_CONV_2D (RELU6) with weights across the whole
    int8 range (weight scales drawn from w_scales: the default gives shifts of -6 to -9;
    (0.3, 1.2) gives multipliers of 0.15 to 0.6, shifts of -2, -1 and 0)."""
    rng = np.random.default_rng(cin * 100 + mult * 10 + kh)
    cout = cin * mult
    h, w = hw if padding == "SAME" else (hw[0] - kh + 1, hw[1] - kw + 1)
    h, w = (h + stride - 1) // stride, (w + stride - 1) // stride
    scales = rng.uniform(*w_scales, cout)
    tensors = [_act("x", [1, *hw, cin], 0.04, -3),
               dict(name="w", shape=[1, kh, kw, cout], dtype="int8", scale=scales,
                    zero_point=[0] * cout, axis=3,
                    data=rng.integers(-127, 128, (1, kh, kw, cout)).astype(np.int8)),
               dict(name="b", shape=[cout], dtype="int32", scale=scales * 0.04,
                    zero_point=[0] * cout, data=rng.integers(-900, 900, cout).astype(np.int32)),
               _act("y", [1, h, w, cout], 0.08, 5)]
    opts = dict(padding=padding, stride_w=stride, stride_h=stride, dilation_w=1, dilation_h=1,
                fused_activation="RELU6", depth_multiplier=mult)
    return build(tensors, [dict(op="DEPTHWISE_CONV_2D", inputs=[0, 1, 2], outputs=[3],
                                options=opts)], [0], [3])


DEPTHWISE = {  # (in_c, multiplier, kh, kw, stride, padding): blocks of 4 and a tail, 9 taps or not
    "c12_3x3_s1_same": (12, 1, 3, 3, 1, "SAME"),
    "c6_3x3_s2_same": (6, 1, 3, 3, 2, "SAME"),
    "c8_5x3_s1_valid": (8, 1, 5, 3, 1, "VALID"),
    "c5_m2_3x5_s2_same": (5, 2, 3, 5, 2, "SAME"),  # a width other than 3, a multiplier
    "c8_3x3_s1_same_big_multipliers": (8, 1, 3, 3, 1, "SAME", (0.3, 1.2)),
    # no padding, the last window short of the right edge (the ring's lines hold 7 of 9)
    "c8_3x3_s4_valid": (8, 1, 3, 3, 4, "VALID"),
    # the DSP cores' channel-major planes (64 output pixels or more, in_c >= 22 here):
    # 9 x 9 (an odd column of sums, an odd count of outputs), and 9 x 8
    "c24_3x3_s1_same_planes": (24, 1, 3, 3, 1, "SAME", (0.002, 0.02), (9, 9)),
    "c24_3x3_s1_valid_planes": (24, 1, 3, 3, 1, "VALID", (0.002, 0.02), (11, 10)),
}


@pytest.mark.parametrize("case", sorted(DEPTHWISE))
def test_depthwise_kernel_every_path(case: str, tmp_path: Path) -> None:
    """The depthwise kernel's portable, DSP (SXTB16/SMLAxy emulated in C) and x86 (SSE2
    and -march=native) builds all equal golden, under ASan + UBSan: 4-channel blocks, a
    channel tail, a channel multiplier, padding, stride 2, a kernel of other than 9 taps,
    requantization shifts of -1 and 0 (which the Thumb-2 requantization leaves to C); the
    DSP build's channel-major planes where the layer is large enough (the `_planes` cases,
    and only those)."""
    from mnist_edge import golden
    from mnist_edge.backends.c import c_inputs
    from mnist_edge.backends.c_planner import depthwise_planes_bytes, plan_arena
    from mnist_edge.targets import host_c

    graph = qgraph.load_run(_import(tmp_path, case, _depthwise(*DEPTHWISE[case])))
    x = _inputs(graph, 24, seed=len(case))
    src = generate_c(graph, tmp_path / "c", "int", x[:4])
    assert "tfl_depthwise_conv2d_s8(" in (src / "mnist_edge_model.c").read_text()
    planes = [depthwise_planes_bytes(graph, s) for s in plan_arena(graph).steps]
    assert (max(planes) > 0) == case.endswith("_planes"), planes  # the path under test
    want = golden.run_int8(graph, x)
    sse2 = (("-DMNIST_EDGE_X86",),) if case == min(DEPTHWISE) else ()  # one case does
    for extra in ((), ("-DMNIST_EDGE_DSP_EMULATION",), *sse2,
                  ("-march=native", "-DMNIST_EDGE_X86")):  # SSE2 alone; AVX2 / VNNI
        exe = tmp_path / "runner"
        host_c.compile_runner(src, exe, cflags=("-std=c99", "-O1", *C_WARNINGS, *SANITIZE[1:],
                                                *extra))
        got, _ = host_c.run_runner(exe, c_inputs(graph, x), graph.output.size)
        bad = np.flatnonzero(np.any(got != want, axis=1))
        assert not len(bad), f"{case} {extra}: {len(bad)}/{len(x)} inputs differ"


@pytest.mark.parametrize("shape", [(5, 2, 5, 3, 2, "SAME", (0.3, 1.2)),
                                   (6, 1, 3, 3, 1, "SAME")])
def test_helium_depthwise_every_path(shape: tuple, tmp_path: Path) -> None:
    """The Cortex-M55's Helium depthwise kernel (tfl_depthwise_mve) beyond the 3x3 blocks
    of whole channel blocks, two pixels at a time, that the MLPerf models run
    (test_mlperf_qemu_m55_exact): 5 x 3 taps (the taps loop), a channel multiplier of 2
    (gather loads), 10 channels (a 2-channel VCTP tail), stride 2, requantization shifts of
    -2 to 0 (the vector requantization's VRSHL by 0); then 3 x 3 over 6 channels: one
    block a pixel, then its 2-channel tail."""
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    run_dir = _import(tmp_path, "dw", _depthwise(*shape))
    _exact(run_dir, "qemu-m55", _inputs(qgraph.load_run(run_dir), 8, seed=4))


def _conv_chain(cin0: int, layers: list[tuple], seed: int, scales: tuple[float, float],
                hw: tuple[int, int] = (9, 9)) -> tuple[list[dict], list[dict], int, int]:
    """x[1, h, w, cin0] (9 x 9 unless `hw`) -> a CONV_2D chain of layers (cin, cout, kh, kw,
    stride, padding, activation), weight scales drawn from `scales`: the tensors, the ops
    and the last output's height and width."""
    rng = np.random.default_rng(seed)
    h, w = hw
    tensors = [_act("x", [1, h, w, cin0], 0.05, -7)]
    ops = []
    for i, (cin, cout, kh, kw, stride, padding, act) in enumerate(layers):
        if padding == "VALID":
            h, w = h - kh + 1, w - kw + 1
        h, w = (h + stride - 1) // stride, (w + stride - 1) // stride
        scale = rng.uniform(*scales, cout)
        s_in = tensors[-1]["scale"]
        tensors += [dict(name=f"w{i}", shape=[cout, kh, kw, cin], dtype="int8", scale=scale,
                         zero_point=[0] * cout, axis=0,
                         data=rng.integers(-127, 128, (cout, kh, kw, cin)).astype(np.int8)),
                    dict(name=f"b{i}", shape=[cout], dtype="int32", scale=scale * s_in,
                         zero_point=[0] * cout,
                         data=rng.integers(-900, 900, cout).astype(np.int32)),
                    _act(f"y{i}", [1, h, w, cout], 0.06 + 0.01 * i, -128 if act != "NONE"
                         else 4 - i)]
        n = len(tensors)
        ops.append(dict(op="CONV_2D", inputs=[n - 4, n - 3, n - 2], outputs=[n - 1],
                        options=dict(padding=padding, stride_w=stride, stride_h=stride,
                                     fused_activation=act)))
    return tensors, ops, h, w


def _small_channel_convs() -> bytes:
    """x[1, 9, 9, 3] -> CONV_2D chain whose in_c is not a multiple of 4, then one with a
    fused 2 x 2 max pool: windows of 27, 15, 6 and 18 taps (the q15 conv's whole words, its
    four-tap step and a 1-3 tap tail), stride 2, SAME and VALID padding."""
    tensors, ops, h, w = _conv_chain(3, [
        (3, 5, 3, 3, 1, "SAME", "RELU"), (5, 3, 1, 3, 1, "VALID", "NONE"),
        (3, 6, 1, 2, 1, "VALID", "RELU6"), (6, 4, 3, 1, 2, "SAME", "NONE"),
        (4, 3, 1, 1, 1, "VALID", "NONE"), (3, 4, 3, 3, 1, "SAME", "RELU")], 41, (0.004, 0.02))
    tensors.append(_act("p", [1, h // 2, w // 2, 4], tensors[-1]["scale"], -128))
    ops.append(dict(op="MAX_POOL_2D", inputs=[len(tensors) - 2], outputs=[len(tensors) - 1],
                    options=dict(padding="VALID", stride_w=2, stride_h=2, filter_w=2,
                                 filter_h=2, fused_activation="NONE")))
    return build(tensors, ops, [0], [len(tensors) - 1])


def _row_windows() -> bytes:
    """x[1, 9, 9, 8] -> 3-wide stride-1 CONV_2D chain (the Thumb-2 im2col of one row's four
    windows from six columns): in_c 8, 16, 24 and 12 (not a multiple of 8: the window by
    window im2col), rows of 9 and 5 (four positions across a row's end), 5 rows tall (two
    padding rows above and below), SAME and VALID, a padding column on the left, the right
    and, for a row of 4, both; RELU6 (the clamp)."""
    tensors, ops, _, _ = _conv_chain(8, [
        (8, 16, 3, 3, 1, "SAME", "RELU"), (16, 24, 5, 3, 1, "SAME", "NONE"),
        (24, 8, 3, 3, 1, "VALID", "RELU6"), (8, 12, 3, 3, 1, "VALID", "NONE"),
        (12, 8, 3, 3, 1, "SAME", "RELU"), (8, 8, 1, 2, 1, "VALID", "NONE"),
        (8, 16, 3, 3, 1, "SAME", "RELU")], 43, (0.002, 0.01))
    return build(tensors, ops, [0], [len(tensors) - 1])


def _winograd_convs() -> bytes:
    """x[1, 11, 15, 8] -> 1 x 1 convs to 48 channels and back (they set the arena, so the Winograd
    layers get several rows of tiles a pass), then a 3 x 3 stride-1 CONV_2D chain that the DSP
    builds run as Winograd F(2 x 2, 3 x 3) (c_planner.is_winograd) where in_c % 4 == 0: in_c 4,
    16, 12, 8 and 32 (the dot's loops: 4 one turn of two lane pairs, 8 and 12 more turns, 16 and
    32 eight a turn, 32 a second turn); 11 rows (a last row of tiles half outside), 15, 13 and
    11 wide (a last quad of tiles with 7, 5 and 3 outputs: a last tile with one, a row's second
    four outputs with 3 and 1, its first four with 3), SAME (padding reads z_x) and VALID, 7
    output channels (an odd last one), RELU and RELU6 (12 -> 8: a range narrower than int8,
    clamped); in_c 7 between them takes the direct conv."""
    tensors, ops, _, _ = _conv_chain(8, [
        (8, 48, 1, 1, 1, "VALID", "NONE"), (48, 4, 1, 1, 1, "VALID", "RELU"),
        (4, 16, 3, 3, 1, "SAME", "RELU"), (16, 7, 3, 3, 1, "VALID", "NONE"),
        (7, 12, 3, 3, 1, "SAME", "RELU6"), (12, 8, 3, 3, 1, "SAME", "RELU6"),
        (8, 32, 3, 3, 1, "VALID", "NONE"), (32, 6, 3, 3, 1, "SAME", "RELU")], 47,
        (0.002, 0.01), hw=(11, 15))
    return build(tensors, ops, [0], [len(tensors) - 1])


def _pointwise_small() -> bytes:
    """x[1, 5, 7, 8] -> 1 x 1 CONV_2D chain over 8 and 16 input channels (the Thumb-2
    pointwise kernels): 8 -> 16 with RELU (z_y 3: the clamp), 16 -> 8 with none (int8's
    whole range), 8 -> 4 with multipliers of one half or more (shifts of -1 and 0: the C
    requantization), 4 -> 8 (in_c 4: the general conv), 8 -> 16 with none (the 8-channel
    function), 16 -> 16 with RELU (the q15 channel function's clamp), 16 -> 12 and 12 -> 8
    with every other weight scale 1e-7 and one 1e-13 (shifts below -23, z_y added after
    the shift, and a multiplier of 0; k = 16, then 12: the loop entered part-way). 35
    positions: 8 blocks of 4 and 3 left to the C loop. Then 8 -> 16, a 1 x 3 conv 16 -> 16
    with RELU (k = 48) and 16 -> 16 with none over 5 x 5: 6 blocks and a lone last
    position (me_q15_ch1, with the clamp, then without). On the DSP builds the 16 -> 16
    convs take me_conv2d_packed_s8 (c_planner.is_pair_packed; _pointwise_packed tests
    it): 16 -> 14 with the tiny scales, then 14 -> 16 and 16 -> 14 twice, with RELU and
    without, at the end keep the q15 channel functions' k = 16 paths (z_y after the shift;
    a lone last position, me_q15_ch1, with the clamp and without)."""
    return _pointwise_chain(8, (5, 7), [
        (8, 16, "RELU", 3, (0.004, 0.02)), (16, 8, "NONE", -6, (0.004, 0.02)),
        (8, 4, "NONE", 2, (0.6, 1.5)), (4, 8, "RELU6", -128, (0.004, 0.02)),
        (8, 16, "NONE", -5, (0.004, 0.02)), (16, 16, "RELU", 3, (0.004, 0.02)),
        (16, 12, "NONE", 4, "tiny"), (12, 8, "NONE", -2, "tiny"),
        (8, 16, "NONE", 1, (0.004, 0.02)), (16, 16, "RELU", 3, (0.004, 0.02), 3),
        (16, 16, "NONE", -6, (0.004, 0.02)), (16, 14, "NONE", 4, "tiny"),
        (14, 16, "NONE", -6, (0.004, 0.02)), (16, 14, "RELU", 3, (0.004, 0.02)),
        (14, 16, "NONE", -6, (0.004, 0.02)), (16, 14, "NONE", -6, (0.004, 0.02))], 43)


def _pointwise_packed() -> bytes:
    """x[1, 5, 7, 16] -> 1 x 1 CONV_2D chain that the DSP builds run as
    me_conv2d_packed_s8 (c_planner.is_pair_packed: k >= 16, out_c >= 8, a multiple of 4):
    in_c 16, 20, 24 and 28 (the loop entered 0, 3, 2 and 1 turns in), RELU (z_y 3) and
    RELU6 (the clamp), shifts below -23 and a multiplier of 0 (z_y added after the shift:
    me_pw3_run_z), multipliers of one half or more (the C pass); 35 positions (a last pass
    of 2), then a 1 x 3 conv to 5 x 5 (25: a last pass of 1, with and without z_y after
    the shift)."""
    return _pointwise_chain(16, (5, 7), [
        (16, 16, "RELU", 3, (0.004, 0.02)), (16, 20, "NONE", -6, (0.004, 0.02)),
        (20, 24, "RELU6", -128, (0.004, 0.02)), (24, 16, "NONE", 4, "tiny"),
        (16, 28, "NONE", 2, (0.6, 1.5)), (28, 16, "RELU", -128, (0.004, 0.02)),
        (16, 16, "NONE", 1, (0.004, 0.02), 3), (16, 20, "RELU", 3, (0.004, 0.02)),
        (20, 16, "NONE", -2, "tiny")], 53)


def _packed_convs() -> bytes:
    """x[1, 9, 9, 3] -> CONV_2D chain that the DSP builds run as me_conv2d_packed_s8 beyond
    1 x 1: 3 x 2 over 3 channels (the byte window, k = 18 padded to 20: entered 3 turns
    in), back to 3 channels (a direct 1 x 1), 3 x 3 SAME over 3 (the RGB first layers'
    window, im2col27, inside the image; the byte window at its edges), 5 x 4 stride 2 SAME
    over 16 (k = 320; padding reads z_x; 25 positions: a last pass of 1), 1 x 1 stride 2
    (the pixel window, k = 20), 3 x 3 stride 1 SAME over a 3-wide image (is_winograd
    leaves it: the q15 im2col), then 3 x 3 VALID to one pixel."""
    tensors, ops, _, _ = _conv_chain(3, [
        (3, 16, 3, 2, 1, "SAME", "RELU"), (16, 3, 1, 1, 1, "VALID", "NONE"),
        (3, 16, 3, 3, 1, "SAME", "RELU"), (16, 20, 5, 4, 2, "SAME", "RELU6"),
        (20, 16, 1, 1, 2, "VALID", "NONE"), (16, 16, 3, 3, 1, "SAME", "RELU"),
        (16, 16, 3, 3, 1, "VALID", "NONE")], 59, (0.002, 0.01))
    return build(tensors, ops, [0], [len(tensors) - 1])


def _pointwise_chain(cin0: int, hw: tuple[int, int], layers: list[tuple], seed: int) -> bytes:
    """x[1, h, w, cin0] -> a VALID stride-1 CONV_2D chain of layers (cin, cout, activation,
    z_y, weight scales or "tiny" [every other channel's scale 1e-7, one 1e-13], optional
    kernel width): 1 x 1 unless a width is given."""
    rng = np.random.default_rng(seed)
    h, w = hw
    tensors = [_act("x", [1, h, w, cin0], 0.05, -7)]
    ops = []
    for i, (cin, cout, act, zp, w_scales, *kernel_w) in enumerate(layers):
        kw = kernel_w[0] if kernel_w else 1
        w -= kw - 1
        if w_scales == "tiny":
            scales = rng.uniform(0.004, 0.02, cout)
            scales[::2] *= 1e-7
            scales[1] = 1e-13
        else:
            scales = rng.uniform(*w_scales, cout)
        s_in = tensors[-1]["scale"]
        tensors += [dict(name=f"w{i}", shape=[cout, 1, kw, cin], dtype="int8", scale=scales,
                         zero_point=[0] * cout, axis=0,
                         data=rng.integers(-127, 128, (cout, 1, kw, cin)).astype(np.int8)),
                    dict(name=f"b{i}", shape=[cout], dtype="int32", scale=scales * s_in,
                         zero_point=[0] * cout,
                         data=rng.integers(-900, 900, cout).astype(np.int32)),
                    _act(f"y{i}", [1, h, w, cout], 0.05, zp)]
        n = len(tensors)
        ops.append(dict(op="CONV_2D", inputs=[n - 4, n - 3, n - 2], outputs=[n - 1],
                        options=dict(padding="VALID", stride_w=1, stride_h=1,
                                     fused_activation=act)))
    return build(tensors, ops, [0], [len(tensors) - 1])


def _average_pools() -> bytes:
    """x[1, 18, 18, 6] -> AVERAGE_POOL_2D 17 x 17 (289 taps: summed one channel at a time)
    -> AVERAGE_POOL_2D 2 x 2 SAME (1, 2 or 4 taps: four channels a word, then two)."""
    pool = dict(padding="VALID", stride_w=1, stride_h=1, filter_w=17, filter_h=17,
                fused_activation="NONE")
    return build([_act("x", [1, 18, 18, 6], 0.05, -3), _act("m", [1, 2, 2, 6], 0.05, -3),
                  _act("y", [1, 2, 2, 6], 0.05, -3)],
                 [dict(op="AVERAGE_POOL_2D", inputs=[0], outputs=[1], options=pool),
                  dict(op="AVERAGE_POOL_2D", inputs=[1], outputs=[2],
                       options=dict(pool, padding="SAME", filter_w=2, filter_h=2,
                                    fused_activation="RELU"))], [0], [2])


DSP_LOOPS = {"small_channel_convs": _small_channel_convs, "row_windows": _row_windows,
             "winograd_convs": _winograd_convs,
             "fc_chain": _fc_chain, "fc_packed": _fc_packed,
             "fc_packed_over_bound": lambda: _fc_packed(big_row=True),
             "average_pools": _average_pools,
             "depthwise_c12_3x3": lambda: _depthwise(*DEPTHWISE["c12_3x3_s1_same"]),
             "depthwise_c8_5x3": lambda: _depthwise(*DEPTHWISE["c8_5x3_s1_valid"]),
             "depthwise_c6_3x3_s2": lambda: _depthwise(*DEPTHWISE["c6_3x3_s2_same"]),
             "pointwise_small": _pointwise_small, "pointwise_packed": _pointwise_packed,
             "packed_convs": _packed_convs,
             "sub_two_branch": lambda: _two_branch("SUB"),
             "depthwise_big_multipliers":
                 lambda: _depthwise(*DEPTHWISE["c8_3x3_s1_same_big_multipliers"]),
             "depthwise_c8_3x3_s4_valid": lambda: _depthwise(*DEPTHWISE["c8_3x3_s4_valid"]),
             "depthwise_planes": lambda: _depthwise(*DEPTHWISE["c24_3x3_s1_same_planes"]),
             "depthwise_planes_valid":
                 lambda: _depthwise(*DEPTHWISE["c24_3x3_s1_valid_planes"])}


@pytest.mark.parametrize("case", sorted(DSP_LOOPS))
def test_dsp_loops_and_their_tails(case: str, tmp_path: Path) -> None:
    """Convs whose in_c is not a multiple of 4 take the q15 conv on DSP cores (the byte
    window unpacked, a 1-3 tap tail); fully connected layers take the four-row C loop
    with its tails or, where k is a multiple of 8, the Thumb-2 blocks (_fc_chain); average
    pools sum four channels a word when the window has at most 256 taps;
    depthwise blocks of 4 channels take 9 taps unrolled or three taps a turn (15 taps), a
    2-channel tail after them, and the C requantization where a shift is -1 or 0; 1 x 1
    convs over 8 and 16 channels take the pointwise kernels; a SUB without broadcast its
    tables; 3-wide stride-1 convs one row's four windows from six columns; 3 x 3 stride-1
    depthwise layers of 64 pixels or more the channel-major planes (two outputs of a column
    a turn, then an odd count's last one, clamped or not). Exact with the
    DSP path emulated on the host under ASan + UBSan (the C loops), and in QEMU on a
    Cortex-M4 (the Thumb-2 loops and intrinsics). The 1 x 1 convs also on the Cortex-M55,
    whose Helium build takes the DSP kernel for the 8-channel one (conv2d_dsp_shorter):
    its Thumb-2 loops must then be in the M55 image, and exact. The packed convs also on
    the Cortex-M55, whose MVE conv reads a 3 x 3 x 3 window inside the image as 7 words
    (window27_s8)."""
    from mnist_edge import golden
    from mnist_edge.backends.c import c_inputs
    from mnist_edge.targets import host_c

    run_dir = _import(tmp_path, case, DSP_LOOPS[case]())
    graph = qgraph.load_run(run_dir)
    x = _inputs(graph, 16, seed=9)
    src = generate_c(graph, tmp_path / "c", "int", x[:4])
    exe = tmp_path / "runner"
    host_c.compile_runner(src, exe, cflags=("-std=c99", "-O1", *C_WARNINGS, *SANITIZE[1:],
                                            "-DMNIST_EDGE_DSP_EMULATION"))
    got, _ = host_c.run_runner(exe, c_inputs(graph, x), graph.output.size)
    np.testing.assert_array_equal(got, golden.run_int8(graph, x))
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    _exact(run_dir, "qemu-m4", x[:6])
    if case == "packed_convs":  # Helium's conv reads the RGB windows inside the image whole
        _exact(run_dir, "qemu-m55", x[:6])
    if case == "pointwise_small":  # the DSP kernel's Thumb-2 loops assemble and run there
        from mnist_edge.targets.mcu_bench import map_sections

        _exact(run_dir, "qemu-m55", x[:6])

        placed = {name: Path(obj).name for name, _, obj in
                  map_sections(run_dir / "firmware" / "qemu-m55" / "build" / "firmware.map")}
        assert placed[".text.me_conv1x1_small"] == "mnist_edge_kernels.o"
        assert placed[".text.me_conv2d_s8"] == "mnist_edge_kernels_mve.o"


def test_dilated_conv_is_refused_by_name(tmp_path: Path) -> None:
    import test_tflite_fixtures as fx

    graph = qgraph.load_run(_import(tmp_path, "dilated", fx.CASES["conv_dilated"]()))
    with pytest.raises(MnistEdgeError, match=r"conv2d.*dilation \[2, 2\] in the tflite"):
        render_tree(graph)


def test_other_backends_still_refuse_tflite(mlperf_runs, tmp_path: Path) -> None:
    from mnist_edge.backends.rtl import generate_rtl

    graph = qgraph.load_run(mlperf_run(mlperf_runs, "ad"))
    for call, name in ((lambda: generate_rtl(graph, tmp_path / "rtl"), "RTL"),):
        # the RTL implements the tflite arithmetic (tests/test_rtl_tflite.py) but reads images
        with pytest.raises(MnistEdgeError, match=f"the {name} backend reads an image"):
            call()
