"""RTL backend: the generated Verilog lints clean and is bit-exact in Verilator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import build_verilator_tb, need, run_verilator_tb

from mnist_edge import data, golden, qgraph
from mnist_edge.backends import rtl, rtl_plan
from mnist_edge.errors import MnistEdgeError
from mnist_edge.ops import ONNX_KINDS
from mnist_edge.paths import TEMPLATES_DIR
from mnist_edge.qgraph import INPUT_SCALE, INPUT_ZERO_POINT, QGraph, QOp, QTensor
from mnist_edge.requant import decompose, requantize_int
from mnist_edge.targets import verilator
from mnist_edge.testing import random_dag_qgraph, random_pixels, random_qgraph
from mnist_edge.validate import validate_backend


@pytest.fixture(scope="module")
def tiny_rtl(tiny_run: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny run's design for the UP5K and its compiled stream testbench."""
    need("verilator")
    out = rtl.generate_rtl(qgraph.load_run(tiny_run), tmp_path_factory.mktemp("rtl") / "tiny",
                           fpga="ice40-up5k")
    return out, verilator.build(out)


def test_lints_clean_and_is_deterministic(tiny_run: Path, tiny_rtl, tmp_path: Path) -> None:
    out, _ = tiny_rtl
    verilator.lint(out)  # raises on any -Wall warning
    again = rtl.generate_rtl(qgraph.load_run(tiny_run), tmp_path / "again", fpga="ice40-up5k")
    for path in sorted(p for p in again.rglob("*") if p.is_file()):
        assert path.read_bytes() == (out / path.relative_to(again)).read_bytes(), path.name


def test_validate_rtl_exact_on_50_images(tiny_run: Path, mnist_dir: Path) -> None:
    need("verilator")
    images, labels = data.load_mnist("test", str(mnist_dir))
    f = validate_backend(tiny_run, "rtl", images[:50], labels[:50], {"fpga": "ice40-up5k"})
    assert f["exact_logit_fraction"] == 1.0, f
    assert f["cycles_per_image"] > 784  # measured: at least the pixels streamed in
    # per-layer cycles and lane utilization, counted by the testbench
    layers = f["layers"]
    assert len(layers) == len(rtl.lower(qgraph.load_run(tiny_run), 16).layers)
    assert sum(x["cycles_per_image"] for x in layers) < f["cycles_per_image"]
    assert all(0 < x["lane_utilization"] <= 1 for x in layers), layers


def test_uart_top_exact_on_3_images(tiny_run: Path, mnist_dir: Path) -> None:
    need("verilator")
    images, labels = data.load_mnist("test", str(mnist_dir))
    f = validate_backend(tiny_run, "rtl-uart", images[:3], labels[:3], {"fpga": "ice40-up5k"})
    assert f["exact_logit_fraction"] == 1.0, f
    assert f["cycles_per_image"] > 784 * 10 * verilator.UART_SIM_CLKS_PER_BIT


def test_fewer_channels_than_lanes_lints_clean(tmp_path: Path) -> None:
    """32 lanes and 25 channels in all: the channel ROMs are padded so that their address
    also holds LANES (it did not lint before)."""
    need("verilator")
    graph = random_qgraph(3, "dense")
    out = rtl.generate_rtl(graph, tmp_path / "rtl", fpga="ecp5-25k")
    assert len(rtl.lower(graph, 32).bias) and sum(map(len, rtl.lower(graph, 32).bias)) < 32
    verilator.lint(out)


def test_changed_weight_disagrees_with_golden(tiny_run: Path, tiny_rtl, mnist_dir: Path,
                                              tmp_path: Path) -> None:
    """The same binary on a copy with one weight changed in weights.mem must miss golden."""
    out, binary = tiny_rtl
    images = data.load_mnist("test", str(mnist_dir))[0][:50]
    reference = golden.run_int8(qgraph.load_run(tiny_run), images)
    logits, _, _ = verilator.simulate(binary, out, images, 10)
    assert np.array_equal(logits, reference)
    edited = tmp_path / "edited"
    shutil.copytree(out, edited, ignore=shutil.ignore_patterns("obj_*"))
    lines = (edited / "mem" / "weights.mem").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if not line.startswith("//"))
    word = lines[row]
    lines[row] = word[:-2] + f"{(int(word[-2:], 16) + 100) & 0xFF:02X}"  # lane 0, first tap
    (edited / "mem" / "weights.mem").write_text("\n".join(lines) + "\n")
    changed, _, _ = verilator.simulate(binary, edited, images, 10)
    assert not np.array_equal(changed, reference)


@pytest.mark.parametrize("layout, fpga, lanes", [("mixed", "ecp5-25k", 3),
                                                 ("dense", "ecp5-25k", 3),
                                                 ("mixed", "ice40-up5k", 4),
                                                 ("dense", "ice40-up5k", 4)])
def test_random_graphs_every_op_kind(layout: str, fpga: str, lanes: int,
                                     tmp_path: Path) -> None:
    """Strides, asymmetric padding, grouped convs, avg/global pools, fused and lone tables;
    3 lanes: a ragged last group; the iCE40 engine: offset products on mnist_edge_mul8x2
    lane pairs and the digit-serial requantizer."""
    need("verilator")
    graph = random_qgraph(3, layout)
    out = rtl.generate_rtl(graph, tmp_path / "rtl", fpga=fpga, lanes=lanes)
    # lint too: these graphs have a power-of-two count of layers (`layer` needs a bit
    # more than its index; they did not lint before)
    verilator.lint(out)
    pixels = random_pixels(16, seed=7)
    logits, cls, _ = verilator.simulate(verilator.build(out), out, pixels, graph.output.size)
    assert np.array_equal(logits, golden.run_int8(graph, pixels))
    assert np.array_equal(cls, golden.predict(logits))


REQUANT_TB = r"""
#include <cstdio>
#include "Vmnist_edge_requant.h"
// one value every SPACING cycles (the digit-serial product takes 24 / DIGIT)
int main() {
    Vmnist_edge_requant t;
    long acc, m, shift, zy, sent = 0, got = 0, cycle = 0;
    int ok = 1;
    t.clk = 0; t.in_valid = 0; t.bypass = 0; t.eval();
    for (;; cycle++) {
        const bool slot = cycle % SPACING == 0;
        if (slot && ok) ok = std::scanf("%ld %ld %ld %ld", &acc, &m, &shift, &zy) == 4;
        t.in_valid = slot && ok;
        t.acc = (unsigned)acc; t.m = m; t.shift = shift; t.zy = zy & 0xFF;
        t.clk = 1; t.eval(); t.clk = 0; t.eval();
        if (t.out_valid) { std::printf("%d\n", (signed char)t.out_y); got++; }
        if (slot && ok) sent++;
        if (!ok && got == sent) break;
    }
    return 0;
}
"""


@pytest.mark.parametrize("digit", [0, 8, 12])
def test_requant_unit_matches_the_integer_contract(digit: int, tmp_path: Path) -> None:
    """mnist_edge_requant.v against requant.requantize_int: edge cases, ties, random values;
    the product in one cycle (DIGIT 0) and digit by digit in logic (the UP5K's, whose DSPs
    all multiply lanes), one value every 24 / DIGIT cycles."""
    need("verilator")  # skips, saying why, before the cases are made
    rng = np.random.default_rng(0)
    mult = np.concatenate([np.float32([1.0 - 2**-24, 0.5, 0.25 + 2**-20, 2**-30, 2**-200]),
                           np.exp(rng.uniform(-12, -0.01, 40)).astype(np.float32)])
    m, shift = decompose(mult)
    rows = []
    for k in range(len(mult)):
        # ties exactly at x.5 after the shift, their neighbours, extremes and random values
        base = np.arange(-40, 41, dtype=np.int64)
        tie = (((2 * base + 1) << max(int(shift[k]) - 1, 0)) // max(int(m[k]), 1))
        acc = np.concatenate([base, tie - 1, tie, tie + 1, [(1 << 24) - 1, -(1 << 24) + 1],
                              rng.integers(-(1 << 24) + 1, 1 << 24, 300)])
        acc = acc[np.abs(acc) < 1 << 24]
        zy = rng.integers(-128, 128, acc.size)
        rows.append(np.stack([acc, np.full_like(acc, m[k]), np.full_like(acc, shift[k]), zy], 1))
    cases = np.concatenate(rows)
    (tmp_path / "tb.cpp").write_text(REQUANT_TB)
    shutil.copy(TEMPLATES_DIR / "rtl" / "mnist_edge_requant.v", tmp_path)
    hw = _run_requant_tb(tmp_path, "mnist_edge_requant", ["mnist_edge_requant.v"], digit,
                         cases)
    assert np.array_equal(hw, _with_zero_points(cases))


def _run_requant_tb(folder: Path, top: str, sources: list[str], digit: int,
                    cases: np.ndarray) -> np.ndarray:
    """Build `top` with tb.cpp in Verilator and run it on the (acc, m, shift, zy) rows."""
    spacing = 24 // digit if digit else 1
    return run_verilator_tb(folder, top, sources, cases, "-Wno-fatal", f"-GDIGIT={digit}",
                            "-CFLAGS", f"-DSPACING={spacing}")


WIDE_TOP = r"""
// mnist_edge_prenorm in front of mnist_edge_requant, as the engine chains them
module wide_requant #(parameter DIGIT = 0) (
    input wire clk, input wire in_valid, input wire bypass, input wire [31:0] acc,
    input wire [23:0] m, input wire [7:0] shift, input wire [7:0] zy,
    output wire out_valid, output wire [7:0] out_y);
    wire v; wire [31:0] a; wire [23:0] mm; wire [7:0] s; wire t, t2;
    reg [7:0] zy_d;
    always @(posedge clk) zy_d <= zy;
    mnist_edge_prenorm #(.TAG_W(1)) pre (.clk(clk), .in_valid(in_valid), .acc(acc), .m(m),
        .shift(shift), .in_tag(1'b0), .out_valid(v), .out_acc(a), .out_m(mm), .out_shift(s),
        .out_tag(t));
    mnist_edge_requant #(.TAG_W(1), .DIGIT(DIGIT)) rq (.clk(clk), .in_valid(v),
        .bypass(bypass), .acc(a), .m(mm), .shift(s), .zy(zy_d), .in_tag(t),
        .out_valid(out_valid), .out_y(out_y), .out_tag(t2));
endmodule
"""


@pytest.mark.parametrize("digit", [0, 8])
def test_wide_requant_unit_matches_the_integer_contract(digit: int, tmp_path: Path) -> None:
    """mnist_edge_prenorm + mnist_edge_requant against requant.requantize_int on int32
    accumulators of every magnitude: ties of the 24-bit rounding of |acc| (2^24..2^31),
    the rounding that carries to 2^(k+1), the int32 extremes, random values."""
    need("verilator")  # skips, saying why, before the cases are made
    rng = np.random.default_rng(1)
    mult = np.concatenate([np.float32([1.0 - 2**-24, 0.5, 2**-30, 2**-40, 3.0, 4000.0]),
                           np.exp(rng.uniform(-40, -0.01, 24)).astype(np.float32)])
    m, shift = decompose(mult)
    d = np.arange(1, 9, dtype=np.int64)
    edges = np.concatenate([
        ((1 << 24) + 2 * rng.integers(0, 1 << 23, (8, 8)) + 1) << (d - 1)[None, :],  # ties
        ((1 << 25) - 1) << (d - 1)[None, :] >> 1, np.array([[2**31 - 1, 2**24, 2**24 - 1,
                                                            2**24 + 1, 2**25 - 1, 2**25 + 1,
                                                            2**31 - 2**7, 2**31 - 2**6]])],
        axis=None)
    edges = edges[edges < 1 << 31]
    rows = []
    for k in range(len(mult)):
        acc = np.concatenate([edges, -edges, [-(1 << 31)], np.arange(-20, 21),
                              (np.exp(rng.uniform(0, np.log(2**31 - 1), 200)).astype(np.int64)
                               * rng.choice([-1, 1], 200))])
        zy = rng.integers(-128, 128, acc.size)
        rows.append(np.stack([acc, np.full_like(acc, m[k]), np.full_like(acc, shift[k]), zy], 1))
    cases = np.concatenate(rows)
    (tmp_path / "tb.cpp").write_text(REQUANT_TB.replace("Vmnist_edge_requant", "Vwide_requant"))
    (tmp_path / "wide_requant.v").write_text(WIDE_TOP)
    for name in ("mnist_edge_requant.v", "mnist_edge_prenorm.v"):
        shutil.copy(TEMPLATES_DIR / "rtl" / name, tmp_path)
    hw = _run_requant_tb(tmp_path, "wide_requant",
                         ["wide_requant.v", "mnist_edge_prenorm.v", "mnist_edge_requant.v"],
                         digit, cases)
    assert np.array_equal(hw, _with_zero_points(cases))


def _with_zero_points(cases: np.ndarray) -> np.ndarray:
    """requantize_int row by row: each row has its own zero point."""
    out = np.empty(len(cases), np.int64)
    for z in np.unique(cases[:, 3]):
        sel = cases[:, 3] == z
        out[sel] = requantize_int(cases[sel, 0], cases[sel, 1], cases[sel, 2], int(z))
    return out


def test_refuses_an_op_kind_it_cannot_lower(tiny_run: Path, monkeypatch) -> None:
    graph = qgraph.load_run(tiny_run)
    graph.ops[1].kind = "mul"  # a tflite-only kind
    monkeypatch.setattr(graph, "validate", lambda: None)
    with pytest.raises(MnistEdgeError, match=rf"op {graph.ops[1].name}: op kind 'mul'"):
        rtl.lower(graph, 8)


def test_ice40_pll_settings() -> None:
    """The iCEBreaker PLL for the iCE40 clock, as `icepll -i 12 -o F` gives them."""
    assert rtl.ice40_pll(27.0) == {"divr": 0, "divf": 71, "divq": 5, "filter_range": 1,
                                   "vco_mhz": 864}
    assert rtl.ice40_pll(33.75) == {"divr": 0, "divf": 44, "divq": 4, "filter_range": 1,
                                    "vco_mhz": 540}
    with pytest.raises(MnistEdgeError, match="cannot make exactly 33.7 MHz"):
        rtl.ice40_pll(33.7)


def test_ecp5_pll_settings(tmp_path: Path) -> None:
    """The ULX3S PLL: every table entry makes its clock exactly from 25 MHz with the VCO in
    400..800 MHz; the ULX3S top of an ECP5 design runs at the device's clock (PLL and
    UART divider), the one beside an iCE40 design at 50 MHz; an unknown clock is refused."""
    for clock, pll in rtl.ECP5_PLLS.items():
        assert 25.0 * pll["clkfb_div"] / pll["clki_div"] == clock
        assert 400 <= clock * pll["clkop_div"] <= 800
    assert rtl.ecp5_pll(50.0)["vco_mhz"] == 600
    with pytest.raises(MnistEdgeError, match="no ECP5 PLL setting for 48.0 MHz"):
        rtl.ecp5_pll(48.0)
    graph = random_qgraph(3, "mixed")
    for fpga, clock in (("ecp5-25k", rtl.FPGAS["ecp5-25k"]["clock_mhz"]),
                        ("ecp5-85k", rtl.FPGAS["ecp5-85k"]["clock_mhz"]),
                        ("ice40-up5k", rtl.ULX3S_CLOCK_MHZ)):
        top = (rtl.generate_rtl(graph, tmp_path / fpga, fpga=fpga, lanes=2 if fpga[0] == "i"
                                else 3) / "top_ulx3s.v").read_text()
        pll = rtl.ecp5_pll(clock)
        assert f'(* FREQUENCY_PIN_CLKOP="{clock:g}" *)' in top
        assert f".CLKI_DIV({pll['clki_div']})" in top and f".CLKFB_DIV({pll['clkfb_div']})" in top
        assert f".CLKS_PER_BIT({round(clock * 1e6 / 115200)})" in top


def test_ecp5_85k_target(tmp_path: Path) -> None:
    """The LFE5U-85F: 32 lanes x 4 positions, the ULX3S top and pins (one pinout for the
    25F and 85F boards) naming the 85F, nextpnr's --85k in the same CABGA381 package."""
    from mnist_edge.targets.fpga_synth import FLOWS

    out = rtl.generate_rtl(random_qgraph(3, "mixed"), tmp_path / "rtl", fpga="ecp5-85k")
    manifest = rtl.load_manifest(out)
    assert manifest["lanes"] == 32 and manifest["positions"] == 4
    assert manifest["board_top"] == "top_ulx3s"
    assert "# ULX3S (LFE5U-85F-6BG381C)" in (out / "ulx3s.lpf").read_text()
    assert "ULX3S (ECP5 LFE5U-85F)" in (out / "top_ulx3s.v").read_text()
    assert FLOWS["ecp5-85k"]["pnr"][:3] == ["--85k", "--package", "CABGA381"]
    assert FLOWS["ecp5-25k"]["pnr"][0] == "--25k"


def test_ice40_lanes_pair_on_the_dsps(tmp_path: Path) -> None:
    """Two lanes per SB_MAC16, 8 of them: an odd or too large lane count is refused."""
    graph = random_qgraph(3, "dense")
    for lanes in (3, 18):
        with pytest.raises(MnistEdgeError, match="must be even and at most 16"):
            rtl.generate_rtl(graph, tmp_path / f"rtl{lanes}", fpga="ice40-up5k", lanes=lanes)


def test_lowering_covers_every_qgraph_kind() -> None:
    """Every onnx kind is lowered, none refused."""
    assert set(ONNX_KINDS) <= set(rtl.LOWERING)
    assert not rtl.REFUSED


@pytest.mark.parametrize("sdp", [False, True])
def test_planner_keeps_branches_apart(sdp: bool) -> None:
    """The DAG graph: the add's inputs share a RAM (a copy moves one; with a write port
    per RAM, sdp, the branch's last layer writes beside the other input instead: no
    copy), its output goes to the other; no two tensors of one RAM overlap while both are
    live; a chain gets every tensor at address 0 (the ping-pong of before)."""
    low = rtl.lower(random_dag_qgraph(0), 4, sdp=sdp)
    if sdp:
        assert low.copies == 0 and any(d.out_buf == d.in_buf for d in low.layers)
    else:
        assert low.copies == 1 and low.layers[3].summary.startswith("copy of g1")
        assert all(d.out_buf == 1 - d.in_buf for d in low.layers)
    life: dict[str, list[int]] = {}
    at: dict[str, tuple[int, int, int]] = {}
    for k, d in enumerate(low.layers):
        ins = [(d.in_off + (d.cstep if j else 0)) % (1 << 16) for j in range(len(d.reads))]
        for name, addr in zip(d.reads, ins, strict=True):
            life.setdefault(name, [k, k])[1] = k
            at.setdefault(name, (d.in_buf, addr, 0))
        life.setdefault(d.writes, [k, k])[1] = k
        if d.writes not in at or at[d.writes][1] > d.out_off:
            at[d.writes] = (d.out_buf, d.out_off, 0)
    add = next(d for d in low.layers if d.summary.startswith("a0"))
    assert len(add.reads) == 2 and add.cstep != add.hw
    sizes = {**{n: int(np.prod(s)) for n, s in low.shapes.items()}}
    names = sorted(at)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            overlap_t = life[a][0] <= life[b][1] and life[b][0] <= life[a][1]
            same_ram = at[a][0] == at[b][0]
            overlap_a = at[a][1] < at[b][1] + sizes[b] and at[b][1] < at[a][1] + sizes[a]
            assert not (overlap_t and same_ram and overlap_a), (a, b)
    chain = rtl.lower(random_qgraph(3, "mixed"), 4, sdp=sdp)
    assert chain.copies == 0
    for d, e in zip(chain.layers, chain.layers[1:], strict=False):  # ping-pong, op by op
        assert e.in_buf == (d.in_buf if e.ops[0] == d.ops[0] else 1 - d.in_buf)


def test_refuses_activations_beyond_the_address_width(monkeypatch) -> None:
    """An image of 3x160x160 (76,800 bytes) does not fit 16-bit activation addresses."""
    graph = random_qgraph(1, "rgb")
    graph.input.shape = (3, 160, 160)
    graph.ops[0].output.shape = (graph.ops[0].output.shape[0], 160, 160)
    monkeypatch.setattr(graph, "validate", lambda: None)  # only the planner's sizes matter
    with pytest.raises(MnistEdgeError, match="activation RAM A needs 76,800 bytes"):
        rtl.lower(graph, 4)


def test_first_fit_pins_and_packs() -> None:
    life = {"input": (-1, 2), "a": (0, 1), "b": (2, 3), "out": (3, 9)}
    sizes = {"input": 10, "a": 30, "b": 20, "out": 5}
    off = rtl_plan.first_fit(sizes, life, pinned=("input", "out"))
    assert off == {"input": 0, "out": 0, "a": 10, "b": 10}
    with pytest.raises(MnistEdgeError, match="both at address 0"):
        rtl_plan.first_fit(sizes, {**life, "out": (2, 9)}, pinned=("input", "out"))


@pytest.mark.parametrize("fpga, lanes", [("ice40-up5k", 4), ("ecp5-25k", 3), ("ecp5-85k", 3)])
def test_residual_add_and_concat_exact(fpga: str, lanes: int, tmp_path: Path) -> None:
    """A residual add (inputs at two scales, one copied to the other RAM), a depthwise
    conv, a concat of a copied and a requantized input, fused and lone tables: golden's
    logits in Verilator, and the design lints clean. The iCE40 engine: offset products
    and the digit-serial requantizer beside the add's weighted taps. The 85F: RAMs with a
    write port each (no copy: a layer writes the RAM it reads) and 2x2 output blocks."""
    need("verilator")
    graph = random_dag_qgraph(0)
    out = rtl.generate_rtl(graph, tmp_path / "rtl", fpga=fpga, lanes=lanes)
    verilator.lint(out)
    assert (rtl.load_manifest(out)["copy_layers"] == 0) == (fpga == "ecp5-85k")
    pixels = random_pixels(12, seed=3)
    logits, cls, _ = verilator.simulate(verilator.build(out), out, pixels, graph.output.size)
    assert np.array_equal(logits, golden.run_int8(graph, pixels))
    assert np.array_equal(cls, golden.predict(logits))


def test_rgb_residual_import_exact(tmp_path: Path, capsys) -> None:
    """The 3x32x32 residual CNN of test_any_input (per-channel normalization, a 1x1
    stride-2 conv shortcut) imported, quantized and validated on the RTL: 3 planes of
    pixels streamed channel by channel, every logit exact."""
    need("verilator")
    import test_any_input as any_input

    from mnist_edge.cli import main

    path = any_input._export(tmp_path, any_input._rgb_residual, (3, 32, 32), "rgb")
    calib = any_input._image_folder(tmp_path / "images", 12, (32, 32))
    runs = tmp_path / "runs"
    assert main(["import", str(path), "--name", "rgb", "--runs", str(runs)]) == 0
    assert main(["quantize", str(runs / "rgb"), "--data", str(calib)]) == 0
    graph = qgraph.load_run(runs / "rgb")
    assert "add" in [op.kind for op in graph.ops] and graph.input.shape == (3, 32, 32)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
    f = validate_backend(runs / "rgb", "rtl", images, np.zeros(8, np.int64),
                         {"fpga": "ecp5-25k"})
    assert f["exact_logit_fraction"] == 1.0, f
    capsys.readouterr()


def _wide_graph() -> QGraph:
    """784 pixels into 8 channels of +-127 weights: |acc| up to 25,390,804 > 2^24."""
    rng = np.random.default_rng(0)
    w = np.where(rng.random((8, 784)) < 0.5, -127, 127).astype(np.int8)
    w[0], w[1] = 127, -127
    out_scale = float(np.float32(25_400_000 * INPUT_SCALE * 0.0625 / 120))
    ops = [QOp("flat", "flatten", QTensor((784,), INPUT_SCALE, INPUT_ZERO_POINT)),
           QOp("fc", "linear", QTensor((8,), out_scale, 3),
               arrays={"weight": w, "bias": rng.integers(-2000, 2000, 8).astype(np.int32),
                       "w_scale": np.full(8, 0.0625, np.float32)})]
    return QGraph("wide", QTensor((1, 28, 28), INPUT_SCALE, INPUT_ZERO_POINT), ops)


def _sign_conv_graph(name: str, in_c: int, kernel: int, out_c: int, out_hw: int,
                     padding: list[int], bound: float, low_second: bool = False) -> QGraph:
    """One conv of +-127 weights over a whole in_c x kernel x kernel input (output channel
    0 all 127, so bright images reach the bound; with `low_second` channel 1 all -127),
    then a flatten."""
    rng = np.random.default_rng(0)
    w = np.where(rng.random((out_c, in_c, kernel, kernel)) < 0.5, -127, 127).astype(np.int8)
    w[0] = 127
    if low_second:
        w[1] = -127
    out_scale = float(np.float32(bound * INPUT_SCALE * 0.0625 / 120))
    ops = [QOp("conv", "conv2d", QTensor((out_c, out_hw, out_hw), out_scale, 3),
               attrs={"kernel": [kernel, kernel], "stride": [1, 1], "padding": padding,
                      "groups": 1},
               arrays={"weight": w, "bias": rng.integers(-2000, 2000, out_c).astype(np.int32),
                       "w_scale": np.full(out_c, 0.0625, np.float32)}),
           QOp("flat", "flatten", QTensor((out_c * out_hw * out_hw,), out_scale, 3))]
    return QGraph(name, QTensor((in_c, kernel, kernel), INPUT_SCALE, INPUT_ZERO_POINT), ops)


def _wide_quad_graph() -> QGraph:
    """_wide_graph's sums as a 28x28 conv padded to 2x2 outputs (8 channels): on the 85F a
    2x2-block layer drained 2 values a cycle, each through its own prenorm and requantizer."""
    return _sign_conv_graph("wide_quad", 1, 28, 8, 2, [0, 0, 1, 1], 25_400_000,
                            low_second=True)


def _widest_graph() -> QGraph:
    """A 31x31 conv over 64 channels (61,504 taps) into 4: |acc| up to 1,991,808,570, the
    engine's full 32-bit accumulators."""
    return _sign_conv_graph("widest", 64, 31, 4, 1, [0, 0, 0, 0], 2.0e9)


@pytest.mark.parametrize("build, bits, fpga", [(_wide_graph, 26, "ecp5-25k"),
                                               (_wide_quad_graph, 26, "ecp5-85k"),
                                               (_widest_graph, 32, "ice40-up5k")])
def test_wide_accumulators_exact(build, bits: int, fpga: str, tmp_path: Path) -> None:
    """Layers whose accumulators pass 2^24 get wider accumulators and the prenorm stage
    (no refusal): golden's logits on bright images whose sums reach 25.4 M (26 bits; on the
    85F in 2x2 blocks drained 2 values a cycle, a prenorm each) and 1.99 G (32 bits; the
    UP5K's digit-serial requantizer behind the prenorm). With the 25
    bits of before, the 26-bit case gave other logits (checked when this was written)."""
    need("verilator")
    graph = build()
    graph.validate()
    bound = max(graph.max_accumulator(i) for i in range(len(graph.ops)))
    assert bound >= 1 << (bits - 2) and rtl.accumulator_bits(graph) == bits
    out = rtl.generate_rtl(graph, tmp_path / "rtl", fpga=fpga, lanes=4)
    verilator.lint(out)
    assert f"localparam ACC_W = {bits};" in (out / "mnist_edge_engine.v").read_text()
    assert ("drained 2 values a cycle" in rtl.load_manifest(out)["layers"][0]["summary"]) == (
        fpga == "ecp5-85k")
    shape = graph.input.shape if graph.input.shape[0] > 1 else graph.input.shape[1:]
    rng = np.random.default_rng(1)
    pixels = np.concatenate([np.full((2, *shape), 255), rng.integers(200, 256, (2, *shape)),
                             rng.integers(0, 256, (1, *shape))]).astype(np.uint8)
    logits, _, _ = verilator.simulate(verilator.build(out), out, pixels,
                                      graph.output.size)
    reference = golden.run_int8(graph, pixels)
    assert np.abs(reference[:2, 0].astype(int)).min() > 100  # the extremes reach them
    assert np.array_equal(logits, reference)


@pytest.mark.slow
def test_synth_ice40_fits_and_meets_timing(tmp_path: Path) -> None:
    """The open iCE40 flow to a bitstream, resources within the UP5K.

    A random every-op-kind graph: the tiny model's 15.7 KB linear layer needs more than
    the UP5K's 30 EBR once synthesis keeps the whole weight ROM."""
    for tool in ("verilator", "yosys", "nextpnr-ice40", "icepack"):
        need(tool)
    from mnist_edge.targets.fpga_synth import synth

    graph = random_qgraph(3, "mixed")
    qgraph.save(graph, tmp_path / "run" / graph.name)
    # 2 seeds, placed and routed side by side: CI time
    r = synth(tmp_path / "run", "ice40-up5k", lanes=4, seeds=(1, 2), jobs=2)
    assert Path(r["bitstream_path"]).stat().st_size > 100_000
    assert r["timing_met"] and r["fmax_mhz"] >= r["clock_mhz"]
    seeds = r["fmax_mhz_by_seed"]  # one place and route per seed: the timing margin
    assert len(seeds) == 2 and r["fmax_mhz"] == max(seeds.values())
    assert r["fmax_mhz_min"] == min(seeds.values()) <= r["fmax_mhz_median"] <= r["fmax_mhz"]
    for name, res in r["resources"].items():
        assert 0 <= res["used"] <= res["available"], name
    assert r["resources"]["LUT4"]["used"] > 0 and r["cycles_per_image"] > 784
    out = Path(r["bitstream_path"]).parent
    # a later `synth` may replace its own folder, and whoever flashes it finds the figures
    from mnist_edge.paths import holds_manifest

    assert holds_manifest(out)
    assert f"Fmax {r['fmax_mhz']} MHz" in (out / "README.md").read_text()


@pytest.mark.slow
def test_synthesized_netlist_exact_at_gate_level(tmp_path: Path) -> None:
    """The yosys netlist the UP5K bitstream is placed from, simulated with yosys's cell
    models, gives golden's logits: synthesis kept the numbers (the RTL test cannot see a
    synthesis fault, such as the SB_MAC16 inference this caught). The random graph of the
    iCE40 flow test (convs, a LUT, max, average and global pools, a linear layer): half the
    netlist of the tiny MNIST model, whose weight ROM doubled the Verilator build (68 s ->
    33 s here)."""
    for tool in ("verilator", "yosys"):
        need(tool)
    graph = random_qgraph(3, "mixed")
    qgraph.save(graph, tmp_path / "run" / graph.name)
    f = validate_backend(tmp_path / "run", "rtl-netlist", random_pixels(1, 3), None,
                         {"fpga": "ice40-up5k"})  # one image: every layer, every MAC cell
    assert f["exact_logit_fraction"] == 1.0, f


def test_netlist_simulation_refuses_ecp5(tiny_run: Path, mnist_dir: Path) -> None:
    need("verilator")
    images, labels = data.load_mnist("test", str(mnist_dir))
    with pytest.raises(MnistEdgeError, match="no gate-level simulation for ecp5-25k"):
        validate_backend(tiny_run, "rtl-netlist", images[:1], labels[:1], {"fpga": "ecp5-25k"})


MUL8X2_TB = r"""
#include <cstdint>
#include <cstdio>
#include "Vmnist_edge_mul8x2.h"
// Every int8 pair (a, b) = (k >> 8, k & 255) on the top product and the pair
// (k & 255, ~k >> 8) on the bottom one in the same cycle, one pair a cycle; the products
// come out two clock edges later. Writes uint16 p_hi, p_lo per k.
int main() {
    Vmnist_edge_mul8x2 t;
    static uint16_t out[65536 * 2];
    t.clk = 0;
    t.eval();
    for (int i = 0; i <= 65536; i++) {
        const int k = i < 65536 ? i : 0;
        t.a_hi = k >> 8; t.b_hi = k & 0xFF; t.a_lo = k & 0xFF; t.b_lo = (~k >> 8) & 0xFF;
        t.clk = 1; t.eval(); t.clk = 0; t.eval();
        if (i >= 1) { out[2 * (i - 1)] = t.p_hi; out[2 * (i - 1) + 1] = t.p_lo; }
    }
    std::fwrite(out, sizeof out, 1, stdout);
    return 0;
}
"""


@pytest.mark.parametrize("model", ["sb_mac16", "rtl"])
def test_dsp_wrapper_every_int8_pair(model: str, tmp_path: Path) -> None:
    """mnist_edge_mul8x2.v: the explicit SB_MAC16 in dual 8x8 mode, simulated with yosys's
    own SB_MAC16 model (ice40/cells_sim.v), and its plain-Verilog twin, on all 2^16 int8
    pairs in both product halves: p = (a + 128)(b + 128), so a*b = p - 128(a + 128) -
    128(b + 128) + 16384 exactly."""
    need("verilator")
    sources = [str(TEMPLATES_DIR / "rtl" / "mnist_edge_mul8x2.v")]
    defines = []
    if model == "sb_mac16":
        need("yosys")
        from mnist_edge.targets.fpga_synth import cell_models

        cells, cell_defines = cell_models("ice40-up5k")
        sources.append(str(cells))
        defines = [f"-D{d}" for d in ("MNIST_EDGE_ICE40_DSP", *cell_defines)]
    (tmp_path / "tb.cpp").write_text(MUL8X2_TB)
    tb = build_verilator_tb(tmp_path, "mnist_edge_mul8x2", sources, "-Wno-fatal", *defines)
    raw = subprocess.run([str(tb)], capture_output=True, check=True).stdout
    p = np.frombuffer(raw, "<u2").reshape(65536, 2).astype(np.int64)
    k = np.arange(65536)
    a = (k >> 8).astype(np.uint8).astype(np.int8).astype(np.int64)
    b = (k & 255).astype(np.uint8).astype(np.int8).astype(np.int64)
    c = ((~k >> 8) & 255).astype(np.uint8).astype(np.int8).astype(np.int64)
    for prod, x, y in ((p[:, 0], a, b), (p[:, 1], b, c)):
        assert np.array_equal(prod, (x + 128) * (y + 128))
        assert np.array_equal(prod - 128 * (x + 128) - 128 * (y + 128) + 16384, x * y)
    assert len(np.unique(a * 256 + b)) == len(np.unique(b * 256 + c)) == 65536


def _monotone_tables(graph: QGraph) -> QGraph:
    """The graph with every activation table sorted: non-decreasing, so a max pool after
    it may be fused before the requantization."""
    for op in graph.ops:
        if op.kind == "lut":
            op.arrays["table"] = np.sort(op.arrays["table"])
    graph.validate()
    return graph


def test_pool_fusion_needs_four_positions_and_a_monotone_table() -> None:
    """A 2x2 / 2 max pool joins the conv before it (through a fused table) only on a
    4-position engine and only when the table never decreases: max and a decreasing table
    do not commute."""
    def fused(graph: QGraph, positions: int) -> list[int]:
        return [d.pool for d in rtl.lower(graph, 3, positions=positions).layers]

    assert fused(_monotone_tables(random_qgraph(3, "mixed")), 4)[0] == 1
    assert not any(fused(_monotone_tables(random_qgraph(3, "mixed")), 1))
    graph = random_qgraph(3, "mixed")
    assert np.any(np.diff(graph.ops[1].arrays["table"].astype(int)) < 0)
    assert not any(fused(graph, 4))
    layers = rtl.lower(_monotone_tables(random_qgraph(3, "mixed")), 3, positions=4).layers
    first = layers[0]  # conv 4x28x28 + table + pool: 14x14 outputs, 4 conv positions each
    assert (first.oh, first.ow, first.lut) == (14, 14, 1)
    assert rtl.lane_ops(first) == 4 * 28 * 28 * 9
    assert len(layers) == len(rtl.lower(random_qgraph(3, "mixed"), 3, positions=4).layers) - 1


@pytest.mark.parametrize("fpga", ["ecp5-25k", "ecp5-85k"])
def test_fused_pool_positions_exact(fpga: str, tmp_path: Path) -> None:
    """The ECP5 engine's 4 positions per lane (4 RAM copies, the drain's max of 4 sums)
    on a conv + monotone table + pool (fused), then a strided conv with asymmetric padding,
    an average pool, a grouped conv and a linear layer (position 0 only); 3 lanes: ragged
    groups. On the 85F, the same graph with its first table not monotone (no fusion):
    that conv and its table run over 2x2 output blocks (quad), every sum requantized.
    Golden's logits on every image, and the per-layer lane counts add up."""
    need("verilator")
    quad = fpga == "ecp5-85k"
    graph = random_qgraph(3, "mixed") if quad else _monotone_tables(random_qgraph(3, "mixed"))
    out = rtl.generate_rtl(graph, tmp_path / "rtl", fpga=fpga, lanes=3)
    verilator.lint(out)
    manifest = rtl.load_manifest(out)
    first = manifest["layers"][0]["summary"]
    assert manifest["positions"] == 4 and ("fused" in first) != quad
    for what in ("2x2 output blocks", "drained 2 values a cycle"):  # 85F: wide drain too
        assert [i for i, layer in enumerate(manifest["layers"])
                if what in layer["summary"]] == ([0] if quad else [])
    pixels = random_pixels(16, seed=7)
    stats: list[dict[str, int]] = []
    logits, cls, _ = verilator.simulate(verilator.build(out, stats=True), out, pixels,
                                        graph.output.size, stats)
    assert np.array_equal(logits, golden.run_int8(graph, pixels))
    assert np.array_equal(cls, golden.predict(logits))
    assert [s["busy_lane_cycles"] for s in stats] == [16 * n for n in manifest["layer_lane_ops"]]


LUT_MUL_TB = r"""
#include <cstdint>
#include <cstdio>
#include "Vmnist_edge_mul8_lut.h"
// every int8 pair (a, b) = (k >> 8, k & 255); writes the int16 products
int main() {
    Vmnist_edge_mul8_lut t;
    static int16_t out[65536];
    for (int k = 0; k < 65536; k++) {
        t.a = k >> 8; t.b = k & 0xFF; t.eval();
        out[k] = (int16_t)t.p;
    }
    std::fwrite(out, sizeof out, 1, stdout);
    return 0;
}
"""


@pytest.mark.parametrize("model", ["rtl", "rtl-ecp5-cells", "ecp5-netlist"])
def test_lut_multiplier_every_int8_pair(model: str, tmp_path: Path) -> None:
    """mnist_edge_mul8_lut.v (Baugh-Wooley in the ECP5's carry chains, the lanes beyond its
    DSPs) on all 2^16 int8 pairs: the `+` form Verilator simulates, the CCU2C form the ECP5
    flow synthesizes (MNIST_EDGE_ECP5) with yosys's CCU2C model, and that form after
    yosys's synth_ecp5 (its netlist with yosys's ECP5 cell models): the CCU2C INIT values
    and the generate terms they rely on are proven here, and an earlier multiplier was
    exact as written and wrong after synth_ecp5."""
    need("verilator")
    source = TEMPLATES_DIR / "rtl" / "mnist_edge_mul8_lut.v"
    sources, extra = [str(source)], []
    if model != "rtl":
        yosys = need("yosys")
        from mnist_edge.targets.fpga_synth import FLOWS, cell_models

        cells, _ = cell_models("ecp5-25k")
        defines = [f"-D{d}" for d in FLOWS["ecp5-25k"]["defines"]]
        assert defines == ["-DMNIST_EDGE_ECP5"]
        sources, extra = [str(source), str(cells)], [f"-I{cells.parent}", *defines]
    if model == "ecp5-netlist":
        subprocess.run([yosys, "-q", "-p", f"read_verilog {' '.join(defines)} {source}; "
                        "synth_ecp5 -nodsp -top mnist_edge_mul8_lut; "
                        "write_verilog -noattr netlist.v"],
                       cwd=tmp_path, check=True, capture_output=True)
        netlist = (tmp_path / "netlist.v").read_text()
        # the partial products stay in the carry chains: 37 CCU2C and the 2 inverters
        assert netlist.count("CCU2C #(") == 37 and netlist.count("LUT4 #(") == 2
        sources, extra = ["netlist.v", str(cells)], [f"-I{cells.parent}"]
    (tmp_path / "tb.cpp").write_text(LUT_MUL_TB)
    tb = build_verilator_tb(tmp_path, "mnist_edge_mul8_lut", sources, "-Wno-fatal", *extra)
    raw = subprocess.run([str(tb)], capture_output=True, check=True).stdout
    k = np.arange(65536)
    a = (k >> 8).astype(np.uint8).astype(np.int8).astype(np.int64)
    b = (k & 255).astype(np.uint8).astype(np.int8).astype(np.int64)
    assert np.array_equal(np.frombuffer(raw, "<i2").astype(np.int64), a * b)
