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


@pytest.mark.parametrize("backend", ["c", "c-int"])
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
    under ASan + UBSan, portable and with the emulated Arm DSP path."""
    run_dir = mlperf_run(mlperf_runs, key)
    graph = qgraph.load_run(run_dir)
    src = generate_c(graph, tmp_path / "c", "int", _inputs(graph, 8, seed=7))
    _selftest(src, SANITIZE)
    _selftest(src, [*SANITIZE, "-DMNIST_EDGE_DSP_EMULATION"], "selftest_dsp")


def test_requant_option_does_not_apply_to_tflite(mlperf_runs) -> None:
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "kws"))
    pixels = _inputs(graph, 4)
    assert render_tree(graph, "float", pixels) == render_tree(graph, "int", pixels)


# ------------------------------------------------------------- the C requantization

HARNESS = r"""
#include <stdio.h>
#include "mnist_edge_kernels.c" /* the static helpers, as the kernels use them */

int main(void)
{
    long long x, m, shift, zp, lo, hi;
    while (scanf("%lld %lld %lld %lld %lld %lld", &x, &m, &shift, &zp, &lo, &hi) == 6) {
        const int32_t mult = (int32_t)m;
        const int8_t sh = (int8_t)shift;
        const me_requant_params q = {&mult, &sh, (int32_t)zp, (int32_t)lo, (int32_t)hi, NULL};
        printf("%ld %ld %d\n", (long)me_mul_by_quantized_multiplier((int32_t)x, (int32_t)m,
                                                                    (int32_t)shift),
               m >= 0 ? (long)me_mul_by_positive_multiplier((int32_t)x, (int32_t)m,
                                                             (int32_t)shift) : 0L,
               m >= 0 ? (int)me_requantize((int32_t)x, &q, 0) : 0);
    }
    return 0;
}
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


def test_c_requantization_matches_requant_py(mlperf_runs, tmp_path: Path) -> None:
    """me_mul_by_quantized_multiplier == multiply_by_quantized_multiplier on every case, and
    for m >= 0 (what the planner lets through) so do the kernels' SMULL form
    me_mul_by_positive_multiplier and the output stage (zero point, clamp) ==
    requantize_tflite, under ASan + UBSan."""
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
        text = "\n".join(" ".join(str(int(v)) for v in row) for row in cases) + "\n"
        run = subprocess.run([str(exe)], input=text, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        got = np.array(run.stdout.split(), np.int64).reshape(-1, 3)
        x, m, shift, zp, lo, hi = cases.T
        want = multiply_by_quantized_multiplier(x, m, shift)
        for column, rows in ((0, np.arange(len(cases))), (1, np.flatnonzero(m >= 0))):
            bad = rows[got[rows, column] != want[rows]]
            assert not len(bad), (f"{len(bad)} differ; first x={x[bad[0]]} m={m[bad[0]]} "
                                  f"shift={shift[bad[0]]}: C {got[bad[0], column]} "
                                  f"python {want[bad[0]]}")
        rows = np.flatnonzero(m[:20000] >= 0)
        want8 = np.array([requantize_tflite(np.array([a]), b, c, int(d), (int(e), int(f)))[0]
                          for a, b, c, d, e, f in cases[rows]])
        np.testing.assert_array_equal(got[rows, 2], want8)


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


def _two_branch(op: str, activation: str = "NONE", same_quant: bool = False) -> bytes:
    """x -> CONV_2D 1x1 = a; OP(x, a) -> y: a binary op on one graph input."""
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
           dict(op=op, inputs=[0, 3], outputs=[4],
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


def _fc_softmax(units: int) -> bytes:
    rng = np.random.default_rng(units)
    w = rng.integers(-127, 128, (units, 16)).astype(np.int8)
    tensors = [_act("x", [1, 16], 0.05, 3),
               dict(name="w", shape=[units, 16], dtype="int8", scale=0.02, zero_point=0, data=w),
               _act("z", [1, units], 0.12, -4), _act("y", [1, units], 1 / 256, -128)]
    ops = [dict(op="FULLY_CONNECTED", inputs=[0, 1, -1], outputs=[2],
                options=dict(fused_activation="NONE")),
           dict(op="SOFTMAX", inputs=[2], outputs=[3], options=dict(beta=1.0))]
    return build(tensors, ops, [0], [3])


def _fixture_cases() -> dict:
    import test_tflite_fixtures as fx
    import test_tflite_ops as later

    cases = {k: v for k, v in fx.CASES.items() if k not in (
        "add_broadcast", "mul_broadcast_relu6", "sub", "mul", "concat", "softmax",
        "conv_dilated")}
    cases.update({
        "add_relu6": lambda: _two_branch("ADD", "RELU6"),
        "sub_two_branch": lambda: _two_branch("SUB"),
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


def _import(tmp_path: Path, case: str, data: bytes) -> Path:
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(data)
    return import_tflite(path, tmp_path / "runs", None)[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_kernel_exact(case: str, tmp_path: Path) -> None:
    from mnist_edge import golden
    from mnist_edge.backends.c import c_inputs
    from mnist_edge.targets import host_c

    graph = qgraph.load_run(_import(tmp_path, case, CASES[case]()))
    assert graph.arithmetic == "tflite"
    x = _inputs(graph, 40, seed=len(case))
    src = generate_c(graph, tmp_path / "c", "int", x[:4])
    exe = tmp_path / "runner"
    host_c.compile_runner(src, exe, cflags=("-std=c99", "-O1", *C_WARNINGS, *SANITIZE[1:]))
    got, _ = host_c.run_runner(exe, c_inputs(graph, x), graph.output.size)
    want = golden.run_int8(graph, x)  # a CxHxW output in CHW order, as golden has it
    bad = np.flatnonzero(np.any(got != want, axis=1))
    assert not len(bad), (f"{case}: {len(bad)}/{len(x)} inputs differ; first {bad[0]}: C "
                          f"{got[bad[0]][:12]} golden {want[bad[0]][:12]}")


def _depthwise(cin: int, mult: int, kh: int, kw: int, stride: int, padding: str) -> bytes:
    """x[1, 7, 9, cin] -> DEPTHWISE_CONV_2D (RELU6) with weights across the whole int8 range."""
    rng = np.random.default_rng(cin * 100 + mult * 10 + kh)
    cout = cin * mult
    h, w = (7, 9) if padding == "SAME" else (7 - kh + 1, 9 - kw + 1)
    h, w = (h + stride - 1) // stride, (w + stride - 1) // stride
    scales = rng.uniform(0.002, 0.02, cout)
    tensors = [_act("x", [1, 7, 9, cin], 0.04, -3),
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
    "c5_m2_3x3_s2_same": (5, 2, 3, 3, 2, "SAME"),
}


@pytest.mark.parametrize("case", sorted(DEPTHWISE))
def test_depthwise_kernel_every_path(case: str, tmp_path: Path) -> None:
    """The depthwise kernel's portable, DSP (SXTB16/SMLABB/SMLATT emulated in C) and x86
    builds all equal golden, under ASan + UBSan: 4-channel blocks, a channel tail, a
    channel multiplier, padding, stride 2, a kernel of other than 9 taps."""
    from mnist_edge import golden
    from mnist_edge.backends.c import c_inputs
    from mnist_edge.targets import host_c

    graph = qgraph.load_run(_import(tmp_path, case, _depthwise(*DEPTHWISE[case])))
    x = _inputs(graph, 24, seed=len(case))
    src = generate_c(graph, tmp_path / "c", "int", x[:4])
    assert "tfl_depthwise_conv2d_s8(" in (src / "mnist_edge_model.c").read_text()
    want = golden.run_int8(graph, x)
    for extra in ((), ("-DMNIST_EDGE_DSP_EMULATION",), ("-DMNIST_EDGE_X86",)):
        exe = tmp_path / "runner"
        host_c.compile_runner(src, exe, cflags=("-std=c99", "-O1", *C_WARNINGS, *SANITIZE[1:],
                                                *extra))
        got, _ = host_c.run_runner(exe, c_inputs(graph, x), graph.output.size)
        bad = np.flatnonzero(np.any(got != want, axis=1))
        assert not len(bad), f"{case} {extra}: {len(bad)}/{len(x)} inputs differ"


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
