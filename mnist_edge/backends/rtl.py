"""Synthesizable Verilog for FPGAs, rendered from a QGraph.

The design is one layer engine (templates/rtl/mnist_edge_engine.v.j2) that runs the
model's layers in sequence from a generated layer-descriptor ROM, with `lanes` int8 MAC
lanes computing that many output channels side by side. Everything model-specific lives
in data: the descriptor ROM (mnist_edge_layers.vh) and the ROM images under mem/
($readmemh). `LOWERING` maps each QGraph op kind to the descriptor and ROM contents it
becomes; a kind without an entry is refused with an error naming the op.

Two identities keep the hardware small and exact (the result equals the contract's):
* conv / linear multiply raw int8 inputs and fold the input zero point into the bias,
  bias' = bias - z_x * sum(w); padded taps read z_x, so they still contribute nothing;
* average pools sum raw inputs with bias' = -N * z_x, then requantize with M = s_x/(N s_y);
* an add sums its two inputs' raw values weighted by its integer weights k_a, k_b
  (ops/elementwise.py) with bias' = -(k_a z_a + k_b z_b); a concat runs one pass layer per
  input into its channel slice of the output (a copy, or a requantization when the input's
  quantization differs from the output's).
Tensors that stay live beside the one a layer works on (a residual branch) are placed in
the activation RAMs by the planner (rtl_plan.py).
Requantization is the integer-only path (requant.decompose -> m, shift), as in the HLS
backend and the C kernels' int mode.

A graph in the `tflite` arithmetic runs on the same engine with TFLM's integer recipes
(constants from QGraph.prepare, one requantizer, mnist_edge_requant_tfl.v):
* conv / linear: the same bias fold, then MultiplyByQuantizedMultiplier with the per-channel
  Q31 multiplier and shift, + z_y, the fused activation's clamp (per layer);
* add: TFLM's per-input rescale MBQM((x + offset) << 20, m_i, s_i) is a function of the
  int8 x alone, so each input's is a 256-entry int32 table (the tap ROM) the SUM taps read;
  their int32 sum then takes the output MBQM, + z_y, the clamp;
* average pool: the sum of raw inputs divided by N with TFLM's rounding (half away from
  zero), as floor((|sum| + N/2) * ceil(2^31 / N) / 2^31) with the sign (checked here for
  every sum of N int8 values);
* softmax (last op only): mnist_edge_softmax.v over the logits, before they are sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import golden
from ..errors import MnistEdgeError
from ..ops.elementwise import add_weights
from ..ops.tflite_kernels import softmax_exp
from ..paths import TEMPLATES_DIR, atomic_dir, template_env
from ..qgraph import QGraph, pool_window
from ..requant import (
    ACC_LIMIT,
    INT32_MAX,
    multiply_by_quantized_multiplier_smaller_than_one,
)
from ..testing import random_input_values, random_pixels
from .inputs import require_arithmetic, require_byte_image
from .memfiles import mem_text, packed_mem_text, requant_words
from .rtl_plan import INPUT, plan

MODE_MAC, MODE_SUM, MODE_MAX = 0, 1, 2
MODE_NAMES = {MODE_MAC: "MAC", MODE_SUM: "SUM", MODE_MAX: "MAX"}

# Devices the generator sizes a design for: default lanes and the clock the board top
# runs the engine at (the synth flow checks timing against it).
# dsp_lanes: how many multipliers (lanes x positions) are DSP blocks (`*`), leaving the
# requantization's 24 x 24 product its share (ECP5-25F: 28 MULT18X18D, 4 for the product);
# the others multiply in logic (mnist_edge_mul8_lut.v). positions: 4 makes each lane
# compute a 2x2 pool window's 4 conv outputs (a conv and its 2x2 max pool fused; default
# 1). mul8x2 (iCE40): every lane multiplies on an explicitly instantiated
# SB_MAC16 in dual 8x8 mode, two lanes per DSP (templates/rtl/mnist_edge_mul8x2.v; no
# inference: yosys 0.23's `synth_ice40 -dsp` on the lanes gave a netlist with wrong logits),
# so the UP5K's 8 SB_MAC16 give 16 lanes, and the requantizer computes its product in
# logic, rq_digit bits of m a cycle (24 / rq_digit cycles per value; 0: `*` in one cycle;
# 8 rather than 12: 230 fewer LUT4 and a shorter path, for 6,300 more gapnet cycles).
# The UP5K clock: 33.75 MHz (the PLL's 12 MHz x 45 / 16) is what gapnet needs for 4.5 ms
# and what its design meets on every nextpnr seed tried (docs/BENCHMARKS.md).
FPGAS: dict[str, dict[str, Any]] = {
    "ice40-up5k": {"lanes": 16, "dsp_lanes": 0, "mul8x2": True, "rq_digit": 8,
                   "clock_mhz": 33.75, "board": "iCEBreaker"},
    # positions 4: each lane computes a 2x2 pool window's 4 conv outputs (fused max pools),
    # 128 multipliers: 24 on MULT18X18D, 104 in logic. 43.75 MHz (the PLL's 25 MHz x 7 / 4):
    # the default model's 17,131 cycles in 0.392 ms (<= 0.4 ms needs >= 42.83 MHz); the
    # drain's max of 4 sums after the bias add is its critical path (docs/BENCHMARKS.md)
    "ecp5-25k": {"lanes": 32, "positions": 4, "dsp_lanes": 24, "mul8x2": False,
                 "rq_digit": 0, "clock_mhz": 43.75, "board": "ULX3S",
                 "part": "LFE5U-25F-6BG381C"},
    # LFE5U-85F (ULX3S 85F: the same board and CABGA381 pinout as the 25F, so the same top
    # and pin file): 32 lanes x 4 positions = 128 multipliers, every one on a MULT18X18D
    # beside the requantizer's 4 and a tflite softmax's 4 (of 156); 208 EBR hold the 4
    # copies of the activation RAMs. quad: the 4 positions also serve unpooled MAC layers,
    # a 2x2 block of outputs per lane, each requantized (tflite graphs too). dual_port:
    # activation RAMs with a read and a write port (DP16KD), so a layer may write the RAM
    # it reads and a residual add needs no copy layer (rtl_plan.py)
    # wide_drain: a quad layer's drain takes 2 values a cycle (positions (0, 1), then
    # (2, 3): adjacent outputs) through 2 requantizers into one 16-bit write of the RAM;
    # drain_tail 3: a reduction's last tap issues n cycles after the previous one's for its
    # n drain cycles (the other devices keep n + 1). 56.25 MHz: the PLL's 25 MHz x 9 / 4;
    # MLPerf's ResNet-8 in 165,865 cycles, 2.95 ms; both routed seeds meet it (57.99 and
    # 56.31 MHz; 58.33 MHz, 25 x 7 / 3, is missed by both: docs/BENCHMARKS.md)
    "ecp5-85k": {"lanes": 32, "positions": 4, "quad": True, "dual_port": True,
                 "wide_drain": True, "drain_tail": 3, "dsp_lanes": 128,
                 "mul8x2": False, "rq_digit": 0, "clock_mhz": 56.25,
                 "board": "ULX3S 85F", "part": "LFE5U-85F-6BG381C"},
}
ICE40_DSPS = 8  # SB_MAC16 on the UP5K
# the tflite softmax's 32 x 32 multiplier: 4 MULT18X18D, which the ECP5-25F (28, all taken
# by 24 lanes and the requantizer) takes from its lanes; the 85F has them to spare
SOFTMAX_DSPS = 4
DEFAULT_FPGA = "ecp5-25k"

STATIC_FILES = ("mnist_edge_requant.v", "mnist_edge_prenorm.v", "mnist_edge_act_ram.v",
                "mnist_edge_mul8x2.v", "mnist_edge_mul8_lut.v",
                "mnist_edge_uart_rx.v", "mnist_edge_uart_tx.v")
TEMPLATE_FILES = {
    "mnist_edge_engine.v.j2": "mnist_edge_engine.v",
    "mnist_edge_layers.vh.j2": "mnist_edge_layers.vh",
    "mnist_edge_uart_top.v.j2": "mnist_edge_uart_top.v",
    "top_icebreaker.v.j2": "top_icebreaker.v",
    "top_ulx3s.v.j2": "top_ulx3s.v",
    "icebreaker.pcf": "icebreaker.pcf",
    "ulx3s.lpf": "ulx3s.lpf",
    "tb_mnist_edge.cpp.j2": "tb_mnist_edge.cpp",
    "README.md.j2": "README.md",
}
ENGINE_SOURCES = ("mnist_edge_engine.v", "mnist_edge_requant.v", "mnist_edge_prenorm.v",
                  "mnist_edge_act_ram.v", "mnist_edge_mul8x2.v", "mnist_edge_mul8_lut.v")
# written only into a design in the tflite arithmetic (the softmax only when it has one),
# so an onnx design's tree stays as it was
TFLITE_FILES = ("mnist_edge_requant_tfl.v", "mnist_edge_softmax.v")
# written only into a design whose activation RAMs have a write port each (dual_port)
DUAL_PORT_FILE = "mnist_edge_act_ram_dp.v"
UART_SOURCES = (*ENGINE_SOURCES, "mnist_edge_uart_rx.v", "mnist_edge_uart_tx.v",
                "mnist_edge_uart_top.v")


def design_sources(rtl_dir: Path, uart: bool = False) -> tuple[str, ...]:
    """The Verilog files of the design in rtl_dir, for Verilator and yosys: the engine's
    (and the UART top's), plus the tflite arithmetic's modules where the design has them."""
    extra = tuple(name for name in (*TFLITE_FILES, DUAL_PORT_FILE)
                  if (Path(rtl_dir) / name).exists())
    return (*(UART_SOURCES if uart else ENGINE_SOURCES), *extra)


BOARD_TOPS = {"ice40-up5k": ("top_icebreaker", "top_icebreaker.v", "icebreaker.pcf"),
              "ecp5-25k": ("top_ulx3s", "top_ulx3s.v", "ulx3s.lpf"),
              "ecp5-85k": ("top_ulx3s", "top_ulx3s.v", "ulx3s.lpf")}
ULX3S_PART = FPGAS["ecp5-25k"]["part"]  # the ULX3S files of a design for another device


@dataclass
class Layer:
    """One entry of the descriptor ROM: a loop nest the engine runs."""

    index: int
    summary: str
    ops: list[str]
    mode: int
    dw: int  # 1: output channel c reads only input channel c (pools, depthwise conv)
    groups: int  # channel groups: ceil(cout / lanes) for MAC, C when dw
    cout: int
    cin: int  # input channels summed per output (1 when dw)
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    oh: int
    ow: int
    zx: int
    zy: int
    out_size: int
    w_base: int = 0
    k: int = 0  # weight words per group
    ch_base: int = 0
    lut: int = 0
    lut_base: int = 0
    in_buf: int = 0
    out_buf: int = 1  # the RAM written (1 - in_buf unless the RAMs have a write port each)
    in_off: int = 0  # first input address (a conv group's first input channel)
    out_off: int = 0  # first output address
    macs: int = 0
    reads: list[str] = field(default_factory=list)  # tensors read (an add: two)
    writes: str = ""  # the tensor written (a concat's or conv group's: a slice of it)
    cstep: int = 0  # address step from one input channel to the next (0: h * w)
    ka: int = 1  # weighted-sum layers (add): each tap's weight, x * ka then x * kb
    kb: int = 1
    act_lo: int = -128  # tflite: the fused activation's clamp
    act_hi: int = 127
    div: int = 0  # tflite average pool: the requantizer divides by N (half = N // 2)
    half: int = 0
    tap: int = 0  # tflite add: SUM taps read the tap ROM from tap_base (first input) and
    tap_base: int = 0  # tap_base + 256 (second)
    pool: int = 0  # 1: a 2x2 / 2 max pool fused in; oh, ow count its outputs (positions)
    quad: int = 0  # 1: each lane computes a 2x2 block of outputs; oh, ow count the blocks
    wide: int = 0  # 1: a quad layer drained 2 values a cycle (its outputs at even addresses)

    @property
    def hw(self) -> int:
        return self.h * self.w

    @property
    def ohw(self) -> int:
        return self.oh * self.ow

    @property
    def out_hw(self) -> int:
        """Values of one output channel (a quad layer's oh, ow count 2x2 blocks)."""
        return self.ohw * (4 if self.quad else 1)


@dataclass
class Lowering:
    """What the ops lower into: descriptor entries and the contents of every ROM."""

    lanes: int
    offset: bool = False  # lanes multiply (x + 128)(w + 128): fold -128 * sum(w)
    tflite: bool = False  # the graph's arithmetic is `tflite` (Q31 multipliers, TFLM recipes)
    positions: int = 1  # 4: every lane computes a 2x2 pool window's 4 positions at once
    quad: bool = False  # the 4 positions also serve unpooled MAC layers (2x2 output blocks)
    sdp: bool = False  # activation RAMs with a read and a write port: no copy layers
    wide: bool = False  # quad layers drain 2 values a cycle (2 requantizers, 16-bit writes)
    drain_tail: int = 4  # BUSY_TAIL: a last tap issues n + drain_tail - 3 cycles after the last
    layers: list[Layer] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)  # [words, lanes] int8 blocks
    bias: list[np.ndarray] = field(default_factory=list)
    mult: list[np.ndarray] = field(default_factory=list)
    shift: list[np.ndarray] = field(default_factory=list)
    luts: list[np.ndarray] = field(default_factory=list)
    taps: list[np.ndarray] = field(default_factory=list)  # tflite add: 256 int32 per input
    softmax: dict[str, int] | None = None  # tflite: a final softmax's constants (prepare)
    storage: dict[str, str] = field(default_factory=dict)  # tensor -> the tensor it views
    shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # stored tensors
    reads: list[str] = field(default_factory=list)  # the op being lowered: what it reads
    writes: str = ""  # and writes
    weighted: bool = False  # a layer sums weighted taps (an add): the engine's x * k path
    depth: list[int] = field(default_factory=lambda: [1, 1])  # activation RAM bytes (A, B)
    out_buf: int = 0  # the RAM holding the logits
    copies: int = 0  # pass layers the planner added to move a tensor to the other RAM

    def append(self, layer: Layer) -> None:
        layer.reads = layer.reads or list(self.reads)
        layer.writes = layer.writes or self.writes
        self.layers.append(layer)

    @property
    def weight_words(self) -> int:
        return sum(len(b) for b in self.weights)

    @property
    def channels(self) -> int:
        return sum(len(b) for b in self.bias)

    def add_channels(self, bias: np.ndarray, m: np.ndarray, shift: np.ndarray) -> int:
        base = self.channels
        self.bias.append(np.asarray(bias, np.int64))
        self.mult.append(np.asarray(m, np.int64))
        self.shift.append(np.asarray(shift, np.int64))
        return base

    def add_weights(self, words: np.ndarray) -> int:
        base = self.weight_words
        self.weights.append(words)
        return base


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else (int(math.prod(shape)), 1, 1)


def _lane_words(w: np.ndarray, lanes: int) -> np.ndarray:
    """[cout, K] weights -> [groups * K, lanes]: word g*K + k holds tap k of channels g*P + l."""
    cout, k = w.shape
    groups = -(-cout // lanes)
    padded = np.zeros((groups * lanes, k), np.int64)
    padded[:cout] = w
    return padded.reshape(groups, lanes, k).transpose(0, 2, 1).reshape(groups * k, lanes)


def _mac_layer(low: Lowering, graph: QGraph, i: int, dw: bool, w2: np.ndarray,
               geometry: dict[str, int], summary: str, channels: slice = slice(None),
               in_off: int = 0, out_off: int = 0) -> None:
    op, x = graph.ops[i], graph.input_of(i)
    m, shift = (a[channels] for a in _channel_words(low, graph, i, op.output.shape[0]))
    bias = (op.arrays["bias"][channels].astype(np.int64)
            - x.zero_point * w2.astype(np.int64).sum(axis=1))
    if low.offset:  # the engine sums (x + 128)(w + 128) and takes 128 * sum(x + 128) off
        bias = bias - 128 * w2.astype(np.int64).sum(axis=1)
    cout = w2.shape[0]
    if dw:  # lane 0 carries channel c's taps in group c
        words = np.zeros((w2.size, low.lanes), np.int64)
        words[:, 0] = w2.ravel()
        groups, k = cout, w2.shape[1]
    else:
        words = _lane_words(w2, low.lanes)
        groups, k = -(-cout // low.lanes), w2.shape[1]
    layer = Layer(len(low.layers), summary, [op.name], MODE_MAC, int(dw), groups, cout,
                  1 if dw else geometry["cin"], zx=x.zero_point, zy=op.output.zero_point,
                  out_size=op.output.size, k=k,
                  macs=cout * geometry["oh"] * geometry["ow"] * w2.shape[1],
                  **{key: v for key, v in geometry.items() if key != "cin"})
    layer.w_base = low.add_weights(words)
    layer.ch_base = low.add_channels(bias, m, shift)
    layer.in_off, layer.out_off = in_off, out_off
    _set_act(low, graph, i, layer)
    low.append(layer)


def _channel_words(low: Lowering, graph: QGraph, i: int, cout: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(m, shift) per output channel in the graph's arithmetic: the onnx arithmetic's
    24-bit mantissa and right shift, or TFLM's Q31 multiplier and signed exponent
    (QGraph.prepare: per channel, or one per tensor)."""
    if not low.tflite:
        return requant_words(graph, i, "RTL")
    c = graph.prepare(i)
    m = np.broadcast_to(np.asarray(c["mult"], np.int64), (cout,)).copy()
    shift = np.broadcast_to(np.asarray(c["shift"], np.int64), (cout,)).copy()
    if np.any(m < 0) or np.any(m > INT32_MAX) or np.any(shift < -31) or np.any(shift > 30):
        raise MnistEdgeError(f"op {graph.ops[i].name}: a Q31 multiplier or shift outside "
                             "QuantizeMultiplier's range (0..2^31-1, -31..30)")
    return m, shift


def _set_act(low: Lowering, graph: QGraph, i: int, layer: Layer) -> None:
    """tflite: the layer's output clamp is the op's fused activation range (prepare)."""
    if low.tflite:
        layer.act_lo, layer.act_hi = (int(v) for v in graph.prepare(i)["act"])


def _lower_conv2d(low: Lowering, graph: QGraph, i: int) -> None:
    op, x = graph.ops[i], graph.input_of(i)
    w = op.arrays["weight"]
    cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    groups = int(op.attrs.get("groups", 1))
    dw = groups != 1 and cin_g == 1 and cout == groups
    sh, sw = op.attrs.get("stride", [1, 1])
    pt, pl, _, _ = op.attrs.get("padding", [0, 0, 0, 0])
    _, oh, ow = op.output.shape
    summary = (f"{op.name}: conv2d {_dims(x.shape)} -> {_dims(op.output.shape)}, kernel "
               f"{kh}x{kw}, stride {sh}x{sw}, padding {pt}/{pl}" + (", depthwise" if dw else ""))
    geometry = dict(cin=cin_g, h=h, w=wd, kh=kh, kw=kw, sh=sh, sw=sw, pt=pt, pl=pl, oh=oh,
                    ow=ow)
    if dw or groups == 1:
        _mac_layer(low, graph, i, dw, w.reshape(cout, -1), geometry, summary)
        return
    og = cout // groups  # a grouped conv: one layer per group, each on its channel slices
    for gi in range(groups):
        part = slice(gi * og, (gi + 1) * og)
        _mac_layer(low, graph, i, False, w[part].reshape(og, -1), geometry,
                   f"{summary}, group {gi + 1} of {groups}", part, gi * cin_g * h * wd,
                   gi * og * oh * ow)


def _lower_linear(low: Lowering, graph: QGraph, i: int) -> None:
    op, x = graph.ops[i], graph.input_of(i)
    w = op.arrays["weight"]
    summary = f"{op.name}: linear {x.size} -> {w.shape[0]}"
    geometry = dict(cin=x.size, h=1, w=1, kh=1, kw=1, sh=1, sw=1, pt=0, pl=0, oh=1, ow=1)
    _mac_layer(low, graph, i, False, w, geometry, summary)


def _pool_layer(low: Lowering, graph: QGraph, i: int, mode: int, kernel: list[int],
                stride: list[int], summary: str) -> Layer:
    op, x = graph.ops[i], graph.input_of(i)
    if any(op.attrs.get("padding", [0, 0, 0, 0])):
        raise MnistEdgeError(f"op {op.name}: padded {op.kind} is not supported by the RTL "
                             "backend")
    c, h, wd = _chw(x.shape)
    _, oh, ow = _chw(op.output.shape)
    layer = Layer(len(low.layers), summary, [op.name], mode, 1, c, c, 1, h, wd,
                  kernel[0], kernel[1], stride[0], stride[1], 0, 0, oh, ow,
                  x.zero_point, op.output.zero_point, op.output.size, k=kernel[0] * kernel[1])
    low.append(layer)
    return layer


def _only_reader(low: Lowering, graph: QGraph, i: int) -> bool:
    """Op i is the only reader of the tensor it reads (flatten views aside)."""
    src = low.reads[0]
    return [j for j, o in enumerate(graph.ops) if o.kind != "flatten"
            and any(low.storage[n] == src for n in o.inputs)] == [i]


def _fuse_maxpool(low: Lowering, graph: QGraph, i: int) -> bool:
    """A 2x2 / 2 max pool right after the MAC layer that alone writes its input, on an
    engine whose lanes compute 4 positions: the layer runs over the pool's outputs, each
    lane computing the window's 4 sums side by side, and the drain requantizes only their
    maximum. Exact: the requantization is monotone non-decreasing in acc (M > 0; every
    rounding step is monotone), and so is a fused table when its entries never decrease,
    so the max of the 4 outputs is the output of the max sum. Rows and columns the pool
    drops (odd sizes) are never computed. Not for tflite graphs, whose max pool carries its
    own fused activation clamp."""
    op = graph.ops[i]
    src = low.reads[0]
    last = low.layers[-1] if low.layers else None
    if (low.positions != 4 or low.tflite or last is None or last.mode != MODE_MAC or last.pool
            or op.attrs["kernel"] != [2, 2] or op.attrs["stride"] != [2, 2]
            or any(op.attrs.get("padding", [0, 0, 0, 0])) or last.writes != src
            or sum(d.writes == src for d in low.layers) != 1
            or 2 * max(last.sh, last.sw) > 15 or not _only_reader(low, graph, i)):
        return False
    if last.lut and np.any(np.diff(low.luts[last.lut_base // 256]) < 0):
        return False  # a table that decreases somewhere does not commute with max
    _, oh, ow = _chw(op.output.shape)
    last.summary += f", then {op.name}: maxpool2d 2x2 stride 2 fused (4 positions per lane)"
    last.ops.append(op.name)
    last.writes, last.out_size, last.pool = low.writes, op.output.size, 1
    last.oh, last.ow = oh, ow
    last.macs = last.cout * 4 * oh * ow * last.cin * last.kh * last.kw
    return True


def _lower_maxpool2d(low: Lowering, graph: QGraph, i: int) -> None:
    op, x = graph.ops[i], graph.input_of(i)
    k, s = op.attrs["kernel"], op.attrs["stride"]
    if _fuse_maxpool(low, graph, i):
        return
    layer = _pool_layer(low, graph, i, MODE_MAX, k, s, f"{op.name}: maxpool2d "
                        f"{_dims(x.shape)} -> {_dims(op.output.shape)}, window {k[0]}x{k[1]}, "
                        f"stride {s[0]}x{s[1]}")
    _set_act(low, graph, i, layer)


def _avg_channels(low: Lowering, graph: QGraph, i: int, layer: Layer) -> None:
    x = graph.input_of(i)
    n = pool_window(graph.ops[i], x)
    if low.tflite:  # TFLM sums raw values and divides by N, rounding half away from zero
        recip = tflite_pool_reciprocal(n)
        layer.div, layer.half, layer.zy = 1, n // 2, 0
        layer.ch_base = low.add_channels(np.zeros(layer.cout, np.int64),
                                         np.full(layer.cout, recip), np.zeros(layer.cout))
        _set_act(low, graph, i, layer)
        return
    m, shift = requant_words(graph, i, "RTL")
    layer.ch_base = low.add_channels(np.full(layer.cout, -n * x.zero_point), m, shift)


def tflite_pool_reciprocal(n: int) -> int:
    """c = ceil(2^31 / N), checked to give TFLM's average (C's (sum +- N/2) / N) as
    floor((|sum| + N/2) * c / 2^31) with the sum's sign, for every sum of N int8 values."""
    if not 1 <= n <= 1 << 15:
        raise MnistEdgeError(f"an average pool over {n} values: the RTL engine divides sums "
                             "of at most 32,768 values")
    c = -(-(1 << 31) // n)
    mag = np.arange(0, 128 * n + 1, dtype=np.int64)
    if not np.array_equal(((mag + n // 2) * c) >> 31, (mag + n // 2) // n):
        raise MnistEdgeError(f"an average pool over {n} values has no exact reciprocal")
    return c


def _lower_avgpool2d(low: Lowering, graph: QGraph, i: int) -> None:
    op, x = graph.ops[i], graph.input_of(i)
    k, s = op.attrs["kernel"], op.attrs["stride"]
    layer = _pool_layer(low, graph, i, MODE_SUM, k, s, f"{op.name}: avgpool2d "
                        f"{_dims(x.shape)} -> {_dims(op.output.shape)}, window {k[0]}x{k[1]}, "
                        f"stride {s[0]}x{s[1]}")
    _avg_channels(low, graph, i, layer)


def _lower_global_avgpool(low: Lowering, graph: QGraph, i: int) -> None:
    op, x = graph.ops[i], graph.input_of(i)
    _, h, wd = x.shape
    layer = _pool_layer(low, graph, i, MODE_SUM, [h, wd], [1, 1], f"{op.name}: global_avgpool "
                        f"{_dims(x.shape)} -> {_dims(op.output.shape)}")
    _avg_channels(low, graph, i, layer)


def _lower_lut(low: Lowering, graph: QGraph, i: int) -> None:
    """Fused into the output stage of the layers that wrote its input, when they were the
    last ones and nothing else reads that tensor; a pass-through layer otherwise."""
    op, x = graph.ops[i], graph.input_of(i)
    src = low.reads[0]
    fuse = (bool(low.layers) and low.layers[-1].writes == src and _only_reader(low, graph, i)
            and not any(d.lut for d in low.layers if d.writes == src))
    if fuse:
        layers = [d for d in low.layers if d.writes == src]
        for layer in layers:
            layer.summary += f", then table {op.name} ({op.attrs.get('activation', 'lut')})"
            layer.ops.append(op.name)
            layer.writes = low.writes
    else:
        _pool_layer(low, graph, i, MODE_MAX, [1, 1], [1, 1],
                    f"{op.name}: table over {_dims(x.shape)} (a 1x1 max pool pass)")
        layers = [low.layers[-1]]
    for layer in layers:
        layer.lut, layer.lut_base = 1, 256 * len(low.luts)
    low.luts.append(op.arrays["table"].astype(np.int64))


def _lower_add(low: Lowering, graph: QGraph, i: int) -> None:
    """One SUM layer over both inputs: output (c, p) sums k_a * a[c, p] and k_b * b[c, p],
    two taps, the second `cstep` addresses after the first (the planner puts both inputs
    in one RAM); bias -(k_a z_a + k_b z_b), then the add's one requantization."""
    op = graph.ops[i]
    a, b = graph.inputs_of(i)
    if low.tflite:
        _lower_add_tflite(low, graph, i)
        return
    (ka, kb), _ = add_weights([a, b], op.output)
    c, h, wd = _chw(a.shape)
    layer = Layer(len(low.layers), f"{op.name}: add {_dims(a.shape)} + {_dims(b.shape)} "
                  f"(weights {ka}, {kb})", [op.name], MODE_SUM, 1, c, c, 2, h, wd, 1, 1, 1, 1,
                  0, 0, h, wd, a.zero_point, op.output.zero_point, op.output.size, k=2,
                  ka=ka, kb=kb)
    m, shift = requant_words(graph, i, "RTL")
    layer.ch_base = low.add_channels(np.full(c, -(ka * a.zero_point + kb * b.zero_point)),
                                     np.full(c, m[0]), np.full(c, shift[0]))
    low.weighted = True
    low.append(layer)


def _lower_add_tflite(low: Lowering, graph: QGraph, i: int) -> None:
    """TFLM's ADD: one SUM layer of two taps, each reading its input's rescale table,
    table_i[x + 128] = MBQM((x + offset_i) << left_shift, m_i, s_i) (int32); the sum's
    output rescale, + z_y and the clamp are the requantizer's."""
    op = graph.ops[i]
    a, b = graph.inputs_of(i)
    if tuple(a.shape) != tuple(b.shape):
        raise MnistEdgeError(f"op {op.name}: a broadcasting add is not supported by the RTL "
                             f"backend ({_dims(a.shape)} + {_dims(b.shape)})")
    p = graph.prepare(i)
    x = np.arange(-128, 128, dtype=np.int64)
    for k in (1, 2):
        shifted = (x + p[f"input{k}_offset"]) << p["left_shift"]
        low.taps.append(multiply_by_quantized_multiplier_smaller_than_one(
            shifted, p[f"input{k}_multiplier"], p[f"input{k}_shift"]))
    c, h, wd = _chw(a.shape)
    layer = Layer(len(low.layers), f"{op.name}: add {_dims(a.shape)} + {_dims(b.shape)} "
                  "(TFLM: tables of each input's rescale)", [op.name], MODE_SUM, 1, c, c, 2,
                  h, wd, 1, 1, 1, 1, 0, 0, h, wd, a.zero_point, int(p["output_offset"]),
                  op.output.size, k=2, tap=1, tap_base=256 * (len(low.taps) - 2))
    layer.ch_base = low.add_channels(np.zeros(c, np.int64),
                                     np.full(c, p["output_multiplier"], np.int64),
                                     np.full(c, p["output_shift"], np.int64))
    layer.act_lo, layer.act_hi = (int(v) for v in p["act"])
    low.weighted = True
    low.append(layer)


def _lower_softmax(low: Lowering, graph: QGraph, i: int) -> None:
    """TFLM's SOFTMAX as the output stage (mnist_edge_softmax.v), after the last layer."""
    if i != len(graph.ops) - 1:
        raise MnistEdgeError(f"op {graph.ops[i].name}: the RTL engine runs a softmax only as "
                             "the graph's last op")
    low.softmax = {k: int(v) for k, v in graph.prepare(i).items()}


def _lower_concat(low: Lowering, graph: QGraph, i: int) -> None:
    """One pass layer per input into its channel slice of the output: a copy (1x1 max pool)
    when the input has the output's quantization, else a 1x1 sum requantized with the
    input's multiplier s_i / s_y and bias -z_i, as golden's identity conv."""
    op = graph.ops[i]
    m, shift = requant_words(graph, i, "RTL")
    _, oh, ow = _chw(op.output.shape)
    first = 0
    for j, (x, src) in enumerate(zip(graph.inputs_of(i), low.reads, strict=True)):
        c, h, wd = _chw(x.shape)
        same = (x.scale, x.zero_point) == (op.output.scale, op.output.zero_point)
        if low.tflite and not same:
            raise MnistEdgeError(f"op {op.name}: a tflite concat whose inputs' quantization "
                                 "differs from its output's is not supported by the RTL backend")
        what = "copied" if same else "requantized"
        layer = Layer(len(low.layers), f"{op.name}: concat input {j + 1} ({op.inputs[j]}, "
                      f"{_dims(x.shape)}) {what} into channels {first}..{first + c - 1}",
                      [op.name], MODE_MAX if same else MODE_SUM, 1, c, c, 1, h, wd, 1, 1, 1, 1,
                      0, 0, h, wd, x.zero_point, op.output.zero_point, c * h * wd, k=1,
                      reads=[src], out_off=first * oh * ow)
        if not same:
            layer.ch_base = low.add_channels(np.full(c, -x.zero_point), np.full(c, m[j]),
                                             np.full(c, shift[j]))
        low.append(layer)
        first += c


def _lower_flatten(low: Lowering, graph: QGraph, i: int) -> None:
    """Nothing to do: activations are stored in C, H, W order, which is the flat order."""


LOWERING: dict[str, Callable[[Lowering, QGraph, int], None]] = {
    "conv2d": _lower_conv2d,
    "linear": _lower_linear,
    "maxpool2d": _lower_maxpool2d,
    "avgpool2d": _lower_avgpool2d,
    "global_avgpool": _lower_global_avgpool,
    "lut": _lower_lut,
    "flatten": _lower_flatten,
    "add": _lower_add,
    "concat": _lower_concat,
    "softmax": _lower_softmax,
}
# Registered kinds the engine does not run yet, and why (tests/test_op_registry.py).
REFUSED: dict[str, str] = {}


def _quad_blocks(low: Lowering) -> None:
    """On an engine whose lanes compute 4 positions (and `quad`), every unpooled MAC layer
    of even output height and width runs over 2x2 blocks of its outputs: position
    (dy, dx) of a block reads dy * sh rows and dx * sw columns further (the fused pool's
    reads), and the drain requantizes all 4 sums of each lane, each into its own output
    address. So does a TFLM add (SUM taps of the tap ROM: lane 0 of each position reads
    its own copy of the ROM; 4 values per 2 taps instead of 1). A layer whose outputs do
    not tile (odd sizes, a linear layer), depthwise layers, pools and onnx adds (lane 0's
    x * k, position 0 only) keep position 0."""
    if not low.quad:
        return
    for layer in low.layers:
        blocks = (layer.oh % 2 == 0 and layer.ow % 2 == 0 and 2 * max(layer.sh, layer.sw) <= 15)
        mac = layer.mode == MODE_MAC and not layer.dw and not layer.pool
        if blocks and (mac or layer.tap):
            layer.quad = 1
            layer.oh, layer.ow = layer.oh // 2, layer.ow // 2
            layer.summary += ", 2x2 output blocks (4 positions per lane)"


def _copy_layer(low: Lowering, src: str, dst: str) -> Layer:
    """A 1x1 max pool pass that copies tensor src to the other RAM as dst (rtl_plan)."""
    c, h, w = low.shapes[src]
    low.shapes[dst] = (c, h, w)
    return Layer(0, f"copy of {src} into RAM {'AB'[int(dst[-1] == 'B')]} (the next layer "
                 "reads it beside a tensor there)", [], MODE_MAX, 1, c, c, 1, h, w, 1, 1, 1, 1,
                 0, 0, h, w, 0, 0, c * h * w, k=1, reads=[src], writes=dst)


def lower(graph: QGraph, lanes: int, offset: bool = False, positions: int = 1,
          quad: bool = False, sdp: bool = False, wide: bool = False,
          drain_tail: int = 4) -> Lowering:
    """The QGraph as descriptor entries and ROM contents, via `LOWERING`.

    offset: the lanes multiply offset operands (x + 128)(w + 128) (mnist_edge_mul8x2).
    positions: 4 when each lane computes a 2x2 window's 4 positions (fused max pools).
    quad: with 4 positions, unpooled MAC layers run over 2x2 output blocks too.
    sdp: the activation RAMs have a read port and a write port (the planner's same_bank).
    wide: (with quad and sdp) a quad layer whose outputs start at an even address drains
    positions (0, 1) and (2, 3) as pairs, 2 values a cycle into one 16-bit RAM write.
    drain_tail: the engine's BUSY_TAIL (4: one idle cycle per reduction; 3: none)."""
    graph.validate()
    require_arithmetic(graph, "RTL", ("onnx", "tflite"))
    if not 1 <= lanes <= 64:
        raise MnistEdgeError(f"--lanes must be 1..64, got {lanes}")
    if positions not in (1, 4) or (positions > 1 and offset):
        raise MnistEdgeError(f"the RTL engine computes 1 or 4 positions per lane (4 without "
                             f"the offset multipliers), not {positions}")
    if quad and positions != 4:
        raise MnistEdgeError("2x2 output blocks need 4 positions per lane")
    if wide and not (quad and sdp):
        raise MnistEdgeError("the wide drain needs 2x2 output blocks and two-port RAMs")
    low = Lowering(lanes, offset, tflite=graph.arithmetic == "tflite", positions=positions,
                   quad=quad, sdp=sdp, wide=wide, drain_tail=drain_tail)
    low.storage[INPUT] = INPUT
    low.shapes[INPUT] = _chw(graph.input.shape)
    for op in graph.ops:
        view = op.kind in ("flatten", "softmax")  # softmax: the output stage, in place
        low.storage[op.name] = low.storage[op.inputs[0]] if view else op.name
        if not view:
            low.shapes[op.name] = _chw(op.output.shape)
    for i, op in enumerate(graph.ops):
        if op.kind not in LOWERING:
            why = f" ({REFUSED[op.kind]})" if op.kind in REFUSED else ""
            raise MnistEdgeError(f"op {op.name}: op kind {op.kind!r} is not supported by the "
                                 f"RTL backend{why}; supported: {', '.join(LOWERING)}")
        if not low.tflite and graph.max_accumulator(i) >= ACC_LIMIT and \
                op.spec.multiplier is not None and \
                requant_words(graph, i, "RTL")[1].min() < 9:
            raise MnistEdgeError(f"op {op.name}: accumulators reach 2^24 and a requantization "
                                 "multiplier is 2^14 or more; the RTL engine's wide path "
                                 "(mnist_edge_prenorm.v) needs M < 2^14 there")
        low.reads = [low.storage[n] for n in op.inputs]
        low.writes = op.name
        LOWERING[op.kind](low, graph, i)
    if not low.layers:
        raise MnistEdgeError("the QGraph has no layer the RTL engine runs")
    _quad_blocks(low)
    sizes = {name: math.prod(shape) for name, shape in low.shapes.items()}
    output = low.storage[graph.ops[-1].name]
    placed = plan(low.layers, sizes, output, lambda src, dst: _copy_layer(low, src, dst),
                  same_bank=sdp)
    for k, layer in enumerate(low.layers):
        layer.index = k
        base = placed.offset[layer.reads[0]]
        if len(layer.reads) == 2:
            layer.cstep = (placed.offset[layer.reads[1]] - base) % (1 << 16)
        layer.in_off += base
        layer.out_off += placed.offset[layer.writes]
        # each pair (dy, 0), (dy, 1) of a block is one aligned 16-bit word: an even start
        # (blocks step by 2, block rows and channels by multiples of 2)
        layer.wide = int(wide and bool(layer.quad) and layer.out_off % 2 == 0)
        if layer.wide:
            layer.summary += ", drained 2 values a cycle"
    low.depth, low.out_buf, low.copies = placed.depth, placed.bank[output], placed.copies
    for layer in low.layers:
        for name, value, limit in (("channels", layer.cout, 4095),
                                   ("input channels", layer.cin, 4096), ("height", layer.h, 511),
                                   ("width", layer.w, 511), ("kernel", max(layer.kh, layer.kw),
                                                             31), ("stride", max(layer.sh,
                                                                                 layer.sw), 15)):
            if value > limit:
                raise MnistEdgeError(f"layer {layer.summary.split(':')[0]}: {name} {value} "
                                     f"exceeds the engine's limit {limit}")
    for ram, depth in zip("AB", low.depth, strict=True):
        if depth >= 1 << 16:
            raise MnistEdgeError(f"activation RAM {ram} needs {depth:,} bytes; the engine's "
                                 "16-bit activation addresses and counters stop at 65,535")
    return low


def accumulator_bits(graph: QGraph) -> int:
    """The engine's accumulator width: 25 bits while every op's worst case |acc| (its
    weights' and bias's, over every int8 input) is below 2^24, else as wide as the largest
    bound needs (at most 32: QGraph.validate bounds accumulators by 2^31). Sums wrap
    modulo 2^ACC_W on the way; the finished sum plus bias is exact in ACC_W bits."""
    if graph.arithmetic == "tflite" and any(op.kind == "add" for op in graph.ops):
        return 32  # TFLM's ADD sums two int32 rescaled inputs (each below 2^29 in magnitude)
    bound = max(graph.max_accumulator(i) for i in range(len(graph.ops)))
    return 25 if bound < ACC_LIMIT else min(32, bound.bit_length() + 1)


def ice40_pll(clock_mhz: float, ref_mhz: float = 12.0) -> dict[str, int]:
    """SB_PLL40 settings (SIMPLE feedback, DIVR 0) for clock_mhz from the 12 MHz oscillator:
    clock = ref * (DIVF + 1) / 2^DIVQ with the VCO in 533..1066 MHz, as icepll picks them."""
    for divq in range(1, 7):
        divf = clock_mhz * 2**divq / ref_mhz - 1
        if divf == int(divf) and 0 <= divf <= 127 and 533 <= ref_mhz * (divf + 1) <= 1066:
            return {"divr": 0, "divf": int(divf), "divq": divq, "filter_range": 1,
                    "vco_mhz": int(ref_mhz * (divf + 1))}
    raise MnistEdgeError(f"the iCE40 PLL cannot make exactly {clock_mhz} MHz from {ref_mhz} MHz "
                         "(DIVR 0): choose a multiple of 0.375 MHz between 16.7 and 66 MHz")


# EHXPLLL settings from the ULX3S's 25 MHz oscillator, as `ecppll -i 25 -o F` (yowasp-ecppll)
# gives them: F = 25 * CLKFB_DIV / CLKI_DIV, VCO = F * CLKOP_DIV in 400..800 MHz
ECP5_PLLS: dict[float, dict[str, int]] = {
    50.0: {"clki_div": 1, "clkfb_div": 2, "clkop_div": 12, "clkop_cphase": 5},
    46.875: {"clki_div": 8, "clkfb_div": 15, "clkop_div": 13, "clkop_cphase": 6},
    45.0: {"clki_div": 5, "clkfb_div": 9, "clkop_div": 13, "clkop_cphase": 6},
    43.75: {"clki_div": 4, "clkfb_div": 7, "clkop_div": 14, "clkop_cphase": 7},
    25.0 * 7 / 3: {"clki_div": 3, "clkfb_div": 7, "clkop_div": 11, "clkop_cphase": 5},
    56.25: {"clki_div": 4, "clkfb_div": 9, "clkop_div": 11, "clkop_cphase": 5},
}
ULX3S_CLOCK_MHZ = 50.0  # the ULX3S top written beside a design for another board


def ecp5_pll(clock_mhz: float) -> dict[str, Any]:
    """The ULX3S top's EHXPLLL settings for clock_mhz (and its VCO) from ECP5_PLLS."""
    if clock_mhz not in ECP5_PLLS:
        raise MnistEdgeError(f"no ECP5 PLL setting for {clock_mhz} MHz from the ULX3S's 25 MHz; "
                             f"choose from: {', '.join(f'{f:g}' for f in ECP5_PLLS)}")
    pll = ECP5_PLLS[clock_mhz]
    return {**pll, "vco_mhz": clock_mhz * pll["clkop_div"]}


def _bits(n: int) -> int:
    return max(1, (max(n, 1) - 1).bit_length())


def _signed_literal(value: int, width: int) -> str:
    return f"-{width}'sd{-value}" if value < 0 else f"{width}'sd{value}"


def _byte_hex(value: int) -> str:
    return f"{value & 0xFF:02X}"


def layer_cycle_bound(layer: Layer, lanes: int, rq_cycles: int = 1, drain_tail: int = 4) -> int:
    """Cycles a layer takes at least: each reduction issues its taps, and waits while the
    previous one's n drain cycles pass, one value (a wide quad layer: two) every rq_cycles
    cycles (its last tap issues n + drain_tail - 3 cycles after the previous one's;
    n * rq_cycles when rq_cycles > 1, which also spaces the requantizer's inputs)."""
    taps = layer.cin * layer.kh * layer.kw
    total = 0
    for g in range(layer.groups):
        n = 1 if layer.dw or layer.mode != MODE_MAC else min(lanes, layer.cout - g * lanes)
        # a 2x2 block: 4 values per lane leave, in 2 drain cycles when wide
        n *= (2 if layer.wide else 4) if layer.quad else 1
        total += layer.ohw * max(taps, n + drain_tail - 3 if rq_cycles == 1 else n * rq_cycles)
    return total + 12


def cycle_model(low: Lowering, pixels: int, rq_cycles: int = 1) -> int:
    """A lower bound on cycles per image (issue cycles plus I/O); simulation measures the truth."""
    total = pixels + 3 * low.layers[-1].out_size
    for layer in low.layers:
        total += layer_cycle_bound(layer, low.lanes, rq_cycles, low.drain_tail)
    return total


def lane_ops(layer: Layer) -> int:
    """Useful lane operations of a layer: one per MAC, pool tap or table pass value (a
    fused pool's layer computes 4 positions per output, a quad layer 4 per block)."""
    return (layer.cout * layer.ohw * layer.cin * layer.kh * layer.kw
            * (4 if layer.pool or layer.quad else 1))


def layer_context(low: Lowering) -> list[dict[str, Any]]:
    rows = []
    for d in low.layers:
        row = dict(d.__dict__)
        # a fused pool's or a quad layer's window origin moves 2 positions
        step = 2 if d.pool or d.quad else 1
        row.update(k=d.k if d.mode == MODE_MAC else 0, mode=f"MODE_{MODE_NAMES[d.mode]}",
                   hw=d.hw, ohw=d.out_hw, sh=step * d.sh, sw=step * d.sw,
                   psy=d.sh, psx=d.sw, prow=d.sh * d.w,
                   row_step=step * d.sh * d.w,
                   # modulo 2^16: a layer of one group never steps (64 lanes x 32 x 32)
                   out_gstep=(d.out_hw if d.dw else low.lanes * d.out_hw) % (1 << 16),
                   # output address steps: the next block (2 on), the next row of blocks
                   # (from the row's last block to 2 rows down); qrow: position 2's offset
                   ostep=2 if d.quad else 1, orow=2 * d.ow + 2 if d.quad else 1,
                   qrow=2 * d.ow if d.quad else 0,
                   iy0_v=_signed_literal(-d.pt, 10), ix0_v=_signed_literal(-d.pl, 10),
                   win0_v=(-d.pt * d.w - d.pl) % (1 << 16), zx_hex=_byte_hex(d.zx),
                   zy_hex=_byte_hex(d.zy), cstep=d.cstep or d.hw,
                   act_lo_hex=_byte_hex(d.act_lo), act_hi_hex=_byte_hex(d.act_hi))
        rows.append(row)
    return rows


def device_lowering(graph: QGraph, fpga: str, lanes: int | None = None) -> Lowering:
    """The QGraph lowered with the FPGAS entry's engine parameters (what generate_rtl
    writes): its lanes unless given, positions, quad blocks, two-port RAMs, wide drain."""
    device = FPGAS[fpga]
    # the extra positions serve fused max pools (which a tflite graph does not fuse) and,
    # on a device with `quad`, 2x2 output blocks of every other MAC layer
    quad = bool(device.get("quad", False))
    positions = (1 if graph.arithmetic == "tflite" and not quad
                 else int(device.get("positions", 1)))
    return lower(graph, int(lanes or device["lanes"]), offset=bool(device["mul8x2"]),
                 positions=positions, quad=quad, sdp=bool(device.get("dual_port", False)),
                 wide=bool(device.get("wide_drain", False)),
                 drain_tail=int(device.get("drain_tail", 4)))


def generate_rtl(graph: QGraph, out_dir: Path, vector_pixels: np.ndarray | None = None,
                 fpga: str = DEFAULT_FPGA, lanes: int | None = None) -> Path:
    """Write the Verilog tree (engine, descriptor ROM, ROM images, board tops, testbench)."""
    if fpga not in FPGAS:
        raise MnistEdgeError(f"unknown FPGA {fpga!r}; choose from: {', '.join(FPGAS)}")
    device = FPGAS[fpga]
    ulx3s_clock = (device["clock_mhz"] if BOARD_TOPS[fpga][0] == "top_ulx3s"
                   else ULX3S_CLOCK_MHZ)
    require_arithmetic(graph, "RTL", ("onnx", "tflite"))
    channels, height, width = require_byte_image(graph, "RTL")
    tflite = graph.arithmetic == "tflite"
    if tflite and device["mul8x2"]:
        raise MnistEdgeError(f"the tflite arithmetic on {fpga} is not implemented: its "
                             "requantizer's 32 x 32 product needs DSP blocks the lanes use")
    pixels = channels * height * width
    lanes = int(lanes or device["lanes"])
    if device["mul8x2"] and (lanes % 2 or lanes > 2 * ICE40_DSPS):
        raise MnistEdgeError(f"--lanes on {fpga} must be even and at most {2 * ICE40_DSPS}: "
                             f"two lanes per SB_MAC16, {ICE40_DSPS} SB_MAC16; got {lanes}")
    rq_digit = int(device["rq_digit"])
    rq_cycles = 24 // rq_digit if rq_digit else 1
    low = device_lowering(graph, fpga, lanes)
    positions, sdp = low.positions, low.sdp
    image = (height, width) if channels == 1 else (channels, height, width)
    if vector_pixels is None:  # int8 inputs: uniform bytes
        vector_pixels = (random_pixels(20, 0, image) if graph.input_encoding == "uint8" else
                         random_input_values(tuple(graph.input.shape), "int8", 20))
    vector_pixels = np.ascontiguousarray(vector_pixels).reshape(-1, *image)
    golden_logits = golden.run_int8(graph, vector_pixels)
    acc_w = accumulator_bits(graph)

    sizes = low.depth
    weights = (np.concatenate(low.weights) if low.weights else np.zeros((1, lanes), np.int64))
    if max(d.k for d in low.layers) >= 1 << _bits(len(weights)):  # d_k (WA bits) holds K
        weights = np.concatenate([weights, np.zeros((1, lanes), np.int64)])
    chan = low.channels
    bias = np.concatenate(low.bias) if chan else np.zeros(1, np.int64)
    mult = np.concatenate(low.mult) if chan else np.zeros(1, np.int64)
    shift = np.concatenate(low.shift) if chan else np.zeros(1, np.int64)
    luts = np.concatenate(low.luts) if low.luts else np.zeros(256, np.int64)
    taps = np.concatenate(low.taps) if low.taps else np.zeros(256, np.int64)
    if len(bias) <= lanes:  # the channel address (CA bits) also holds LANES: pad the ROMs
        bias, mult, shift = (np.concatenate([a, np.zeros(lanes + 1 - len(a), np.int64)])
                             for a in (bias, mult, shift))
    if low.offset:  # the engine adds the bias modulo 2^ACC_W: keep the ROM words short
        half = 1 << (acc_w - 1)
        bias = (bias + half) % (2 * half) - half
    if np.abs(bias).max() >= 1 << 31:
        raise MnistEdgeError("a folded bias does not fit 32 bits")
    weight_bytes = int(sum(b.size for b in (graph.ops[i].arrays.get("weight") for i in
                                            range(len(graph.ops))) if b is not None))
    context = {
        "model": graph.name,
        "qgraph_hash": graph.content_hash(),
        "lanes": lanes,
        "dsp_lanes": min(lanes * positions,
                         device["dsp_lanes"] - (SOFTMAX_DSPS if low.softmax and
                                                fpga == "ecp5-25k" else 0)),
        "positions": positions,
        "quad": any(d.quad for d in low.layers),
        "quad_tap": any(d.quad and d.tap for d in low.layers),
        "sdp": sdp,
        # two values a cycle through the drain (only where a layer uses it; 85F)
        "wide": any(d.wide for d in low.layers),
        "drain_tail": low.drain_tail,
        # two-port RAM designs (85F): the softmax reads its own copy of the logits
        "sm_local": bool(low.softmax) and sdp and not low.layers[-1].wide,
        "class_bits": _bits(graph.output.size),
        "lane_bits": _bits(lanes),
        "mul8x2": bool(device["mul8x2"]),
        "rq_digit": rq_digit,
        "rq_cycles": rq_cycles,
        "layers": layer_context(low),
        "classes": graph.output.size,
        "pixels": pixels,
        "pix_bits": max(10, _bits(pixels)),
        "channels": channels,
        "height": height,
        "width": width,
        "acc_w": acc_w,
        "weighted": low.weighted,
        "tflite": tflite,
        "int8_input": graph.input_encoding == "int8",
        "input_zero_point": graph.input.zero_point,
        "tap_depth": len(taps),
        "tap_addr_bits": _bits(len(taps)),
        "softmax": low.softmax,
        "branched": not graph.is_chain,
        "act_depth": sizes,
        # two-port RAMs write 16-bit words: at least 2 address bits
        "act_addr_bits": [max(2 if sdp else 1, _bits(n)) for n in sizes],
        "out_buf": low.out_buf,
        "weight_words": len(weights),
        "weight_addr_bits": _bits(len(weights)),
        "chan_depth": len(bias),
        "chan_addr_bits": _bits(len(bias)),
        "lut_depth": len(luts),
        "lut_addr_bits": _bits(len(luts)),
        # wide enough for NLAYERS itself (a power of two of layers: one bit more than
        # the index needs; the engine compares `layer` with NLAYERS - 1)
        "layer_bits": len(low.layers).bit_length(),
        "fpga": fpga,
        "device": device,
        "ulx3s_part": device.get("part", ULX3S_PART),
        # the ULX3S top runs at the device's clock on an ECP5, else at ULX3S_CLOCK_MHZ
        "ulx3s_clock_mhz": ulx3s_clock,
        "ulx3s_pll": ecp5_pll(ulx3s_clock),
        "ulx3s_uart_clks_per_bit": round(ulx3s_clock * 1e6 / 115200),
        "clock_mhz": device["clock_mhz"],
        # the iCEBreaker top (written for every design) runs at the iCE40 clock
        "ice40_clock_mhz": FPGAS["ice40-up5k"]["clock_mhz"],
        "pll": ice40_pll(FPGAS["ice40-up5k"]["clock_mhz"]),
        "ice40_uart_clks_per_bit": round(FPGAS["ice40-up5k"]["clock_mhz"] * 1e6 / 115200),
        "cycle_bound": cycle_model(low, pixels, rq_cycles),
        "macs": sum(d.macs for d in low.layers),
        "weight_bytes": weight_bytes,
        "rom_bits": {"weights": len(weights) * 8 * lanes, "bias": len(bias) * 32,
                     "mult": len(mult) * (32 if tflite else 24), "shift": len(shift) * 8,
                     "lut": len(luts) * 8, **({"tap": len(taps) * 32} if low.taps else {})},
        "vectors": len(vector_pixels),
        "output_scale": graph.output.scale,
        "output_zero_point": graph.output.zero_point,
    }
    env = template_env("rtl")
    mems = {
        "weights.mem": packed_mem_text(weights, 8, f"mnist-edge {graph.name}: weights, "
                                       f"{lanes} int8 lanes per word (lane 0 in the low byte)\n"
                                       "word w_base + g*K + k = tap k of output channels "
                                       f"g*{lanes} + lane"),
        "bias.mem": mem_text(bias, 32, True, "bias per output channel with the input zero "
                             "point folded in: bias - z_x * sum(w) (pools: -N * z_x)"),
        "mult.mem": (mem_text(mult, 32, False, "TFLM's Q31 multiplier per output channel "
                              "(average pools: ceil(2^31 / N))") if tflite else
                     mem_text(mult, 24, False, "requantization mantissa m (M = m * 2^-shift)")),
        "shift.mem": (mem_text(shift, 8, True, "TFLM's shift: left when positive, right when "
                               "negative") if tflite else
                      mem_text(shift, 8, False, "requantization right shift")),
        "lut.mem": mem_text(luts, 8, True, "activation tables, 256 entries each: "
                            "y = table[x + 128]"),
    }
    if low.softmax:
        tables = softmax_tables(low.softmax)
        mems["softmax_exp.mem"] = mem_text(np.array(tables["exp"]), 32, True, "TFLM softmax: "
                                           "exp(d) in Q0.31, d = x - max = index - 255")
        mems["softmax_term.mem"] = mem_text(np.array(tables["term"]), 32, True, "TFLM softmax: "
                                            "the Q12.19 term of the sum (0 below diff_min)")
    if low.taps:
        mems["tap.mem"] = mem_text(taps, 32, True, "TFLM ADD: each input's rescale "
                                   "MBQM((x + offset) << 20, m, s), 256 entries per input: "
                                   "y = table[x + 128]")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        tmp.chmod(0o755)
        for template, name in TEMPLATE_FILES.items():
            (tmp / name).write_text(env.get_template(template).render(**context))
        extra = TFLITE_FILES[:1 + bool(low.softmax)] if tflite else ()
        extra += (DUAL_PORT_FILE,) if sdp else ()
        for name in (*STATIC_FILES, *extra):
            (tmp / name).write_text((TEMPLATES_DIR / "rtl" / name).read_text())
        (tmp / "mem").mkdir()
        for name, text in mems.items():
            (tmp / "mem" / name).write_text(text)
        vec = tmp / "test_vectors"
        vec.mkdir()
        (vec / "pixels.bin").write_bytes(vector_pixels.tobytes())
        (vec / "golden_logits.bin").write_bytes(golden_logits.astype(np.int8).tobytes())
        manifest = {
            "generator": "mnist-edge generate rtl",
            "model": graph.name,
            "qgraph_hash": graph.content_hash(),
            "fpga": fpga,
            "lanes": lanes,
            "positions": positions,
            "clock_mhz": device["clock_mhz"],
            "top": "mnist_edge_engine",
            "uart_top": "mnist_edge_uart_top",
            "board_top": BOARD_TOPS[fpga][0],
            "classes": graph.output.size,
            "layers": [{"index": d.index, "ops": d.ops, "mode": MODE_NAMES[d.mode],
                        "summary": d.summary} for d in low.layers],
            "cycle_lower_bound": cycle_model(low, pixels, rq_cycles),
            "requant_cycles_per_value": rq_cycles,
            "layer_cycle_bounds": [layer_cycle_bound(d, lanes, rq_cycles, low.drain_tail)
                                   for d in low.layers],
            "layer_lane_ops": [lane_ops(d) for d in low.layers],
            "rom_bits": context["rom_bits"],
            "activation_bytes": sizes,
            "accumulator_bits": acc_w,
            "copy_layers": low.copies,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out_dir


def softmax_tables(c: dict[str, int]) -> dict[str, list[int]]:
    """TFLM's SOFTMAX per difference d = x - max(x), d in -255..0 (index d + 255): whether
    d counts (d >= diff_min), exp(d) in Q0.31 and its Q12.19 term of the sum, from golden's
    own kernel (tflite_kernels.softmax_exp); mnist_edge_softmax.v does the rest (the sum,
    the reciprocal, the products)."""
    d = np.arange(-255, 1, dtype=np.int64)
    keep, exp, term = softmax_exp(d, c["input_multiplier"], c["input_left_shift"],
                                  c["diff_min"])
    return {"exp": [int(v) for v in exp], "term": [int(v) for v in term],
            "keep": [int(v) for v in keep]}


def load_manifest(rtl_dir: Path) -> dict[str, Any]:
    path = Path(rtl_dir) / "manifest.json"
    if not path.exists():
        raise MnistEdgeError(f"{rtl_dir}: no RTL design (run `mnist-edge generate rtl` first)")
    return json.loads(path.read_text())
