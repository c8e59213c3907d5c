"""Turn a QGraph into C kernel calls and lay their buffers out in one static arena.

The C backend runs a sequence of *steps*, one kernel call each. A step may fuse
several QGraph ops: a conv2d with the LUT and the non-overlapping maxpool that
follow it (so the full-size conv output is never stored), a linear layer or an
average pool with the LUT that follows it. `flatten` costs nothing (activations
are HWC, the next linear layer's weights are permuted to match) and a lone LUT
works in place.

A graph with branches (residual adds, concats) is a DAG: ops fuse only where the
fused op is the sole reader of the tensor before it, a LUT works in place only on
a tensor nothing else reads, and every buffer lives from the step that writes it
to the last step that reads it. Buffers of a sequential graph are live two at a
time (a step's input and its output), so they ping-pong between the two ends of
the arena: buffer k sits at offset 0 when k is even and at the arena's end when k
is odd, and the arena is the largest input + output pair, the least any
non-in-place schedule can use. A DAG's buffers are placed first-fit, largest
first, beside every buffer whose lifetime overlaps theirs. The graph input and the
logits live in the caller's memory, not in the arena; uint8 input is copied in as
int8 (q = p - 128) unless a one-channel conv reads the pixels themselves.

Kernels that need scratch (the convolutions' gathered windows and accumulators,
`kernel_buffer_size`, the C `*_get_buffer_size`) get it from the arena too: a
region live for their step only, in the gap between that step's input and
output (a chain), or placed first-fit like a buffer (a DAG).

Below the live-activation floor (a step's input + output): a step may write its output
over an input that nothing reads after it (`Step.overlaps`), which `overlap.py` decides
and proves safe: an elementwise add/sub/mul in place, a convolution either straight over
its input (its output placed enough bytes below it) or band by band of output rows from a
line buffer (`Step.band`, the C `*_conv2d_in_bands`). The layout is then first-fit with
those pairs allowed to overlap; it is kept only where it lowers the arena.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import MnistEdgeError
from ..qgraph import INPUT_NAME, QGraph, QOp, QTensor

ALIGN = 4  # bytes; every buffer starts on a word boundary

PIXELS, LOGITS = -1, -2  # pseudo buffer ids: the caller's input and output arrays


@dataclass
class Buffer:
    """An int8 activation in the arena; `hwc` is its (C, H, W) before any flatten."""

    size: int
    hwc: tuple[int, ...]
    offset: int = 0


@dataclass
class Step:
    """One kernel call: `kind` names the kernel, `ops` the QGraph ops it computes."""

    kind: str  # input | conv_u8 | conv | maxpool | avgpool | linear | lut | add | concat | to_chw
    ops: list[int]
    src: int
    dst: int
    conv: int | None = None  # index of the conv2d/linear/avgpool op
    lut: int | None = None  # index of a fused lut op
    pool: int | None = None  # index of a fused maxpool op
    flat_from: tuple[int, ...] | None = None  # linear: (C, H, W) of the flattened input
    more: list[int] = field(default_factory=list)  # add / concat: the inputs after `src`
    scratch: int = 0  # bytes of kernel scratch (kernel_buffer_size), in the arena
    scratch_offset: int = 0
    # input buffer -> drift: the output may overlap that input (which dies here) when it
    # starts at least `drift` bytes below it (overlap.py proves each pair safe)
    overlaps: dict[int, int] = field(default_factory=dict)
    band: int = 0  # conv: output rows per kernel call from the line buffer (0: one call)
    # a pair-packed conv's rows per call on the builds that pair-pack (ME_PAIR_PACKED):
    # whole passes of 3 positions where `band` is not (0: `band` there too)
    packed_band: int = 0
    lines: int = 0  # bytes of that line buffer (one band's input rows), in the arena
    lines_offset: int = 0
    copy_bytes: int = 0  # bytes the band driver moves and copies into the line buffer
    winograd_rows: int = 0  # conv: rows of tiles a Winograd pass holds (0: direct conv)
    # bytes past the kernel's scratch (inside `scratch`) where it copies its weights and
    # biases, all of them or a chunk of channels at a time (stage_unit; 0: read from flash)
    stage: int = 0

    @property
    def kernel_scratch(self) -> int:
        """The scratch the kernel itself needs; its weight stage follows it, at this offset."""
        return self.scratch - self.stage

    @property
    def srcs(self) -> list[int]:
        return [self.src, *self.more]

    @property
    def in_place(self) -> bool:
        return self.src == self.dst


@dataclass
class ArenaPlan:
    """The schedule and memory of the generated C; `arena_bytes` is MNIST_EDGE_ARENA_SIZE."""

    steps: list[Step]
    buffers: list[Buffer]
    arena_bytes: int
    unfused_arena_bytes: int
    fused: list[str] = field(default_factory=list)
    activation_bytes: int = 0  # the same schedule laid out with no scratch and no lines
    floor_bytes: int = 0  # the live-activation floor: the most bytes any step's buffers hold

    @property
    def scratch_bytes(self) -> int:
        """The largest kernel scratch of any step, its weight stage aside (it lives inside
        the arena)."""
        return max([s.kernel_scratch for s in self.steps] + [0])

    @property
    def stage_bytes(self) -> int:
        """The largest weight stage of any step (inside the arena, after its scratch)."""
        return max([s.stage for s in self.steps] + [0])

    @property
    def lines_bytes(self) -> int:
        """The largest line buffer of any banded step (inside the arena too)."""
        return max([s.lines for s in self.steps] + [0])

    @property
    def tensor_bytes(self) -> int:
        """Every arena buffer side by side: what the arena would be without reuse."""
        return sum(_align(b.size) for b in self.buffers)

    @property
    def in_place(self) -> list[Step]:
        """The steps whose output overlaps an input they read."""
        return [s for s in self.steps if s.overlaps]

    def describe(self) -> dict:
        return {
            "arena_bytes": self.arena_bytes,
            "unfused_arena_bytes": self.unfused_arena_bytes,
            "scratch_bytes": self.scratch_bytes,
            "lines_bytes": self.lines_bytes,
            "stage_bytes": self.stage_bytes,
            "activation_bytes": self.activation_bytes,
            "floor_bytes": self.floor_bytes,
            "tensor_bytes": self.tensor_bytes,
            "fused": list(self.fused),
            "in_place": len(self.in_place),
            "banded": sum(1 for s in self.steps if s.band),
            "band_copy_bytes": sum(s.copy_bytes for s in self.steps),
            "buffers": [{"offset": b.offset, "bytes": b.size} for b in self.buffers],
        }


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# The QGraph kinds the planner schedules, and the step kind each starts (sub, mul, mean and
# softmax exist in the tflite arithmetic only; sub is the add kernel with a minus sign; a
# tflite reshape keeps the HWC order, so it is a view like flatten).
STEP_KIND = {"conv2d": "conv", "linear": "linear", "avgpool2d": "avgpool",
             "global_avgpool": "avgpool", "maxpool2d": "maxpool", "lut": "lut",
             "flatten": "flatten", "add": "add", "concat": "concat", "sub": "add",
             "mul": "mul", "softmax": "softmax", "mean": "mean", "pad": "pad",
             "reshape": "flatten"}
VIEWS = ("flatten", "reshape")  # kinds that only rename their input's bytes (HWC either way)
INT32_LIMIT = 1 << 31


def check_supported(graph: QGraph) -> None:
    """Refuse, naming the op, anything the C kernels do not implement."""
    graph.validate()  # the registry has checked every attribute
    for i, op in enumerate(graph.ops):
        if op.kind not in STEP_KIND:
            raise MnistEdgeError(f"op {op.name} ({op.kind}): the C backend does not support "
                                 f"op kind {op.kind!r}")
        if graph.arithmetic == "tflite":
            reason = _tflite_refusal(graph, i)
            if reason:
                raise MnistEdgeError(f"op {op.name} ({op.kind}): the C backend does not "
                                     f"implement {reason} in the tflite arithmetic")


def _tflite_refusal(graph: QGraph, i: int) -> str | None:
    """Why the C kernels cannot compute op i of a tflite graph exactly, or None. Each limit
    is where TFLM's own C++ would overflow or shift by 32 or more (undefined behaviour)."""
    op = graph.ops[i]
    c = graph.prepare(i)
    if op.kind == "conv2d" and list(op.attrs.get("dilation", [1, 1])) != [1, 1]:
        return f"dilation {op.attrs['dilation']}"
    if op.kind in ("conv2d", "linear"):
        if c["shift"].min() < -31 or c["shift"].max() > 30:
            return "a requantization shift outside -31..30"
        if np.asarray(c["mult"]).min() < 0:  # the C requantization takes m >= 0
            return "a negative requantization multiplier"
        w = op.arrays["weight"].astype(np.int64).reshape(op.arrays["weight"].shape[0], -1)
        bound = np.abs(op.arrays["bias"].astype(np.int64)) + 256 * np.abs(w).sum(axis=1)
        if bound.max() >= INT32_LIMIT:
            return "accumulators that may pass int32"
    if op.kind in ("add", "sub") and max(c["input1_shift"], c["input2_shift"],
                                         c["output_shift"]) > 0:
        return "an ADD/SUB multiplier of one or more"
    if op.kind in ("add", "sub") and min(c["input1_multiplier"], c["input2_multiplier"],
                                         c["output_multiplier"]) < 0:
        return "a negative ADD/SUB multiplier"
    if op.kind == "mul" and not -31 <= c["shift"] <= 30:
        return "a requantization shift outside -31..30"
    if op.kind == "softmax" and (op.output.size >= 512 or c["input_left_shift"] > 30):
        return "a softmax over 512 values or more, or with an input shift above 30"
    if op.kind == "mean" and (c["count"] >= 1 << 23 or not -31 <= c["shift"] <= 30):
        return "a MEAN over 2^23 values or more, or with a shift outside -31..30"
    if op.kind in ("avgpool2d", "maxpool2d") and not windows_touch_input(graph, i):
        return "a pool window entirely in the padding"
    return None


def windows_touch_input(graph: QGraph, i: int) -> bool:
    """Every window of a padded pool holds at least one in-image tap (TFLM's count > 0)."""
    op, x = graph.ops[i], graph.input_of(i)
    pad = op.attrs.get("padding", [0, 0, 0, 0])
    for axis in (0, 1):
        k, s, size = op.attrs["kernel"][axis], op.attrs["stride"][axis], x.shape[1 + axis]
        origins = np.arange(op.output.shape[1 + axis]) * s - pad[axis]
        if np.any(origins + k <= 0) or np.any(origins >= size):
            return False
    return True


DEPTHWISE_MAX_TAPS = 25  # ME_DEPTHWISE_MAX_TAPS: its tap pointers sit on the kernel's stack


def is_depthwise(graph: QGraph, step: Step) -> bool:
    """Whether the depthwise kernel (`tfl_depthwise_conv2d_s8`, tap-major weights) computes
    this step; other grouped convs, and depthwise ones over 25 taps, take the general conv."""
    if graph.arithmetic != "tflite" or step.kind != "conv" or step.pool is not None:
        return False
    op = graph.ops[step.conv]
    kh, kw = (int(v) for v in op.attrs["kernel"])
    groups = int(op.attrs.get("groups", 1))
    return (op.kind == "conv2d" and groups > 1 and groups == graph.input_of(step.conv).shape[0]
            and kh * kw <= DEPTHWISE_MAX_TAPS)


def depthwise_line_bytes(graph: QGraph, step: Step) -> int:
    """Bytes of one line of the depthwise kernel's ring (C `*_dw_ring`): the input pixels
    from the first window's left edge to the last one's right, padding included."""
    op = graph.ops[step.conv]
    return depthwise_line_w(op) * graph.input_of(step.conv).shape[0]


def depthwise_ring_bytes(graph: QGraph, step: Step) -> int:
    """Bytes of the depthwise kernel's lines (C `*_TFL_DEPTHWISE_CONV2D_S8_BUFFER_SIZE` less
    its constants): its ring of kernel_h byte lines or, where larger, the channel-major
    planes of 4 channels the scalar DSP cores take (depthwise_planes_bytes; one plan for
    every core: the others reserve them too)."""
    ring = int(graph.ops[step.conv].attrs["kernel"][0]) * depthwise_line_bytes(graph, step)
    return max(ring, depthwise_planes_bytes(graph, step))


def depthwise_planes_bytes(graph: QGraph, step: Step) -> int:
    """Bytes of the channel-major path's planes of 4 channels and its sums (C
    `*_DW_PLANES_BYTES`) where it takes the layer (C `*_DW_PLANE`: 3 x 3, stride 1,
    multiplier 1, whole blocks of 4 channels, 64 output pixels or more, and no more than
    twice the ring), else 0 (other layers and steps too)."""
    if not is_depthwise(graph, step):
        return 0
    op, x = graph.ops[step.conv], graph.input_of(step.conv)
    kh, kw = (int(v) for v in op.attrs["kernel"])
    line_w, out_h = depthwise_line_w(op), op.output.shape[1]
    planes = 8 * line_w * ((out_h + 4) & ~1) + 4 * (out_h + 1) * (line_w - 2)
    if op.output.shape[0] == x.shape[0] and kh == kw == 3 and x.shape[0] % 4 == 0 \
            and [int(v) for v in op.attrs.get("stride", [1, 1])] == [1, 1] \
            and out_h * (line_w - 2) >= 64 and planes <= 2 * kh * line_w * x.shape[0]:
        return planes
    return 0


def depthwise_line_w(op: QOp) -> int:
    """Pixels of a depthwise ring line, (out_w - 1) * stride_w + kernel_w (C `*_DW_LINE_W`)."""
    return (op.output.shape[2] - 1) * int(op.attrs.get("stride", [1, 1])[1]) + \
        int(op.attrs["kernel"][1])


# A pair-packed layer's high-byte rows must keep 256 * sum(hi * x) inside int32 for every
# int8 x (|x| <= 128): sum(|w|) < 2^16 over each row (c_arrays.pair_packed).
PAIR_PACK_ROW_BOUND = 1 << 16
# The fewest taps (kh * kw * in_c) and output channels a conv takes me_conv2d_packed_s8
# with (is_pair_packed): a pass's windows are shared by its channel pairs, and each pair
# has a fixed cost beside its turns of 4 taps (its requantization, clamp and stores, its
# bookkeeping). At 8 taps, VWW's first 1 x 1 conv (8 -> 16) took 1.35 M estimated
# Cortex-M4 cycles against 0.93 M with me_conv1x1_small; at 8 channels, VWW's first conv
# (3x3 over 3) 1.57 M against 1.62 M by the q15 conv. 4 channels, not measured, keep the
# q15 conv.
PAIR_PACK_MIN_TAPS = 16
PAIR_PACK_MIN_OUT_C = 8


def pair_pack_bound_ok(weight: np.ndarray) -> bool:
    """Every row's sum(|w|) under PAIR_PACK_ROW_BOUND: then 128 * sum(|w|) < 2^23 and the
    second SMLAD of c_arrays.pair_packed's algebra, 256 * sum(hi * x), stays exact."""
    rows = np.abs(weight.reshape(weight.shape[0], -1).astype(np.int64)).sum(axis=1)
    return bool(np.all(rows < PAIR_PACK_ROW_BOUND))


def is_pair_packed(graph: QGraph, step: Step) -> bool:
    """A tflite layer whose weights also exist pair-packed (the layout the Thumb-2 DSP
    builds read, `ME_PAIR_PACKED`), every row within the exactness bound, out_features or
    out_c % 4 == 0:
    - a fully connected layer with inputs in whole turns of its loop, 64 (in_features %
      64 == 0; other layers keep the rows of int8 and me_fc4_run): its model calls
      me_fully_connected_packed_s8, and `packed_x` is its scratch for the q15 input where
      pair_packed_copy (else NULL: the int8 input is read);
    - a conv with one group, no fused pool, k = kh * kw * in_c >= PAIR_PACK_MIN_TAPS and
      out_c >= PAIR_PACK_MIN_OUT_C, that is_winograd did not take: its model calls
      me_conv2d_packed_s8 (three positions a pass, a channel pair at a time), in the conv's
      own scratch; its pair-packed rows padded with zeros to whole words of taps.
    Decided here once."""
    if graph.arithmetic != "tflite" or step.conv is None:
        return False
    op = graph.ops[step.conv]
    w = op.arrays["weight"]
    rows, k = w.shape[0], int(np.prod(w.shape[1:]))
    if step.kind == "linear":
        return rows % 4 == 0 and k % 64 == 0 and k >= 64 and pair_pack_bound_ok(w)
    if step.kind != "conv" or step.pool is not None or is_depthwise(graph, step) \
            or is_winograd(graph, step):
        return False
    return (int(op.attrs.get("groups", 1)) == 1 and rows % 4 == 0 and k >= PAIR_PACK_MIN_TAPS
            and rows >= PAIR_PACK_MIN_OUT_C and pair_pack_bound_ok(w))


def pair_packed_copy(graph: QGraph, step: Step) -> bool:
    """A pair-packed layer whose input the kernel first copies as q15 (2 bytes an input, in
    the arena: 15 instructions and 19 cycles per 16 MACs, not 16 and 20) where that copy is
    at most the layer's own input and output bytes (in_features <= out_features), so that
    it never more than doubles what the layer holds in RAM (AD's 640 -> 128: 1,280 bytes,
    the arena 5.5 x)."""
    if step.kind != "linear" or not is_pair_packed(graph, step):
        return False
    return graph.input_of(step.conv).size <= graph.ops[step.conv].output.size


# Winograd F(2 x 2, 3 x 3): (2G) applied along each axis of a 3 x 3 kernel, rows [2a],
# [a + b + c], [a - b + c], [2c] (the 2 keeps the transform in integers: the result is 4x).
# The kernel leaves the outer rows' 2 to its output transform; the bound counts it here.
_WINO_G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], dtype=np.int64)
# Each pass transforms every output channel's weights again, shared by the tiles of its
# rows: the narrowest output measured is IC's 8 x 8 x 64 layer (Cortex-M4, estimated:
# 2.87 M cycles against 3.34 M direct); narrower ones keep the direct conv.
WINOGRAD_MIN_WIDTH = 8
# |B^T d B| for an int8 tile: four values summed with signs
_WINO_V_MAX = 4 * 128


def winograd_weights(weight: np.ndarray) -> np.ndarray:
    """(2G) g (2G)^T of each 3 x 3 kernel of `weight` [out_c, in_c, 3, 3]: [out_c, in_c, 4, 4]."""
    return np.einsum("ea,ocab,fb->ocef", _WINO_G2, weight.astype(np.int64), _WINO_G2)


def is_winograd(graph: QGraph, step: Step) -> bool:
    """A tflite 3 x 3 stride-1 conv the scalar DSP builds run as Winograd F(2 x 2, 3 x 3)
    (`me_conv3x3_winograd_s8`): one group, no fused pool, in_c % 4 == 0 (SXTB16's lanes),
    and every output's sum inside int32 on the way: 9 * |V| * sum over in_c of max |U|
    (the output transform adds 9 tile sums) for each output channel."""
    if graph.arithmetic != "tflite" or step.kind != "conv" or step.pool is not None \
            or is_depthwise(graph, step):
        return False
    op = graph.ops[step.conv]
    in_c = graph.input_of(step.conv).shape[0]
    if (list(op.attrs["kernel"]) != [3, 3] or list(op.attrs.get("stride", [1, 1])) != [1, 1]
            or int(op.attrs.get("groups", 1)) != 1 or in_c % 4 != 0
            or op.output.shape[2] < WINOGRAD_MIN_WIDTH):
        return False
    return winograd_bound_ok(op.arrays["weight"])


def winograd_bound_ok(weight: np.ndarray) -> bool:
    """Every output channel's Winograd sums inside int32 for any int8 input: 9 * |V| * the
    sum over in_c of max |U| (the output transform adds 9 of the 16 elements' sums)."""
    u = np.abs(winograd_weights(weight)).max(axis=(2, 3)).sum(axis=1)
    return bool(np.all(9 * _WINO_V_MAX * u < 2**31))


def winograd_buffer_size(graph: QGraph, step: Step) -> int:
    """ME_WINOGRAD_ONLY_BUFFER_SIZE: `step.winograd_rows` rows of tile quads' transformed
    input, two channels' transformed weights, a pixel of z_x."""
    in_c = graph.input_of(step.conv).shape[0]
    quads_w = (graph.ops[step.conv].output.shape[2] + 7) // 8
    return 4 * (step.winograd_rows * quads_w * 32 * in_c + 16 * (in_c + 1) + 1) + in_c


def _grow_winograd_rows(graph: QGraph, steps: list[Step], buffers: list[Buffer],
                        arena: int) -> int:
    """Give each Winograd step more rows of tiles a pass (each pass transforms every output
    channel's weights once more) while the arena does not grow: 2, 4, 8, ... rows, then all
    of them, a layout each (a tall image tries a few, not one per row)."""
    for s in steps:
        if not s.winograd_rows or s.band:
            continue
        tiles_h = (graph.ops[s.conv].output.shape[1] + 1) // 2
        best, rows = 1, 2
        while best < tiles_h:
            s.winograd_rows = min(rows, tiles_h)
            s.scratch = _align(kernel_buffer_size(graph, s))
            if _layout(steps, buffers) > arena:
                break
            best, rows = s.winograd_rows, 2 * rows
        s.winograd_rows = best
        s.scratch = _align(kernel_buffer_size(graph, s))
    return _layout(steps, buffers)


# The fewest channel pairs a chunk of a pair-packed conv's staged weights holds, where
# it stages them a chunk at a time (a 1 x 1 conv: its window is the pixel). Each further
# chunk unpacks every window again and calls the loop once more a pass: on VWW
# (Cortex-M4, estimated), chunks of 32 pairs of its 128 -> 128 convs cost 31 K zero-wait
# cycles for 0.23 M fewer with flash wait states, while chunks of 8 pairs of its 32 -> 32
# conv cost 0.15 M for 0.24 M, and chunks of the 3 x 3 convs' im2col windows cost more.
STAGE_MIN_PAIRS = 32


def stage_unit(graph: QGraph, step: Step) -> tuple[int, int]:
    """(bytes of one chunk's unit, units) a kernel stages where the planner gives it room
    (C `ME_STAGE_WEIGHTS`: on parts whose flash has wait states each weight is then read
    from flash once a layer, not once per pass): the depthwise kernel stages all its
    weights and biases or none (one unit; in place over its input, it walks the rows
    once), a pair-packed conv a chunk of whole channel pairs at a time (each pair's rows,
    then its two biases). (0, 0): a kernel that stages nothing. Where the depthwise
    kernel's weights do not fit, it stages its biases alone (depthwise_bias_stage)."""
    if step.kind != "conv" or graph.arithmetic != "tflite":
        return 0, 0
    op = graph.ops[step.conv]
    out_c = op.output.shape[0]
    if is_depthwise(graph, step):
        kh, kw = (int(v) for v in op.attrs["kernel"])
        return 2 * kh * kw * out_c + 4 * out_c, 1
    if is_pair_packed(graph, step):
        k = int(np.prod(op.arrays["weight"].shape[1:]))
        return 2 * ((k + 3) // 4 * 4) + 8, out_c // 2
    return 0, 0


def depthwise_bias_stage(graph: QGraph, step: Step) -> int:
    """Bytes of a depthwise conv's biases alone, staged where its weights do not fit: the
    Thumb-2 loop reads a block's four biases once per pixel."""
    return _align(4 * graph.ops[step.conv].output.shape[0]) if is_depthwise(graph, step) else 0


def _grow_stages(graph: QGraph, steps: list[Step], buffers: list[Buffer], arena: int) -> int:
    """Stage each kernel's weights in RAM where the arena has room beside the step's buffers
    and scratch: all of them, else (a 1 x 1 conv) the largest chunk of at least
    STAGE_MIN_PAIRS pairs that fits (fewer chunks first), never growing the arena. A conv
    that writes over its own input outside bands stages all or nothing: a chunk's walk
    writes every position's output before the next chunk reads the first window, which
    overlap.py's drift does not allow for (a band reads its line buffer, so its chunks
    may)."""
    for s in steps:
        unit, units = stage_unit(graph, s)
        if not units:
            continue
        base = s.scratch
        pixel = [int(v) for v in graph.ops[s.conv].attrs["kernel"]] == [1, 1]
        most = max(1, units // STAGE_MIN_PAIRS) if pixel and not (s.overlaps and not s.band) \
            else 1
        sizes = [_align(unit * -(-units // chunks)) for chunks in range(1, most + 1)]
        for size in [*sizes, depthwise_bias_stage(graph, s)]:
            s.stage, s.scratch = size, base + size
            if size and _layout(steps, buffers) <= arena:
                break
        else:
            s.stage, s.scratch = 0, base
    return _layout(steps, buffers)


def kernel_buffer_size(graph: QGraph, step: Step) -> int:
    """Scratch bytes a step's kernel needs: the C macros ME_CONV2D_S8_BUFFER_SIZE,
    ME_CONV2D_U8_1CH_BUFFER_SIZE, ME_TFL_DEPTHWISE_CONV2D_S8_BUFFER_SIZE and
    ME_CONV3X3_WINOGRAD_BUFFER_SIZE (mnist_edge_kernels.h, the larger of the Winograd and
    the direct conv's), which the generated model checks against this at compile time;
    a pair-packed fully connected layer's input as q15 (2 bytes an input) if it copies it."""
    if pair_packed_copy(graph, step):
        return 2 * graph.input_of(step.conv).size
    if step.kind not in ("conv", "conv_u8"):
        return 0
    op = graph.ops[step.conv]
    kh, kw = (int(v) for v in op.attrs["kernel"])
    if is_depthwise(graph, step):  # the Thumb-2 loop's 3 words a channel, then its ring
        return 12 * graph.input_of(step.conv).shape[0] + depthwise_ring_bytes(graph, step)
    out_c = op.output.shape[0]
    if step.kind == "conv_u8":
        pairs = (kh * kw + 1) // 2
        return 16 * pairs + 8 * out_c
    k = kh * kw * graph.input_of(step.conv).shape[0] // int(op.attrs.get("groups", 1))
    direct = 8 * ((k + 3) // 4 * 4) + 20 * out_c
    # a Winograd layer's scratch serves the direct conv too (the builds without it)
    return max(direct, winograd_buffer_size(graph, step)) if step.winograd_rows else direct


def _fusable_pool(op: QOp) -> bool:
    return op.kind == "maxpool2d"


def _fusable_tflite_pool(graph: QGraph, i: int) -> bool:
    """A tflite max pool fuses into the conv before it only when it is unpadded and has no
    clamp of its own (the fused kernel takes every window whole and clamps once)."""
    op = graph.ops[i]
    return (not any(op.attrs.get("padding", [0, 0, 0, 0]))
            and tuple(graph.prepare(i)["act"]) == (-128, 127))


def _non_overlapping(op: QOp) -> bool:
    return list(op.attrs["kernel"]) == list(op.attrs["stride"])


def _steps(graph: QGraph, fuse_overlapping: set[int]) -> tuple[list[Step], list[Buffer]]:
    """Group ops into steps; `fuse_overlapping` lists overlapping maxpools worth fusing."""
    ops = graph.ops
    readers = {INPUT_NAME: graph.consumers(INPUT_NAME)}
    readers.update({op.name: graph.consumers(op.name) for op in ops})
    # A flatten is a view: its readers read the storage of the tensor it flattens.
    storage = {INPUT_NAME: INPUT_NAME}
    for op in ops:
        storage[op.name] = storage[op.inputs[0]] if op.kind in VIEWS else op.name
    storage_readers = {name: [j for j, o in enumerate(ops) if o.kind not in VIEWS
                              and any(storage[n] == name for n in o.inputs)]
                       for name in set(storage.values())}
    steps: list[Step] = []
    buffers: list[Buffer] = []
    where: dict[str, int] = {INPUT_NAME: PIXELS}  # tensor -> buffer holding it
    flat_from: dict[str, tuple[int, ...]] = {}  # flattened tensor -> its (C, H, W)

    def new_buffer(t: QTensor) -> int:
        buffers.append(Buffer(t.size, tuple(t.shape)))
        return len(buffers) - 1

    def sole_reader(i: int, kind: str) -> int | None:
        """The op after op i if it is the only reader of op i's output and of that kind."""
        nxt = readers[ops[i].name]
        return nxt[0] if len(nxt) == 1 and nxt[0] == i + 1 and ops[i + 1].kind == kind else None

    uint8_input = graph.input_encoding == "uint8"
    # The conv_u8 kernel reads one channel of pixels p with q - z_x = p (z_x = -128).
    raw_pixels = (uint8_input and graph.input.zero_point == -128 and len(graph.input.shape) == 3
                  and graph.input.shape[0] == 1)

    def int8_input() -> None:
        """Quantize the pixels into the arena once; every name for them (the input and its
        flattened views) then refers to that int8 buffer."""
        buf = new_buffer(graph.input)
        steps.append(Step("input", [], PIXELS, buf))
        for name, ref in where.items():
            if ref == PIXELS:
                where[name] = buf

    i = 0
    while i < len(ops):
        op = ops[i]
        kind = STEP_KIND[op.kind]
        first = op.inputs[0]
        if kind == "flatten":
            where[op.name] = where[first]
            src_t = graph.tensor(first)
            flat_from[op.name] = flat_from.get(first, tuple(src_t.shape))
            i += 1
            continue
        # Only a conv that is the pixels' sole reader takes them raw (conv_u8); any other op
        # reading uint8 input, directly or through a flatten, reads its int8 form q = p - 128.
        # int8 input is read where the caller keeps it.
        u8_conv = (op.kind == "conv2d" and first == INPUT_NAME and raw_pixels
                   and len(readers[INPUT_NAME]) == 1)
        if uint8_input and not u8_conv and any(where[n] == PIXELS for n in op.inputs):
            int8_input()
        group = [i]
        step = Step(kind, group, where[first], where[first],
                    more=[where[n] for n in op.inputs[1:]])
        if kind in ("add", "concat", "mul", "softmax", "mean"):
            step.conv = i  # they requantize too: their multipliers are the step's
        if kind in ("conv", "linear", "avgpool"):
            step.conv = i
            lut = sole_reader(i, "lut")
            if lut is not None:
                step.lut = lut
                group.append(lut)
            pool = sole_reader(group[-1], "maxpool2d") if op.kind == "conv2d" else None
            if pool is not None and graph.arithmetic == "tflite" and not \
                    _fusable_tflite_pool(graph, pool):
                pool = None
            if pool is not None and (_non_overlapping(ops[pool]) or pool in fuse_overlapping):
                step.pool = pool
                group.append(pool)
            if u8_conv:
                step.kind = "conv_u8"
            if kind == "linear" and len(flat_from.get(first, ())) == 3:
                step.flat_from = flat_from[first]
        if kind in ("lut", "add", "mul", "softmax"):
            # elementwise (softmax: per element, once the row's max and sum are known): a
            # flattened input's HWC order carries over
            layouts = {flat_from.get(n) for n in op.inputs}
            if len(layouts) > 1:
                raise MnistEdgeError(f"op {op.name} ({op.kind}): its inputs are a flattened "
                                     "CxHxW tensor (HWC in C) and a vector of another order; "
                                     "the C backend cannot combine them")
            if layouts != {None}:
                flat_from[op.name] = layouts.pop()
        if is_winograd(graph, step):
            step.winograd_rows = 1  # more where the arena has room (_grow_winograd_rows)
        step.scratch = _align(kernel_buffer_size(graph, step))
        out_t = ops[group[-1]].output
        if kind != "lut" or len(storage_readers[storage[first]]) > 1 or where[first] == PIXELS:
            # A LUT works in place only on an arena tensor nothing else reads.
            step.dst = new_buffer(out_t)
        steps.append(step)
        where[ops[group[-1]].name] = step.dst
        i = group[-1] + 1
    _output_in_chw(graph, steps, buffers, where, flat_from, new_buffer)
    _route_logits(steps, buffers)
    return steps, buffers


def _output_in_chw(graph: QGraph, steps: list[Step], buffers: list[Buffer],
                   where: dict[str, int], flat_from: dict[str, tuple[int, ...]],
                   new_buffer: Callable[[QTensor], int]) -> None:
    """The caller's output array holds the graph's output in the QGraph's order: a CxHxW
    tensor (flattened or not) is CHW there, while the arena holds it HWC, so a model that
    ends on one (a fully convolutional head, a single-op test model) ends with a copy that
    reorders it. Nothing is added when one of C or HxW is 1: both orders agree."""
    name = graph.ops[-1].name
    hwc = flat_from.get(name) or tuple(graph.output.shape)
    if len(hwc) != 3 or hwc[0] == 1 or hwc[1] * hwc[2] == 1 or where[name] == PIXELS:
        return
    steps.append(Step("to_chw", [], where[name], new_buffer(graph.output), flat_from=hwc))


def _route_logits(steps: list[Step], buffers: list[Buffer]) -> None:
    """The last writing step stores straight into the caller's logits array."""
    writing = [k for k, s in enumerate(steps) if not s.in_place]
    if not writing:
        raise MnistEdgeError("the C backend needs an op that computes: this graph only "
                             "reshapes its input")
    last = writing[-1]
    dropped = steps[last].dst
    for s in steps[last:]:
        s.src = LOGITS if s.src == dropped else s.src
        s.dst = LOGITS
    buffers[dropped].size = 0


def lifetimes(steps: list[Step], buffers: list[Buffer]) -> list[tuple[int, int]]:
    """(first, last) step index at which each buffer is live."""
    span = [[len(steps), -1] for _ in buffers]
    for k, s in enumerate(steps):
        for b in (*s.srcs, s.dst):
            if b >= 0:
                span[b][0], span[b][1] = min(span[b][0], k), max(span[b][1], k)
    return [(a, b) for a, b in span]


def _layout(steps: list[Step], buffers: list[Buffer]) -> int:
    """Buffer offsets; returns the arena size (ping-pong for a chain, first-fit for a DAG
    or for any schedule whose steps overlap their input)."""
    chain = all(not s.more and not s.overlaps for s in steps) and all(
        later.src == s.dst for s, later in zip(steps, steps[1:], strict=False)
        if later.src >= 0 and s.dst >= 0)
    if not chain:
        return _layout_first_fit(steps, buffers)
    arena = max([_align(b.size) for b in buffers] + [ALIGN])
    for s in steps:
        live = {b for b in (s.src, s.dst) if b >= 0}
        arena = max(arena, sum(_align(buffers[b].size) for b in live) + s.scratch)
    for k, b in enumerate(buffers):
        b.offset = 0 if k % 2 == 0 else arena - _align(b.size)
    for s in steps:  # the scratch sits after the step's even (low) buffer, if any
        low = [b for b in (s.src, s.dst) if b >= 0 and b % 2 == 0]
        s.scratch_offset = _align(buffers[low[0]].size) if low else 0
    return arena


def _items(steps: list[Step], buffers: list[Buffer]
           ) -> tuple[list[Buffer], list[tuple[int, int]], dict[tuple[int, int], int]]:
    """The buffers, then each step's scratch and line buffer (live for that step only),
    with their lifetimes and the (input, output) pairs allowed to overlap (-> drift)."""
    life = lifetimes(steps, buffers)
    items = list(buffers)
    relax: dict[tuple[int, int], int] = {}
    for k, s in enumerate(steps):
        relax.update({(x, s.dst): _align(d) for x, d in s.overlaps.items()})
        for size in (s.scratch, s.lines):
            if size:
                items.append(Buffer(size, ()))
                life.append((k, k))
    return items, life, relax


def _clashes(k: int, placed: list[int], items: list[Buffer], life: list[tuple[int, int]],
             relax: dict[tuple[int, int], int]) -> list[tuple[int, int]]:
    """(lo, hi) per placed item live with item k: k must end by lo or start from hi. Where
    k writes over j, k may start up to `drift` below j's start (lo = j + size - drift);
    where j writes over k, k may start from `drift` above j's start (hi = j + drift)."""
    size = _align(items[k].size)
    out = []
    for j in placed:
        if not (life[j][0] <= life[k][1] and life[k][0] <= life[j][1]):
            continue
        lo, hi = items[j].offset, items[j].offset + _align(items[j].size)
        if (j, k) in relax and relax[j, k] < size:
            lo = items[j].offset + size - relax[j, k]
        elif (k, j) in relax and relax[k, j] < _align(items[j].size):
            hi = items[j].offset + relax[k, j]
        out.append((lo, hi))
    return out


def _finish(steps: list[Step], buffers: list[Buffer], items: list[Buffer]) -> int:
    extra = iter(items[len(buffers):])
    for s in steps:
        if s.scratch:
            s.scratch_offset = next(extra).offset
        if s.lines:
            s.lines_offset = next(extra).offset
    return max([b.offset + _align(b.size) for b in items] + [ALIGN])


def _layout_first_fit(steps: list[Step], buffers: list[Buffer]) -> int:
    """Largest buffer first, each at the lowest offset clear of every buffer live with it;
    a step's scratch is one more buffer, live for that step only."""
    if any(s.overlaps for s in steps):
        return _layout_overlapping(steps, buffers)
    items, life, relax = _items(steps, buffers)
    placed: list[int] = []
    for k in sorted(range(len(items)), key=lambda k: (-items[k].size, k)):
        offset = 0
        for lo, hi in sorted(_clashes(k, placed, items, life, relax)):
            if offset + _align(items[k].size) <= lo:
                break
            offset = max(offset, hi)
        items[k].offset = offset
        placed.append(k)
    return _finish(steps, buffers, items)


def _layout_overlapping(steps: list[Step], buffers: list[Buffer]) -> int:
    """First-fit when outputs may overlap their inputs: an output must start below its
    input, so offsets may go negative while placing (each item where it widens the arena
    least, nearest 0 on a tie) and the whole layout moves up at the end. Three orders are
    tried, largest first, first written first (which lets a chain of overlapping steps
    slide down and back) and largest size times lifetime first (long-lived buffers at the
    edges, so a short-lived scratch finds the room between them), and the smallest arena
    kept (the first on a tie)."""
    orders = ("size", "time", "area")
    sizes = [_layout_in_order(steps, buffers, by) for by in orders]
    return _layout_in_order(steps, buffers, orders[sizes.index(min(sizes))])


def _layout_in_order(steps: list[Step], buffers: list[Buffer], by: str) -> int:
    items, life, relax = _items(steps, buffers)
    placed: list[int] = []
    low = high = 0
    keys: dict[str, Callable[[int], tuple[int, int]]] = {
        "size": lambda k: (-items[k].size, k),
        "time": lambda k: (life[k][0], k),
        "area": lambda k: (-items[k].size * (life[k][1] - life[k][0] + 1), k)}
    for k in sorted(range(len(items)), key=keys[by]):
        size = _align(items[k].size)
        clashes = _clashes(k, placed, items, life, relax)
        options = {0, low, high - size} | {hi for _, hi in clashes} | \
            {lo - size for lo, _ in clashes}
        fits = [o for o in options if all(o + size <= lo or o >= hi for lo, hi in clashes)]
        best = min(fits, key=lambda o: (max(high, o + size) - min(low, o), abs(o), o))
        items[k].offset = best
        low, high = (min(low, best), max(high, best + size)) if placed else (best, best + size)
        placed.append(k)
    for b in items:
        b.offset -= low
    return _finish(steps, buffers, items)


def plan_arena(graph: QGraph, fuse: bool = True, in_place: bool = True) -> ArenaPlan:
    """Schedule the graph's kernels and size the arena (what `analyze` reports as RAM).

    Non-overlapping maxpools are always fused into the conv before them (it saves both
    memory and time); an overlapping one only when that lowers the arena, because its
    windows make the fused kernel recompute conv outputs. Then steps overlap their input
    where that lowers the arena further (`overlap.choose_overlaps`; `in_place=False` not).
    """
    check_supported(graph)
    base_steps, base_bufs = _steps(graph, set())
    unfused_steps, unfused_bufs = _steps_unfused(graph)
    unfused = _layout(unfused_steps, unfused_bufs)
    if not fuse:
        return _measured(ArenaPlan(unfused_steps, unfused_bufs, unfused, unfused, []))
    chosen: set[int] = set()
    best = _layout(base_steps, base_bufs)
    for i, op in enumerate(graph.ops):
        if op.kind == "maxpool2d" and not _non_overlapping(op):
            steps, bufs = _steps(graph, chosen | {i})
            size = _layout(steps, bufs)
            if size < best:
                chosen.add(i)
                best = size
    steps, bufs = _steps(graph, chosen)
    arena = _layout(steps, bufs)
    if in_place:
        from .overlap import choose_overlaps  # overlap.py reads this module's Step

        arena = choose_overlaps(graph, steps, bufs, arena, _layout)
    arena = _grow_winograd_rows(graph, steps, bufs, arena)
    arena = _grow_stages(graph, steps, bufs, arena)
    fused = [" + ".join(graph.ops[j].name for j in s.ops) for s in steps if len(s.ops) > 1]
    return _measured(ArenaPlan(steps, bufs, arena, unfused, fused))


def _measured(plan: ArenaPlan) -> ArenaPlan:
    """Fill in the figures `analyze` sets beside the arena (activations only, the floor)."""
    plan.activation_bytes = _activation_layout(plan.steps, plan.buffers)
    plan.floor_bytes = live_floor(plan.steps, plan.buffers)
    if _layout(plan.steps, plan.buffers) != plan.arena_bytes:  # the plan's own offsets again
        raise AssertionError("the arena layout is not deterministic")
    return plan


def live_floor(steps: list[Step], buffers: list[Buffer]) -> int:
    """The most activation bytes live at one step (every buffer alive across it): what a
    schedule with no step overlapping its input cannot go below."""
    life = lifetimes(steps, buffers)
    return max([sum(_align(b.size) for b, (a, z) in zip(buffers, life, strict=True)
                    if a <= k <= z) for k in range(len(steps))] + [0])


def _activation_layout(steps: list[Step], buffers: list[Buffer]) -> int:
    """The plan's arena with every scratch and line buffer taken out: activations only,
    the figure to set beside `tensor_bytes` and `live_floor`."""
    saved = [(s.scratch, s.lines) for s in steps]
    for s in steps:
        s.scratch = s.lines = 0
    try:
        return _layout(steps, buffers)
    finally:
        for s, (scratch, lines) in zip(steps, saved, strict=True):
            s.scratch, s.lines = scratch, lines


def _steps_unfused(graph: QGraph) -> tuple[list[Step], list[Buffer]]:
    """Every op its own kernel call (LUTs still in place): the baseline fusion improves on."""
    steps, bufs = _steps(graph, set())
    out_steps: list[Step] = []
    out_bufs: list[Buffer] = []
    # Rebuild without pool fusion: split every fused pool back into its own step.
    remap: dict[int, int] = {PIXELS: PIXELS, LOGITS: LOGITS}
    for s in steps:
        src = remap.get(s.src, s.src)
        if s.pool is None:
            if not s.in_place and s.dst >= 0:
                out_bufs.append(Buffer(bufs[s.dst].size, bufs[s.dst].hwc))
                remap[s.dst] = len(out_bufs) - 1
            out_steps.append(Step(s.kind, s.ops, src, remap[s.dst], s.conv, s.lut, None,
                                  s.flat_from, [remap.get(b, b) for b in s.more], s.scratch))
            continue
        conv_out = graph.ops[s.ops[-2]].output
        out_bufs.append(Buffer(conv_out.size, tuple(conv_out.shape)))
        mid = len(out_bufs) - 1
        out_steps.append(Step(s.kind, s.ops[:-1], src, mid, s.conv, s.lut, scratch=s.scratch))
        if s.dst >= 0:
            out_bufs.append(Buffer(bufs[s.dst].size, bufs[s.dst].hwc))
            remap[s.dst] = len(out_bufs) - 1
        out_steps.append(Step("maxpool", [s.pool], mid, remap[s.dst]))
    return out_steps, out_bufs
