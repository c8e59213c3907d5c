"""RTL backend in the `tflite` arithmetic: the requantizer against requant.py, and
tflite-arithmetic graphs exact in Verilator."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import need, run_verilator_tb

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
    (folder / "tb.cpp").write_text(TFL_TB)
    shutil.copy(TEMPLATES_DIR / "rtl" / "mnist_edge_requant_tfl.v", folder)
    return run_verilator_tb(folder, "mnist_edge_requant_tfl", ["mnist_edge_requant_tfl.v"],
                            cases)


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


def _act(name: str, shape: list[int], scale: float, zp: int) -> dict:
    return dict(name=name, shape=shape, dtype="int8", scale=scale, zero_point=zp)


def _small_tflite() -> bytes:
    """int8 [1,8,8,3] -> CONV_2D (SAME, RELU6, per channel) -> DEPTHWISE_CONV_2D (RELU) ->
    ADD of both (RELU) -> MAX_POOL_2D 2x2 (RELU6) -> AVERAGE_POOL_2D 3x3 stride 1 (N = 9,
    RELU) -> RESHAPE -> FULLY_CONNECTED (per tensor) -> SOFTMAX, written without
    TensorFlow: every op kind and clamp the RTL lowers in the tflite arithmetic."""
    from mnist_edge.backends.tflite_flatbuffer import build

    rng = np.random.default_rng(11)

    def weights(name: str, shape: list[int], cout: int, axis: int, per_channel: bool) -> dict:
        scales = rng.uniform(0.004, 0.03, cout) if per_channel else np.array([0.013])
        return dict(name=name, shape=shape, dtype="int8", scale=scales,
                    zero_point=[0] * len(scales), axis=axis,
                    data=rng.integers(-127, 128, shape).astype(np.int8))

    def bias(name: str, scales: np.ndarray, x_scale: float, n: int) -> dict:
        scales = np.broadcast_to(scales, (n,))
        return dict(name=name, shape=[n], dtype="int32", scale=scales * x_scale,
                    zero_point=[0] * n, data=rng.integers(-2000, 2000, n).astype(np.int32))

    w0 = weights("w0", [5, 3, 3, 3], 5, 0, True)
    w1 = weights("w1", [1, 3, 3, 5], 5, 3, True)
    w2 = weights("w2", [7, 20], 1, 0, False)
    tensors = [_act("x", [1, 8, 8, 3], 0.04, -3),                          # 0
               w0, bias("b0", w0["scale"], 0.04, 5), _act("c", [1, 8, 8, 5], 0.05, -128),
               w1, bias("b1", w1["scale"], 0.05, 5), _act("d", [1, 8, 8, 5], 0.07, -128),
               _act("a", [1, 8, 8, 5], 0.09, -100),                        # 7
               _act("m", [1, 4, 4, 5], 0.09, -100),
               _act("p", [1, 2, 2, 5], 0.09, -100),
               dict(name="s", shape=[2], dtype="int32", data=np.array([1, 20], np.int32)),
               _act("r", [1, 20], 0.09, -100),                             # 11
               w2, bias("b2", w2["scale"], 0.09, 7), _act("f", [1, 7], 0.2, 6),
               _act("y", [1, 7], 1 / 256, -128)]                           # 15
    same = dict(padding="SAME", stride_w=1, stride_h=1)
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                options=dict(**same, fused_activation="RELU6")),
           dict(op="DEPTHWISE_CONV_2D", inputs=[3, 4, 5], outputs=[6],
                options=dict(**same, depth_multiplier=1, fused_activation="RELU")),
           dict(op="ADD", inputs=[3, 6], outputs=[7], options=dict(fused_activation="RELU")),
           dict(op="MAX_POOL_2D", inputs=[7], outputs=[8],
                options=dict(padding="VALID", stride_w=2, stride_h=2, filter_w=2, filter_h=2,
                             fused_activation="RELU6")),
           dict(op="AVERAGE_POOL_2D", inputs=[8], outputs=[9],
                options=dict(padding="VALID", stride_w=1, stride_h=1, filter_w=3, filter_h=3,
                             fused_activation="RELU")),
           dict(op="RESHAPE", inputs=[9, 10], outputs=[11]),
           dict(op="FULLY_CONNECTED", inputs=[11, 12, 13], outputs=[14],
                options=dict(fused_activation="NONE")),
           dict(op="SOFTMAX", inputs=[14], outputs=[15], options=dict(beta=1.0))]
    return build(tensors, ops, [0], [15])


@pytest.mark.parametrize("fpga", ["ecp5-25k", "ecp5-85k"])
def test_small_tflite_graph_exact_in_verilator(fpga: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every op kind the RTL lowers in the tflite arithmetic, on an int8 input with its own
    zero point: the Verilog lints clean and equals golden (which equals TFLM:
    tests/test_tflite_fixtures.py) on structured and random inputs. On the ECP5-85F the
    conv and the ADD run over 2x2 output blocks (4 positions per lane), and the per-layer
    lane counts add up to the useful lane operations."""
    need("verilator")
    from mnist_edge import golden
    from mnist_edge.backends import rtl
    from mnist_edge.importers.tflite_qgraph import tflite_to_qgraph
    from mnist_edge.importers.tflite_reader import parse_tflite
    from mnist_edge.probe_inputs import probe_batch
    from mnist_edge.targets import verilator

    graph, _ = tflite_to_qgraph(parse_tflite(_small_tflite(), "small"), "small")
    assert graph.arithmetic == "tflite" and graph.input_encoding == "int8"
    kinds = {op.kind for op in graph.ops}
    assert {"conv2d", "add", "maxpool2d", "avgpool2d", "linear", "softmax"} <= kinds, kinds
    out = rtl.generate_rtl(graph, tmp_path / "rtl", fpga=fpga, lanes=3)
    verilator.lint(out)
    manifest = rtl.load_manifest(out)
    assert (manifest["copy_layers"] == 0) == (fpga == "ecp5-85k")  # RAMs with 2 ports: no copy
    quad = [layer["ops"][0] for layer in manifest["layers"] if "2x2 output" in layer["summary"]]
    assert quad == ([op.name for op in graph.ops if op.kind in ("conv2d", "add")
                     and op.attrs.get("groups", 1) == 1] if fpga == "ecp5-85k" else [])
    # the 85F drains them 2 values a cycle (2 requantizers, 16-bit RAM writes)
    assert quad == [layer["ops"][0] for layer in manifest["layers"]
                    if "drained 2 values a cycle" in layer["summary"]]
    x = probe_batch(graph, 24, seed=4)
    stats: list[dict[str, int]] = []
    logits, cls, cycles = verilator.simulate(verilator.build(out, stats=True), out, x,
                                             graph.output.size, stats)
    want = golden.run_int8(graph, x)
    assert np.array_equal(logits, want)
    assert np.array_equal(cls, golden.predict(want))
    assert [s["busy_lane_cycles"] for s in stats] == [len(x) * n
                                                      for n in manifest["layer_lane_ops"]]
    if fpga == "ecp5-25k":  # `synth` on a run with no rtl figures simulates its own inputs
        from mnist_edge.targets.fpga_synth import simulated_cycles

        fed: list[tuple[int, ...]] = []

        def simulate(binary, rtl_dir, inputs, *args):
            fed.append(inputs.shape)
            return verilator_simulate(binary, rtl_dir, inputs, *args)

        verilator_simulate = verilator.simulate
        monkeypatch.setattr(verilator, "simulate", simulate)
        assert simulated_cycles(tmp_path / "run", graph, fpga, 3) == cycles.max()
        assert fed == [(3, *graph.input.shape)]  # the graph's inputs, not MNIST pixels


def test_mlperf_resnet8_exact_in_verilator(mlperf_runs, tmp_path: Path) -> None:
    """MLPerf Tiny's ResNet-8 (int8 input with its zero point, per-channel convs, three
    TFLM ADDs, the average pool, the softmax) on the ECP5-85F design: exact against golden
    on 3 inputs here (scripts/bench_rtl.py runs 200; docs/BENCHMARKS.md)."""
    need("verilator")
    from helpers import mlperf_run

    from mnist_edge import golden, qgraph
    from mnist_edge.backends import rtl
    from mnist_edge.probe_inputs import probe_batch
    from mnist_edge.targets import verilator

    graph = qgraph.load_run(mlperf_run(mlperf_runs, "resnet"))
    out = rtl.generate_rtl(graph, tmp_path / "rtl", fpga="ecp5-85k")
    x = probe_batch(graph, 3, seed=9)
    logits, _, cycles = verilator.simulate(verilator.build(out), out, x, graph.output.size)
    assert np.array_equal(logits, golden.run_int8(graph, x))
    low = rtl.device_lowering(graph, "ecp5-85k")
    assert low.copies == 0 and rtl.load_manifest(out)["copy_layers"] == 0
    # every 2x2-block layer drains 2 values a cycle (its outputs start at even addresses)
    assert [d.index for d in low.layers if d.wide] == [d.index for d in low.layers if d.quad]
    assert len([d for d in low.layers if d.wide]) == 12
    assert cycles.min() > rtl.cycle_model(low, graph.input.size)


def test_tflite_refusals_by_name(tmp_path: Path) -> None:
    """What the RTL does not do in the tflite arithmetic is refused by name, nothing
    written: the iCE40 (its DSPs all multiply lanes), a broadcasting ADD."""
    from mnist_edge.backends import rtl
    from mnist_edge.backends.tflite_flatbuffer import build
    from mnist_edge.errors import MnistEdgeError
    from mnist_edge.importers.tflite_qgraph import tflite_to_qgraph
    from mnist_edge.importers.tflite_reader import parse_tflite

    graph, _ = tflite_to_qgraph(parse_tflite(_small_tflite(), "small"), "small")
    with pytest.raises(MnistEdgeError, match="the tflite arithmetic on ice40-up5k is not "
                       "implemented"):
        rtl.generate_rtl(graph, tmp_path / "a", fpga="ice40-up5k")
    shape = [1, 4, 5, 3]  # x + its per-channel mean (an average pool over H x W)
    data = build([_act("a", shape, 0.05, -7), _act("b", [1, 1, 1, 3], 0.05, -7),
                  _act("y", shape, 0.09, 3)],
                 [dict(op="AVERAGE_POOL_2D", inputs=[0], outputs=[1],
                       options=dict(padding="VALID", stride_w=1, stride_h=1, filter_w=5,
                                    filter_h=4, fused_activation="NONE")),
                  dict(op="ADD", inputs=[0, 1], outputs=[2],
                       options=dict(fused_activation="NONE"))], [0], [2])
    bcast, _ = tflite_to_qgraph(parse_tflite(data, "bcast"), "bcast")
    with pytest.raises(MnistEdgeError, match="a broadcasting add is not supported by the RTL"):
        rtl.generate_rtl(bcast, tmp_path / "b")
    assert not any(tmp_path.iterdir())
