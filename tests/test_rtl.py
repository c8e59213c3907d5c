"""RTL backend: the generated Verilog lints clean and is bit-exact in Verilator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import need

from mnist_edge import data, golden, qgraph
from mnist_edge.backends import rtl
from mnist_edge.errors import MnistEdgeError
from mnist_edge.ops import ONNX_KINDS
from mnist_edge.paths import TEMPLATES_DIR
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
    exe = need("verilator")
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
    spacing = 24 // digit if digit else 1
    subprocess.run([exe, "--cc", "--exe", "--build", "-Wno-fatal", "-O2", f"-GDIGIT={digit}",
                    "-CFLAGS", f"-DSPACING={spacing}", "--top-module", "mnist_edge_requant",
                    "mnist_edge_requant.v", "tb.cpp", "-o", "tb"],
                   cwd=tmp_path, check=True, capture_output=True)
    text = "\n".join(" ".join(str(int(v)) for v in row) for row in cases) + "\n"
    proc = subprocess.run([str(tmp_path / "obj_dir" / "tb")], input=text, capture_output=True,
                          text=True, check=True)
    hw = np.array(proc.stdout.split(), dtype=np.int64)
    assert hw.size == len(cases)
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
    graph.ops[1].kind = "add"
    monkeypatch.setattr(graph, "validate", lambda: None)
    with pytest.raises(MnistEdgeError, match=rf"op {graph.ops[1].name}: op kind 'add'"):
        rtl.lower(graph, 8)


def test_ice40_pll_settings() -> None:
    """The iCEBreaker PLL for the iCE40 clock, as `icepll -i 12 -o F` gives them."""
    assert rtl.ice40_pll(27.0) == {"divr": 0, "divf": 71, "divq": 5, "filter_range": 1,
                                   "vco_mhz": 864}
    assert rtl.ice40_pll(33.75) == {"divr": 0, "divf": 44, "divq": 4, "filter_range": 1,
                                    "vco_mhz": 540}
    with pytest.raises(MnistEdgeError, match="cannot make exactly 33.7 MHz"):
        rtl.ice40_pll(33.7)


def test_ice40_lanes_pair_on_the_dsps(tmp_path: Path) -> None:
    """Two lanes per SB_MAC16, 8 of them: an odd or too large lane count is refused."""
    graph = random_qgraph(3, "dense")
    for lanes in (3, 18):
        with pytest.raises(MnistEdgeError, match="must be even and at most 16"):
            rtl.generate_rtl(graph, tmp_path / f"rtl{lanes}", fpga="ice40-up5k", lanes=lanes)


def test_lowering_covers_every_qgraph_kind() -> None:
    """Every kind is lowered or refused with a reason; a graph with an add is refused by name."""
    assert set(ONNX_KINDS) <= set(rtl.LOWERING) | set(rtl.REFUSED)
    with pytest.raises(MnistEdgeError, match=r"op a0: op kind 'add' .*third"):
        rtl.lower(random_dag_qgraph(0), 4)


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
    r = synth(tmp_path / "run", "ice40-up5k", lanes=4, seeds=(1, 2))  # 2 seeds: CI time
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
def test_synthesized_netlist_exact_at_gate_level(tiny_run: Path, mnist_dir: Path) -> None:
    """The yosys netlist the UP5K bitstream is placed from, simulated with yosys's cell
    models, gives golden's logits: synthesis kept the numbers (the RTL test cannot see a
    synthesis fault, such as the SB_MAC16 inference this caught)."""
    for tool in ("verilator", "yosys"):
        need(tool)
    images, labels = data.load_mnist("test", str(mnist_dir))
    f = validate_backend(tiny_run, "rtl-netlist", images[:3], labels[:3],
                         {"fpga": "ice40-up5k"})
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
    exe = need("verilator")
    sources = [str(TEMPLATES_DIR / "rtl" / "mnist_edge_mul8x2.v")]
    defines = []
    if model == "sb_mac16":
        need("yosys")
        from mnist_edge.targets.fpga_synth import cell_models

        cells, cell_defines = cell_models("ice40-up5k")
        sources.append(str(cells))
        defines = [f"-D{d}" for d in ("MNIST_EDGE_ICE40_DSP", *cell_defines)]
    (tmp_path / "tb.cpp").write_text(MUL8X2_TB)
    subprocess.run([exe, "--cc", "--exe", "--build", "-Wno-fatal", "-O2", *defines,
                    "--top-module", "mnist_edge_mul8x2", *sources, "tb.cpp", "-o", "tb"],
                   cwd=tmp_path, check=True, capture_output=True)
    raw = subprocess.run([str(tmp_path / "obj_dir" / "tb")], capture_output=True,
                         check=True).stdout
    p = np.frombuffer(raw, "<u2").reshape(65536, 2).astype(np.int64)
    k = np.arange(65536)
    a = (k >> 8).astype(np.uint8).astype(np.int8).astype(np.int64)
    b = (k & 255).astype(np.uint8).astype(np.int8).astype(np.int64)
    c = ((~k >> 8) & 255).astype(np.uint8).astype(np.int8).astype(np.int64)
    for prod, x, y in ((p[:, 0], a, b), (p[:, 1], b, c)):
        assert np.array_equal(prod, (x + 128) * (y + 128))
        assert np.array_equal(prod - 128 * (x + 128) - 128 * (y + 128) + 16384, x * y)
    assert len(np.unique(a * 256 + b)) == len(np.unique(b * 256 + c)) == 65536
