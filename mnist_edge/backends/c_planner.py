"""Turn a QGraph into C kernel calls and lay their buffers out in one static arena.

The C backend runs a sequence of *steps*, one kernel call each. A step may fuse
several QGraph ops: a conv2d with the LUT and the non-overlapping maxpool that
follow it (so the full-size conv output is never stored), a linear layer or an
average pool with the LUT that follows it. `flatten` costs nothing (activations
are HWC, the next linear layer's weights are permuted to match) and a lone LUT
works in place.

Buffers of a sequential graph are live two at a time (a step's input and its
output), so they ping-pong between the two ends of the arena: buffer k sits at
offset 0 when k is even and at the arena's end when k is odd. The arena is then
the largest input + output pair, which is the least any non-in-place schedule
can use. The graph input (uint8 pixels) and the logits live in the caller's
memory, not in the arena.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import MnistEdgeError
from ..qgraph import QGraph, QOp, QTensor

ALIGN = 4  # bytes; every buffer starts on a word boundary

# The attrs each op kind may carry; anything else is refused by name.
ALLOWED_ATTRS: dict[str, set[str]] = {
    "conv2d": {"kernel", "stride", "padding", "groups", "activation", "dilation"},
    "linear": {"activation"},
    "maxpool2d": {"kernel", "stride", "activation"},
    "avgpool2d": {"kernel", "stride", "activation"},
    "global_avgpool": {"activation"},
    "lut": {"activation"},
    "flatten": set(),
}
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

    kind: str  # input | conv_u8 | conv | maxpool | avgpool | linear | lut
    ops: list[int]
    src: int
    dst: int
    conv: int | None = None  # index of the conv2d/linear/avgpool op
    lut: int | None = None  # index of a fused lut op
    pool: int | None = None  # index of a fused maxpool op
    flat_from: tuple[int, ...] | None = None  # linear: (C, H, W) of the flattened input

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

    def describe(self) -> dict:
        return {
            "arena_bytes": self.arena_bytes,
            "unfused_arena_bytes": self.unfused_arena_bytes,
            "fused": list(self.fused),
            "buffers": [{"offset": b.offset, "bytes": b.size} for b in self.buffers],
        }


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def check_supported(graph: QGraph) -> None:
    """Refuse, naming the op, anything the C kernels do not implement."""
    for op in graph.ops:
        where = f"op {op.name} ({op.kind})"
        if op.kind not in ALLOWED_ATTRS:
            raise MnistEdgeError(f"{where}: the C backend does not support op kind {op.kind!r}")
        extra = set(op.attrs) - ALLOWED_ATTRS[op.kind]
        if extra:
            raise MnistEdgeError(f"{where}: the C backend does not support attribute(s) "
                                 f"{', '.join(sorted(extra))}")
        if op.kind == "conv2d" and list(op.attrs.get("dilation", [1, 1])) != [1, 1]:
            raise MnistEdgeError(f"{where}: the C backend does not support dilation")
        if op.kind == "conv2d" and any(p < 0 for p in op.attrs.get("padding", [0, 0, 0, 0])):
            raise MnistEdgeError(f"{where}: negative padding is not supported")


def _fusable_pool(op: QOp) -> bool:
    return op.kind == "maxpool2d"


def _non_overlapping(op: QOp) -> bool:
    return list(op.attrs["kernel"]) == list(op.attrs["stride"])


def _steps(graph: QGraph, fuse_overlapping: set[int]) -> tuple[list[Step], list[Buffer]]:
    """Group ops into steps; `fuse_overlapping` lists overlapping maxpools worth fusing."""
    ops = graph.ops
    steps: list[Step] = []
    buffers: list[Buffer] = []
    cur = PIXELS
    cur_t: QTensor = graph.input
    flat_from: tuple[int, ...] | None = None

    def new_buffer(t: QTensor) -> int:
        buffers.append(Buffer(t.size, tuple(t.shape)))
        return len(buffers) - 1

    i = 0
    if ops[0].kind != "conv2d":
        dst = new_buffer(graph.input)
        steps.append(Step("input", [], PIXELS, dst))
        cur = dst
    while i < len(ops):
        op = ops[i]
        group = [i]
        step = Step(op.kind, group, cur, cur)
        if op.kind in ("conv2d", "linear", "avgpool2d", "global_avgpool"):
            step.conv = i
            if i + 1 < len(ops) and ops[i + 1].kind == "lut":
                step.lut = i + 1
                group.append(i + 1)
            nxt = group[-1] + 1
            if (op.kind == "conv2d" and nxt < len(ops) and _fusable_pool(ops[nxt])
                    and (_non_overlapping(ops[nxt]) or nxt in fuse_overlapping)):
                step.pool = nxt
                group.append(nxt)
            step.kind = {"conv2d": "conv_u8" if cur == PIXELS else "conv", "linear": "linear",
                         "avgpool2d": "avgpool", "global_avgpool": "avgpool"}[op.kind]
            if op.kind == "linear":
                step.flat_from = flat_from
        elif op.kind == "maxpool2d":
            step.kind = "maxpool"
        elif op.kind == "lut":
            step.kind = "lut"
        elif op.kind == "flatten":
            if flat_from is None and len(cur_t.shape) == 3:
                flat_from = tuple(cur_t.shape)
            cur_t = op.output
            i += 1
            continue
        out_t = ops[group[-1]].output
        if step.kind != "lut":
            step.dst = new_buffer(out_t)
            flat_from = None
        steps.append(step)
        cur, cur_t = step.dst, out_t
        i = group[-1] + 1
    _route_logits(steps, buffers)
    return steps, buffers


def _route_logits(steps: list[Step], buffers: list[Buffer]) -> None:
    """The last writing step stores straight into the caller's logits array."""
    last = max(k for k, s in enumerate(steps) if not s.in_place)
    dropped = steps[last].dst
    for s in steps[last:]:
        s.src = LOGITS if s.src == dropped else s.src
        s.dst = LOGITS
    buffers[dropped].size = 0


def _layout(steps: list[Step], buffers: list[Buffer]) -> int:
    """Ping-pong offsets; returns the arena size."""
    arena = max([_align(b.size) for b in buffers] + [ALIGN])
    for s in steps:
        if s.src >= 0 and s.dst >= 0 and not s.in_place:
            arena = max(arena, _align(buffers[s.src].size) + _align(buffers[s.dst].size))
    for k, b in enumerate(buffers):
        b.offset = 0 if k % 2 == 0 else arena - _align(b.size)
    return arena


def plan_arena(graph: QGraph, fuse: bool = True) -> ArenaPlan:
    """Schedule the graph's kernels and size the arena (what `analyze` reports as RAM).

    Non-overlapping maxpools are always fused into the conv before them (it saves both
    memory and time); an overlapping one only when that lowers the arena, because its
    windows make the fused kernel recompute conv outputs.
    """
    check_supported(graph)
    base_steps, base_bufs = _steps(graph, set())
    unfused_steps, unfused_bufs = _steps_unfused(graph)
    unfused = _layout(unfused_steps, unfused_bufs)
    if not fuse:
        return ArenaPlan(unfused_steps, unfused_bufs, unfused, unfused, [])
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
    fused = [" + ".join(graph.ops[j].name for j in s.ops) for s in steps if len(s.ops) > 1]
    return ArenaPlan(steps, bufs, arena, unfused, fused)


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
                                  s.flat_from))
            continue
        conv_out = graph.ops[s.ops[-2]].output
        out_bufs.append(Buffer(conv_out.size, tuple(conv_out.shape)))
        mid = len(out_bufs) - 1
        out_steps.append(Step(s.kind, s.ops[:-1], src, mid, s.conv, s.lut))
        if s.dst >= 0:
            out_bufs.append(Buffer(bufs[s.dst].size, bufs[s.dst].hwc))
            remap[s.dst] = len(out_bufs) - 1
        out_steps.append(Step("maxpool", [s.pool], mid, remap[s.dst]))
    return out_steps, out_bufs
