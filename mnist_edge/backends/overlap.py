"""Which steps of a C schedule may write their output over their own input, and how far.

A step's input and output are both live while it runs, so no layout of whole tensors
goes below the largest input + output. Three ways under it, each proved safe here from
the order in which the kernels touch memory (the contract in `KERNEL_ORDER`):

- **Elementwise in place** (add, sub, mul): output element i is computed from input
  element i, read before it is written, so the output may start at its input's first
  byte (drift 0), or anywhere below it.
- **Overlap**: a convolution (depthwise or not, a fused max pool included) writes output
  pixels in raster order, so the output may start `overlap_drift` bytes below its input:
  far enough that no pixel it writes lands on input rows a later pixel still reads. Free
  in instructions; the drift is large where the output row is larger than the input row.
- **Bands**: the driver (`*_conv2d_in_bands` in the kernel library) runs the kernel on
  `band` output rows at a time from a line buffer holding just those rows' input rows
  (rows kept from the band before are moved, new rows copied in before any output
  overwrites them). The output may then start `BandPlan.drift` bytes below its input,
  0 when its rows are no larger than the input's: a true in-place depthwise or pointwise
  conv. It costs the line buffer (counted in the arena like scratch) and the copies.
- **The depthwise ring**: the depthwise kernel copies the input rows each output row reads
  into its own ring of lines (its scratch) before writing that row, so its output may start
  `ring_drift` bytes below its input (0 when the rows do not grow): in place, no bands.
  (Its channel-major path on the DSP cores copies 4 channels' whole input before writing
  those channels, so it is as safe wherever each output byte lands on an input byte of its
  own channel; where the distance is not whole pixels, the kernel takes the ring.)

The planner (`choose_overlaps`) first gives every eligible step its smallest-footprint
way; if the arena shrinks, it then takes back, step by step, whatever the arena does not
need (no overlap, then overlap, then the tallest band that still fits), so that the RAM
saved costs as few instructions as it can.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..qgraph import QGraph
from .c_planner import (  # it imports this module late
    Buffer,
    Step,
    is_depthwise,
    is_pair_packed,
    lifetimes,
)

# The kernels' side of the contract: a convolution kernel computes its output pixels in
# raster order, in blocks of at most max(BLOCK_PIXELS, out_w) pixels (the q15 kernel takes
# 4 positions, the pair-packed one 3, the others 2); a block reads only its own pixels'
# windows and writes only its own pixels. The depthwise kernel reads an output row's
# input rows (into its ring) before writing it. Elementwise kernels read element i before
# writing it.
KERNEL_ORDER = "raster order, blocks of at most max(4, out_w) output pixels"
BLOCK_PIXELS = 4
ELEMENTWISE = ("add", "mul")  # step kinds (add covers sub)
BAND_HEIGHTS = tuple(2 ** i for i in range(12))  # output rows per band the planner tries
BAND_UNIT_PIXELS = 4  # the general conv's bands hold whole blocks of 4 pixels (no waste)
PACKED_PASS_PIXELS = 3  # the pair-packed conv's pass (me_conv2d_packed_s8)


@dataclass(frozen=True)
class Rows:
    """The row geometry of a conv step (a fused max pool included)."""

    in_h: int
    in_row: int  # bytes of one input row (W x C, HWC)
    out_h: int
    out_w: int
    out_c: int
    conv_per_out: int  # conv rows per output row (the pool's stride; 1 without a pool)
    pool_h: int
    stride_h: int
    pad_top: int
    kernel_h: int

    @property
    def out_row(self) -> int:
        return self.out_w * self.out_c

    def input_rows(self, oy: int, n: int) -> tuple[int, int]:
        """The input rows [r0, r1) in the image that output rows [oy, oy + n) read."""
        top = oy * self.conv_per_out * self.stride_h - self.pad_top
        bottom = (((oy + n - 1) * self.conv_per_out + self.pool_h - 1) * self.stride_h
                  - self.pad_top + self.kernel_h)
        return max(0, top), min(self.in_h, bottom)


def conv_rows(graph: QGraph, step: Step) -> Rows:
    op, x = graph.ops[step.conv], graph.input_of(step.conv)
    out = graph.ops[step.ops[-1]].output
    ph, psh = 1, 1
    if step.pool is not None:
        ph, psh = graph.ops[step.pool].attrs["kernel"][0], graph.ops[step.pool].attrs["stride"][0]
    return Rows(in_h=x.shape[1], in_row=x.shape[2] * x.shape[0], out_h=out.shape[1],
                out_w=out.shape[2], out_c=out.shape[0], conv_per_out=int(psh), pool_h=int(ph),
                stride_h=int(op.attrs.get("stride", [1, 1])[0]),
                pad_top=int(op.attrs.get("padding", [0, 0, 0, 0])[0]),
                kernel_h=int(op.attrs["kernel"][0]))


def overlap_drift(r: Rows) -> int:
    """How far below its input a conv's output must start for the kernel to run straight
    over it: while pixel p is written, the pixels of its block (from p - block + 1) may
    still read their windows, whose first input row bounds what may be overwritten."""
    p = np.arange(r.out_h * r.out_w, dtype=np.int64)
    first = np.maximum(0, p - max(BLOCK_PIXELS, r.out_w) + 1) // r.out_w
    row = np.maximum(0, first * r.conv_per_out * r.stride_h - r.pad_top)
    return max(0, int(np.max((p + 1) * r.out_c - row * r.in_row)))


def ring_drift(r: Rows) -> int:
    """The same for the depthwise kernel, which copies the input rows an output row reads
    into its ring before writing that row (C `*_dw_ring_rows`): while output row oy is
    written, every input row below min(in_h, oy * stride - pad_top + kernel_h) is read."""
    oy = np.arange(r.out_h, dtype=np.int64)
    read = np.minimum(r.in_h, np.maximum(0, oy * r.stride_h - r.pad_top + r.kernel_h))
    return max(0, int(np.max((oy + 1) * r.out_row - read * r.in_row)))


@dataclass(frozen=True)
class BandPlan:
    """What running a conv `band` output rows at a time costs and allows."""

    band: int
    drift: int  # the output may start this many bytes below the input
    lines: int  # bytes of the line buffer
    copy_bytes: int  # bytes moved and copied into it over one inference


def band_plan(r: Rows, band: int) -> BandPlan | None:
    """The bands of `*_conv2d_in_bands`, walked as the C walks them; None where a band
    reads no image row (all padding), which the driver does not take."""
    drift = lines = copied = 0
    first = held = 0  # input rows [first, held) sit in the line buffer
    for oy in range(0, r.out_h, band):
        r0, r1 = r.input_rows(oy, min(band, r.out_h - oy))
        if r1 <= r0:
            return None
        kept = max(0, held - r0)
        if r1 > r0 + kept:  # rows copied now from the input, after oy rows were written
            drift = max(drift, oy * r.out_row - (r0 + kept) * r.in_row)
        copied += ((kept if r0 != first else 0) + r1 - r0 - kept) * r.in_row
        lines = max(lines, (r1 - r0) * r.in_row)
        first, held = r0, r1
    return BandPlan(band, drift, lines, copied)


@dataclass(frozen=True)
class Mode:
    """One way for a step to overlap its input: drift per input, band (0: none), lines."""

    overlaps: tuple[tuple[int, int], ...]
    band: int = 0
    lines: int = 0
    copy_bytes: int = 0
    packed_band: int = 0

    def apply(self, step: Step) -> None:
        step.overlaps = dict(self.overlaps)
        step.band, step.lines, step.copy_bytes = self.band, self.lines, self.copy_bytes
        step.packed_band = self.packed_band


NONE = Mode(())


def step_modes(graph: QGraph, steps: list[Step], buffers: list[Buffer], k: int,
               last_read: list[int]) -> list[Mode]:
    """The ways step k may overlap an input, cheapest in instructions first (free ones,
    then taller bands before shorter ones); [] when none is safe."""
    s = steps[k]
    if s.dst < 0:
        return []
    dying = [b for b in dict.fromkeys(s.srcs) if b >= 0 and last_read[b] == k and b != s.dst]
    if s.kind in ELEMENTWISE:
        same = tuple((b, 0) for b in dying if buffers[b].size == buffers[s.dst].size)
        return [Mode(same)] if same else []
    if s.kind != "conv" or s.src not in dying or graph.ops[s.conv].kind != "conv2d":
        return []
    r = conv_rows(graph, s)
    if is_depthwise(graph, s):  # its ring is its own line buffer: bands would only copy
        return [Mode(((s.src, ring_drift(r)),))]
    modes = [Mode(((s.src, overlap_drift(r)),))]
    # The general conv computes its pixels in blocks of up to 4: a band of a whole number
    # of blocks wastes none (KWS's 5-wide 1x1 convs take 43 % more instructions in 1-row
    # bands). A pair-packed conv, in passes of 3 where the build pair-packs, gets its own
    # height there (_packed_band).
    unit = BAND_UNIT_PIXELS // math.gcd(BAND_UNIT_PIXELS, r.out_w)
    heights = sorted({h for h in BAND_HEIGHTS if h < r.out_h and h % unit == 0}, reverse=True)
    pair_packed = is_pair_packed(graph, s)
    for h in heights:
        b = band_plan(r, h)
        if b is None:
            continue
        packed = _packed_band(r, h) if pair_packed else None
        if packed is None:
            modes.append(Mode(((s.src, b.drift),), b.band, b.lines, b.copy_bytes))
        else:  # safe under both: the larger drift and line buffer
            modes.append(Mode(((s.src, max(b.drift, packed.drift)),), b.band,
                              max(b.lines, packed.lines), b.copy_bytes, packed.band))
    return modes


def _packed_band(r: Rows, band: int) -> BandPlan | None:
    """The bands a pair-packed conv takes on the builds that pair-pack, for `band` rows on
    the others: the tallest height up to `band` that holds whole passes of 3 positions
    (KWS's 5-wide pointwise convs: 3 rows, not 4; 20 positions would end each band in a
    short pass, 2 % more estimated Cortex-M4 cycles over the model), None where that is
    `band` itself or no height is."""
    unit = PACKED_PASS_PIXELS // math.gcd(PACKED_PASS_PIXELS, r.out_w)
    height = band // unit * unit
    if height in (0, band):
        return None
    return band_plan(r, height)


def _mode_of(step: Step) -> Mode:
    return Mode(tuple(step.overlaps.items()), step.band, step.lines, step.copy_bytes,
                step.packed_band)


def _cheapest_key(mode: Mode, step: Step, buffers: list[Buffer]) -> tuple[int, int]:
    """Every step its cheapest mode (min keeps the first of equal keys)."""
    return 0, 0


def _footprint_key(mode: Mode, step: Step, buffers: list[Buffer]) -> tuple[int, int]:
    """Bytes the step's input, output and line buffer take together under `mode`."""
    out = buffers[step.dst].size
    return max([out] + [d + buffers[x].size for x, d in mode.overlaps]) + mode.lines, 0


def _drift_key(mode: Mode, step: Step, buffers: list[Buffer]) -> tuple[int, int]:
    """Least drift first (drifts add up along a chain, line buffers do not), then lines."""
    return max([d for _, d in mode.overlaps] + [0]), mode.lines


def choose_overlaps(graph: QGraph, steps: list[Step], buffers: list[Buffer], base: int,
                    layout: Callable[[list[Step], list[Buffer]], int]) -> int:
    """Set `overlaps`/`band`/`lines` on the steps where they lower the arena below `base`
    (the arena without them) and return the arena; leaves every step as it was when
    nothing gains."""
    last_read = [z for _, z in lifetimes(steps, buffers)]
    options = {k: modes for k in range(len(steps))
               if (modes := step_modes(graph, steps, buffers, k, last_read))}
    if not options:
        return base
    best, start = base, {}
    for key in (_cheapest_key, _footprint_key, _drift_key):  # three starting points
        for k, modes in options.items():
            min(modes, key=lambda m, s=steps[k]: key(m, s, buffers)).apply(steps[k])
        arena = layout(steps, buffers)
        if arena < best:
            best, start = arena, {k: _mode_of(steps[k]) for k in options}
    if best >= base:
        for k in options:
            NONE.apply(steps[k])
        return layout(steps, buffers)
    for k in options:
        start[k].apply(steps[k])
    for k, modes in options.items():  # take back what the arena does not need
        chosen = _mode_of(steps[k])
        for mode in [NONE, *modes]:
            if mode == chosen:
                break
            mode.apply(steps[k])
            arena = layout(steps, buffers)
            if arena <= best:
                best = arena
                break
            chosen.apply(steps[k])
    return layout(steps, buffers)
