"""Per-layer cost of a QGraph: parameters, MACs, flash bytes and activation RAM."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import MnistEdgeError
from .qgraph import QGraph
from .requant import ACC_LIMIT

IN_PLACE = ("flatten",)  # ops that reuse their input buffer as output


@dataclass
class LayerCost:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    weight_bytes: int  # int8 weights + int32 biases + LUT tables
    activation_bytes: int  # this op's output tensor
    pair_bytes: int  # inputs + output live at once
    max_accumulator: int  # worst-case |acc| over every int8 input (0: no accumulator)

    @property
    def exact_integer_sum(self) -> bool:
        """Beyond 2^24 golden sums in int64 and float32(acc) rounds, as onnxruntime does."""
        return self.max_accumulator >= ACC_LIMIT


def layer_costs(graph: QGraph) -> list[LayerCost]:
    rows = []
    for i, op in enumerate(graph.ops):
        ins = graph.inputs_of(i)
        params = weight_bytes = macs = 0
        if op.kind in ("conv2d", "linear"):
            w, b = op.arrays["weight"], op.arrays["bias"]
            params = w.size + b.size
            weight_bytes = w.size + 4 * b.size
            macs = op.output.size * (w.size // w.shape[0])
        elif op.kind == "lut":
            weight_bytes = op.arrays["table"].size
        read = sum(t.size for t in ins)
        pair = read if op.kind in IN_PLACE else read + op.output.size
        rows.append(LayerCost(op.name, op.kind, op.output.shape, params, macs, weight_bytes,
                              op.output.size, pair, graph.max_accumulator(i)))
    return rows


def summarize(graph: QGraph) -> dict[str, Any]:
    rows = layer_costs(graph)
    summary: dict[str, Any] = {
        "params": sum(r.params for r in rows),
        "macs": sum(r.macs for r in rows),
        "weight_bytes": sum(r.weight_bytes for r in rows),
        "peak_activation_bytes": max(r.pair_bytes for r in rows),  # of one op at a time
        "layers": [{**asdict(r), "exact_integer_sum": r.exact_integer_sum} for r in rows],
    }
    try:
        from .backends.c_planner import plan_arena
    except ImportError:
        return summary
    try:
        plan = plan_arena(graph)
    except MnistEdgeError:
        if graph.arithmetic == "onnx":
            raise
        return summary  # a tflite op the C backend refuses (by name): no C arena
    # Like with like: each layout with and without the kernels' scratch and line buffers
    # (weight stages aside: they only fill room the layout leaves).
    extra = max([st.kernel_scratch + st.lines for st in plan.steps] + [0])
    summary.update({
        "c_arena_bytes": plan.arena_bytes,  # with scratch and line buffers: the C array
        "c_activation_bytes": plan.activation_bytes,  # the same plan, activations only
        "c_tensor_bytes": plan.tensor_bytes,  # every buffer side by side, activations only
        "c_tensor_scratch_bytes": plan.tensor_bytes + extra,  # ... plus the largest scratch
        "c_scratch_bytes": plan.scratch_bytes,
        "c_lines_bytes": plan.lines_bytes,
        "c_stage_bytes": plan.stage_bytes,
        "c_floor_bytes": plan.floor_bytes,  # the most bytes live at one step, no overlap
        "c_in_place_steps": len(plan.in_place),
    })
    return summary


def format_table(graph: QGraph) -> str:
    s = summarize(graph)
    lines = [f"{'layer':<12} {'kind':<15} {'output':<12} {'params':>8} {'MACs':>10} "
             f"{'weight B':>9} {'act B':>7} {'max |acc|':>13}"]
    for r in s["layers"]:
        shape = "x".join(str(d) for d in r["output_shape"])
        lines.append(f"{r['name']:<12} {r['kind']:<15} {shape:<12} {r['params']:>8,} "
                     f"{r['macs']:>10,} {r['weight_bytes']:>9,} {r['activation_bytes']:>7,} "
                     f"{r['max_accumulator']:>11,}{' *' if r['exact_integer_sum'] else '  '}")
    lines.append(f"total: {s['params']:,} params, {s['macs']:,} MACs, "
                 f"{s['weight_bytes']:,} B weights+biases+LUTs, "
                 f"{s['peak_activation_bytes']:,} B peak activations (largest input+output)")
    if graph.arithmetic == "tflite" and any(r["exact_integer_sum"] for r in s["layers"]):
        lines.append("* accumulators can pass 2^24: int32 sums, requantized with TFLM's Q31 "
                     "multipliers (the tflite arithmetic)")
    elif any(r["exact_integer_sum"] for r in s["layers"]):
        lines.append("* accumulators can pass 2^24: summed exactly in integers, rounded to "
                     "float32 before requantization (as onnxruntime does)")
    if "c_arena_bytes" in s:
        lines += [
            f"C arena, planned (buffers reused): {s['c_arena_bytes']:,} B with scratch, "
            f"{s['c_activation_bytes']:,} B activations only",
            f"C arena, every buffer side by side: {s['c_tensor_scratch_bytes']:,} B with "
            f"scratch, {s['c_tensor_bytes']:,} B activations only",
            f"live-activation floor (the most bytes live at one step): "
            f"{s['c_floor_bytes']:,} B; scratch: kernels {s['c_scratch_bytes']:,} B, "
            f"line buffers {s['c_lines_bytes']:,} B, weight stages {s['c_stage_bytes']:,} B; "
            f"{s['c_in_place_steps']} step(s) write over their input"]
    return "\n".join(lines)
