"""C code generation for microcontrollers: QGraph -> a self-contained C99 source tree.

`generate_c` renders the Jinja2 templates under templates/c/ into:

  mnist_edge.h            the one public header (API + sizes + QGraph hash)
  mnist_edge_model.c      the static arena and mnist_edge_predict(), one kernel call per step
  mnist_edge_config.h     what the kernels need to know of the model (requant mode, scratch)
  mnist_edge_kernels.[ch] the int8 kernels (portable C99 with an optional Arm DSP path):
                          the same bytes for every model of one prefix, what MCUs build
  mnist_edge_kernels_x86.c the x86 host's SSE2/AVX2/VNNI dot-product kernels, compiled
                          only by host builds (with -DMNIST_EDGE_X86)
  mnist_edge_kernels_mve.c the Helium (MVE) dot-product kernels, compiled only for
                          cores with MVE (Cortex-M55, M85)
  mnist_edge_weights.[ch] const weights, biases, requantization constants and LUTs
  test_vectors.h, main.c  a self-test against the golden logits
  Makefile, CMakeLists.txt, README.md, manifest.json

The output is a pure function of (QGraph, requant mode, test inputs): no
timestamps, no absolute paths, so regenerating gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, golden
from ..errors import MnistEdgeError
from ..ops.elementwise import add_weights, broadcasts
from ..ops.layout import concat_multipliers
from ..paths import template_env, write_tree
from ..qgraph import QGraph, QOp, QTensor
from ..testing import random_inputs
from .c_arrays import (
    CArray,
    LayerArrays,
    data_symbol,
    float_literal,
    format_values,
    per_tensor,
    step_arrays,
)
from .c_planner import (
    LOGITS,
    PIXELS,
    STEP_KIND,
    ArenaPlan,
    Step,
    depthwise_line_w,
    is_depthwise,
    is_pair_packed,
    pair_packed_copy,
    plan_arena,
)
from .inputs import require_arithmetic

REQUANT_MODES = ("float", "int")
# The warnings every build of the generated C turns into errors, on the host, on every MCU
# and in emscripten alike: code one compiler refuses must not run on another.
C_WARNINGS = ("-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Wconversion", "-Werror")
SOURCES = ("mnist_edge_model.c", "mnist_edge_kernels.c", "mnist_edge_weights.c")
# The x86 host's fast path: compiled only by host builds, with -DMNIST_EDGE_X86.
X86_SOURCES = ("mnist_edge_kernels_x86.c",)
# Helium (MVE) dot-product kernels: compiled only for cores with MVE (Cortex-M55, M85).
MVE_SOURCES = ("mnist_edge_kernels_mve.c",)
TEMPLATES = {  # output file -> template
    "mnist_edge.h": "mnist_edge.h.j2",
    "mnist_edge_config.h": "mnist_edge_config.h.j2",
    "mnist_edge_kernels.h": "mnist_edge_kernels.h.j2",
    "mnist_edge_kernels.c": "mnist_edge_kernels.c.j2",
    "mnist_edge_kernels_x86.c": "mnist_edge_kernels_x86.c.j2",
    "mnist_edge_kernels_mve.c": "mnist_edge_kernels_mve.c.j2",
    "mnist_edge_weights.h": "mnist_edge_weights.h.j2",
    "mnist_edge_weights.c": "mnist_edge_weights.c.j2",
    "mnist_edge_model.c": "mnist_edge_model.c.j2",
    "test_vectors.h": "test_vectors.h.j2",
    "main.c": "main.c.j2",
    "Makefile": "Makefile.j2",
    "CMakeLists.txt": "CMakeLists.txt.j2",
    "README.md": "README.md.j2",
}
DEFAULT_VECTORS = 20
DEFAULT_PREFIX = "mnist_edge"
_PREFIX_RE = re.compile(r"[a-z][a-z0-9_]{0,30}")


def check_prefix(prefix: str) -> Names:
    """A C prefix: lower case letters, digits and '_', starting with a letter."""
    if not _PREFIX_RE.fullmatch(prefix) or prefix.endswith("_") or "__" in prefix:
        raise MnistEdgeError(f"--prefix {prefix!r}: use a lower-case C identifier such as "
                             f"'digits' or 'kws_model' (letters, digits, single '_')")
    return Names(prefix)


@dataclass
class Layer:
    """What the templates need to emit one step: its arrays, params and call."""

    title: str
    comment: str
    arrays: LayerArrays
    params_type: str | None
    params_name: str | None
    fields: list[tuple[str, str]]
    call: str
    # Further (type, name, fields) parameter blocks: one per input of a concat.
    more_params: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    # The kernel's scratch: its C size macro and the arena bytes the planner gave it.
    buffer_check: tuple[str, int] | None = None


def _shape(t: QTensor | tuple[int, ...]) -> str:
    shape = t.shape if isinstance(t, QTensor) else t
    return "x".join(str(d) for d in shape)


def _quant(t: QTensor) -> str:
    return f"scale {t.scale!r}, zero point {t.zero_point}"


def _buf(plan: ArenaPlan, ref: int) -> str:
    if ref == PIXELS:
        return "input"
    if ref == LOGITS:
        return "logits"
    return f"arena + {plan.buffers[ref].offset}"


def _requant_fields(arrays: LayerArrays, zero_point: int,
                    act: tuple[int, int] | None = None, shared: bool = False) -> str:
    """A requant_params initializer; `act` (the tflite arithmetic's fused activation clamp,
    from `QGraph.prepare`) adds act_min and act_max, `shared` one multiplier for all."""
    shift = arrays.shift.name if arrays.shift is not None else "NULL"
    table = arrays.table.name if arrays.table is not None else "NULL"
    clamp = f".act_min = {act[0]}, .act_max = {act[1]}, " if act is not None else ""
    one = ".per_tensor = 1, " if shared else ""
    return (f"{{.mult = {arrays.mult.name}, .shift = {shift}, .zero_point = {zero_point}, "
            f"{clamp}{one}.table = {table}}}")


def _act(graph: QGraph, index: int) -> tuple[int, int] | None:
    """The op's fused activation clamp in the tflite arithmetic, None in the onnx one."""
    if graph.arithmetic != "tflite":
        return None
    lo, hi = graph.prepare(index)["act"]
    return int(lo), int(hi)


def _op_summary(op: QOp, x: QTensor) -> str:
    a = op.attrs
    if op.kind == "conv2d":
        kh, kw = a["kernel"]
        sh, sw = a.get("stride", [1, 1])
        pad = ",".join(str(v) for v in a.get("padding", [0, 0, 0, 0]))
        groups = int(a.get("groups", 1))
        extra = f", groups {groups}" if groups > 1 else ""
        return (f"conv2d {_shape(x)} -> {_shape(op.output)}, {kh}x{kw} stride {sh}x{sw} "
                f"pad {pad}{extra}")
    if op.kind in ("maxpool2d", "avgpool2d"):
        kh, kw = a["kernel"]
        sh, sw = a["stride"]
        return f"{op.kind} {kh}x{kw} stride {sh}x{sw} -> {_shape(op.output)}"
    if op.kind == "lut":
        act = a.get("activation")
        return f"lut{' (' + act + ')' if act else ''}"
    act = a.get("activation")
    tail = f" ({act})" if act and op.kind != "flatten" else ""
    return f"{op.kind} {_shape(x)} -> {_shape(op.output)}{tail}"


def _pool_first(graph: QGraph, step: Step) -> bool:
    """Max-pooling accumulators before requantizing is exact when y(acc) never decreases:
    M > 0 always, so only a fused LUT that is not non-decreasing (GELU) forbids it. In the
    tflite arithmetic a positive shift multiplies acc by 2^shift in int32, which wraps."""
    if graph.arithmetic == "tflite" and np.any(graph.prepare(step.conv)["shift"] > 0):
        return False
    if step.lut is None:
        return True
    return bool(np.all(np.diff(graph.ops[step.lut].arrays["table"].astype(np.int64)) >= 0))


@dataclass(frozen=True)
class Names:
    """The C names of one generated model: `generate c --prefix NAME`.

    Public API, files and macros carry the prefix (`mnist_edge_predict`,
    `MNIST_EDGE_CLASSES`, mnist_edge.h); the kernels, their types and macros carry
    the kernel prefix: `me` for the default prefix (today's names, so the committed
    tree regenerates byte-identically), `<prefix>_k` otherwise. Two models with
    different prefixes share no symbol, so they link into one program.
    """

    prefix: str = "mnist_edge"

    @property
    def upper(self) -> str:
        return self.prefix.upper()

    @property
    def kernel(self) -> str:
        return "me" if self.prefix == DEFAULT_PREFIX else f"{self.prefix}_k"

    def file(self, name: str) -> str:
        """Output file name: mnist_edge_model.c -> <prefix>_model.c."""
        return self.prefix + name[len(DEFAULT_PREFIX):] if name.startswith(DEFAULT_PREFIX) \
            else name

    def context(self) -> dict[str, str]:
        return {"p": self.prefix, "P": self.upper, "k": self.kernel, "K": self.kernel.upper()}


@dataclass
class StepContext:
    """What a lowering needs to emit one step's call and parameter block."""

    graph: QGraph
    plan: ArenaPlan
    step: Step
    arrays: LayerArrays
    ident: str
    names: Names
    more_params: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    buffer_check: tuple[str, int] | None = None  # (C size expression, bytes the plan gave)

    @property
    def src(self) -> str:
        return _buf(self.plan, self.step.src)

    @property
    def dst(self) -> str:
        return _buf(self.plan, self.step.dst)

    def fn(self, name: str) -> str:
        """A kernel's C name: conv2d_s8 -> me_conv2d_s8."""
        return f"{self.names.kernel}_{name}"

    def ptype(self, name: str) -> str:
        return f"{self.names.kernel}_{name}"


Lowered = tuple[str | None, list[tuple[str, str]], str]  # params type, fields, call


def _lower_conv(c: StepContext) -> Lowered:
    graph, step, arrays = c.graph, c.step, c.arrays
    op = graph.ops[step.conv]
    x = graph.input_of(step.conv)
    out = graph.ops[step.ops[-1]].output
    kh, kw = op.attrs["kernel"]
    sh, sw = op.attrs.get("stride", [1, 1])
    pt, pl = op.attrs.get("padding", [0, 0, 0, 0])[:2]
    groups = int(op.attrs.get("groups", 1))
    ph, pw, psh, psw = 1, 1, 1, 1
    if step.pool is not None:
        pool = graph.ops[step.pool]
        (ph, pw), (psh, psw) = pool.attrs["kernel"], pool.attrs["stride"]
    fields = [
        ("in_h", x.shape[1]), ("in_w", x.shape[2]), ("in_c", x.shape[0]),
        ("out_c", op.output.shape[0]),
        ("kernel_h", kh), ("kernel_w", kw), ("stride_h", sh), ("stride_w", sw),
        ("pad_top", pt), ("pad_left", pl), ("groups", groups),
        ("group_in_c", x.shape[0] // groups), ("group_out_c", op.output.shape[0] // groups),
        ("pool_h", ph), ("pool_w", pw), ("pool_stride_h", psh), ("pool_stride_w", psw),
        ("out_h", out.shape[1]), ("out_w", out.shape[2]),
        ("pool_first", int(_pool_first(graph, step))),
        ("input_zero_point", x.zero_point),
        ("weights", "NULL" if step.kind == "conv_u8" else arrays.weights.name),
        ("pixel_weights", arrays.weights.name if step.kind == "conv_u8" else "NULL"),
        ("bias", arrays.bias.name),
        ("requant", _requant_fields(arrays, op.output.zero_point, _act(graph, step.conv))),
    ]
    if step.stage:  # the weights and biases copied into RAM there (c_planner.stage_unit)
        fields += [("stage_at", step.kernel_scratch), ("stage_bytes", step.stage)]
    fn = c.fn("conv2d_u8_1ch" if step.kind == "conv_u8" else "conv2d_s8")
    call = f"{fn}(&{c.ident}_params, {c.src}, {c.dst}, arena + {step.scratch_offset});"
    taps = kh * kw * (1 if step.kind == "conv_u8" else x.shape[0] // groups)
    macro = f"{c.names.kernel.upper()}_{'CONV2D_U8_1CH' if step.kind == 'conv_u8' else 'CONV2D_S8'}"
    c.buffer_check = (f"{macro}_BUFFER_SIZE({taps}, {op.output.shape[0]})", step.scratch)
    if is_depthwise(graph, step):  # tap-major weights, channels innermost
        fn = c.fn("tfl_depthwise_conv2d_s8")
        call = f"{fn}(&{c.ident}_params, {c.src}, {c.dst}, arena + {step.scratch_offset});"
        c.buffer_check = (f"{c.names.kernel.upper()}_TFL_DEPTHWISE_CONV2D_S8_BUFFER_SIZE"
                          f"({x.shape[0]}, {kh}, {kw}, {sh}, {sw}, "
                          f"{op.output.shape[0] // x.shape[0]}, {depthwise_line_w(op)}, "
                          f"{op.output.shape[1]})",
                          step.scratch)
    if is_pair_packed(graph, step):  # pair-packed weights: three positions a pass
        fn = c.fn("conv2d_packed_s8")
        call = f"{fn}(&{c.ident}_params, {c.src}, {c.dst}, arena + {step.scratch_offset});"
    if step.winograd_rows and not step.band:
        rows = step.winograd_rows
        call = (f"{c.fn('conv3x3_winograd_s8')}(&{c.ident}_params, {c.src}, {c.dst}, "
                f"arena + {step.scratch_offset}, {rows});")
        c.buffer_check = (f"{c.names.kernel.upper()}_CONV3X3_WINOGRAD_BUFFER_SIZE"
                          f"({x.shape[0]}, {op.output.shape[0]}, {out.shape[2]}, {rows})",
                          step.scratch)
    if step.band:  # its output overwrites its input: band by band from a line buffer
        band = (f"{c.names.kernel.upper()}_PACKED_BAND({step.packed_band}, {step.band})"
                if step.packed_band else str(step.band))
        call = (f"{c.fn('conv2d_in_bands')}(&{c.ident}_params, {fn}, {c.src}, {c.dst}, "
                f"arena + {step.scratch_offset}, arena + {step.lines_offset}, {band});")
    return c.ptype("conv_params"), [(k, str(v)) for k, v in fields], call


def _lower_linear(c: StepContext) -> Lowered:
    op = c.graph.ops[c.step.conv]
    fields = [("in_features", str(c.graph.input_of(c.step.conv).size)),
              ("out_features", str(op.output.size)),
              ("weights", c.arrays.weights.name), ("bias", c.arrays.bias.name),
              ("requant", _requant_fields(c.arrays, op.output.zero_point,
                                          _act(c.graph, c.step.conv),
                                          per_tensor(c.graph, c.step)))]
    packed = is_pair_packed(c.graph, c.step)
    if c.graph.arithmetic == "tflite":  # pair-packed weights: the q15 input's scratch, if any
        fields.append(("packed_x", f"(int32_t *)(void *)&{c.names.kernel}_arena.bytes"
                                   f"[{c.step.scratch_offset}]"
                       if pair_packed_copy(c.graph, c.step) else "NULL"))
    fn = c.fn("fully_connected_packed_s8" if packed else "fully_connected_s8")
    call = f"{fn}(&{c.ident}_params, {c.src}, {c.dst});"
    return c.ptype("fc_params"), fields, call


def _lower_pool(c: StepContext) -> Lowered:
    if c.graph.arithmetic == "tflite":
        return _lower_tfl_pool(c)
    step = c.step
    i = step.conv if step.kind == "avgpool" else step.ops[0]
    op, x = c.graph.ops[i], c.graph.input_of(i)
    if op.kind == "global_avgpool":
        (kh, kw), (sh, sw) = x.shape[1:], (1, 1)
    else:
        (kh, kw), (sh, sw) = op.attrs["kernel"], op.attrs["stride"]
    requant = ("{.mult = NULL, .shift = NULL, .zero_point = 0, .table = NULL}"
               if step.kind == "maxpool"
               else _requant_fields(c.arrays, op.output.zero_point))
    fields = [("in_h", str(x.shape[1])), ("in_w", str(x.shape[2])),
              ("channels", str(x.shape[0])), ("kernel_h", str(kh)), ("kernel_w", str(kw)),
              ("stride_h", str(sh)), ("stride_w", str(sw)),
              ("out_h", str(op.output.shape[1])), ("out_w", str(op.output.shape[2])),
              ("input_zero_point", str(x.zero_point)), ("requant", requant)]
    fn = c.fn("maxpool2d_s8" if step.kind == "maxpool" else "avgpool2d_s8")
    return c.ptype("pool_params"), fields, f"{fn}(&{c.ident}_params, {c.src}, {c.dst});"


def _lower_tfl_pool(c: StepContext) -> Lowered:
    """TFLM's AVERAGE_POOL_2D / MAX_POOL_2D: in-image taps only, no rescale, the clamp."""
    i = c.step.conv if c.step.kind == "avgpool" else c.step.ops[0]
    op, x = c.graph.ops[i], c.graph.input_of(i)
    (kh, kw), (sh, sw) = op.attrs["kernel"], op.attrs["stride"]
    pt, pl = op.attrs.get("padding", [0, 0, 0, 0])[:2]
    act_min, act_max = _act(c.graph, i)
    table = c.arrays.table.name if c.arrays.table is not None else "NULL"
    fields = [("in_h", x.shape[1]), ("in_w", x.shape[2]), ("channels", x.shape[0]),
              ("kernel_h", kh), ("kernel_w", kw), ("stride_h", sh), ("stride_w", sw),
              ("pad_top", pt), ("pad_left", pl),
              ("out_h", op.output.shape[1]), ("out_w", op.output.shape[2]),
              ("act_min", act_min), ("act_max", act_max), ("table", table)]
    fn = c.fn("tfl_maxpool2d_s8" if c.step.kind == "maxpool" else "tfl_avgpool2d_s8")
    return (c.ptype("tfl_pool_params"), [(k, str(v)) for k, v in fields],
            f"{fn}(&{c.ident}_params, {c.src}, {c.dst});")


def _lower_tfl_add(c: StepContext) -> Lowered:
    """TFLM's ADD / SUB: the constants of CalculateOpDataAdd, from `QGraph.prepare`."""
    op = c.graph.ops[c.step.conv]
    p = c.graph.prepare(c.step.conv)
    fields = [("size", op.output.size), ("subtract", int(op.kind == "sub")),
              ("left_shift", p["left_shift"])]
    fields += [(f"{name}_{what}", p[f"{name}_{what}"]) for name in ("input1", "input2", "output")
               for what in ("offset", "multiplier", "shift")]
    fields += [("act_min", p["act"][0]), ("act_max", p["act"][1])]
    return _binary_call(c, "tfl_add", fields)


def _binary_call(c: StepContext, kernel: str, fields: list[tuple[str, Any]]) -> Lowered:
    """A two-input elementwise kernel's parameter block (integer fields, and the broadcast
    strides where the inputs' shapes differ) and call."""
    other = _buf(c.plan, c.step.more[0])
    block = [(k, str(int(v))) for k, v in fields]
    ins = c.graph.inputs_of(c.step.conv)
    if broadcasts(ins):
        ch, h, w = c.graph.ops[c.step.conv].output.shape
        steps = [_hwc_steps(t.shape) for t in ins]
        block.append(("broadcast", f"{{.out_h = {h}, .out_w = {w}, .out_c = {ch}, "
                                   f".a_step = {{{steps[0]}}}, .b_step = {{{steps[1]}}}}}"))
    return (c.ptype(f"{kernel}_params"), block,
            f"{c.fn(kernel + '_s8')}(&{c.ident}_params, {c.src}, {other}, {c.dst});")


def _hwc_steps(shape: tuple[int, ...]) -> str:
    """The HWC strides (H, W, C) of a CxHxW tensor, 0 along each dimension of size 1."""
    ch, h, w = shape
    return ", ".join(str(s if n > 1 else 0) for s, n in ((w * ch, h), (ch, w), (1, ch)))


def _lower_mul(c: StepContext) -> Lowered:
    """TFLM's MUL (tflite arithmetic only): CalculateOpDataMul's constants."""
    op = c.graph.ops[c.step.conv]
    p = c.graph.prepare(c.step.conv)
    fields = [("size", op.output.size), ("input1_offset", -p["input1_zp"]),
              ("input2_offset", -p["input2_zp"]), ("output_offset", p["output_zp"]),
              ("output_multiplier", p["mult"]), ("output_shift", p["shift"]),
              ("act_min", p["act"][0]), ("act_max", p["act"][1])]
    return _binary_call(c, "tfl_mul", fields)


def _lower_softmax(c: StepContext) -> Lowered:
    """TFLM's int8 SOFTMAX (tflite arithmetic only): CalculateSoftmaxParams' constants."""
    op = c.graph.ops[c.step.conv]
    p = c.graph.prepare(c.step.conv)
    fields = [("size", op.output.size), ("input_multiplier", p["input_multiplier"]),
              ("input_left_shift", p["input_left_shift"]), ("diff_min", p["diff_min"])]
    return (c.ptype("softmax_params"), [(k, str(int(v))) for k, v in fields],
            f"{c.fn('softmax_s8')}(&{c.ident}_params, {c.src}, {c.dst});")


def _lower_tfl_mean(c: StepContext) -> Lowered:
    """TFLM's MEAN over H and W (tflite arithmetic only): QuantizedMeanOrSum's constants."""
    p = c.graph.prepare(c.step.conv)
    fields = [("channels", c.graph.ops[c.step.conv].output.shape[0]), ("count", p["count"]),
              ("input_zero_point", p["input_zp"]), ("output_zero_point", p["output_zp"]),
              ("multiplier", p["mult"]), ("shift", p["shift"])]
    return (c.ptype("tfl_mean_params"), [(k, str(int(v))) for k, v in fields],
            f"{c.fn('tfl_mean_s8')}(&{c.ident}_params, {c.src}, {c.dst});")


def _lower_tfl_pad(c: StepContext) -> Lowered:
    """TFLM's PAD / PADV2 (tflite arithmetic only): a copy inside a border of one value."""
    i = c.step.ops[0]
    op, x = c.graph.ops[i], c.graph.input_of(i)
    top, left = op.attrs["padding"][:2]
    fields = [("in_h", x.shape[1]), ("in_w", x.shape[2]), ("channels", x.shape[0]),
              ("out_h", op.output.shape[1]), ("out_w", op.output.shape[2]),
              ("pad_top", top), ("pad_left", left), ("value", op.attrs["value"])]
    return (c.ptype("tfl_pad_params"), [(k, str(int(v))) for k, v in fields],
            f"{c.fn('tfl_pad_s8')}(&{c.ident}_params, {c.src}, {c.dst});")


def _lower_lut(c: StepContext) -> Lowered:
    size = c.graph.ops[c.step.ops[0]].output.size
    return None, [], f"{c.fn('lut_s8')}({c.arrays.table.name}, {size}, {c.src}, {c.dst});"


def _lower_input(c: StepContext) -> Lowered:
    return None, [], f"{c.fn('quantize_input_u8')}(input, {c.names.upper}_INPUT_SIZE, {c.dst});"


def _lower_to_chw(c: StepContext) -> Lowered:
    ch, h, w = c.step.flat_from or ()
    return None, [], f"{c.fn('hwc_to_chw_s8')}({c.src}, {ch}, {h}, {w}, {c.dst});"


def _lower_add(c: StepContext) -> Lowered:
    """The registry's add: k_a (a - z_a) + k_b (b - z_b), one requantization."""
    if c.graph.arithmetic == "tflite":
        return _lower_tfl_add(c)
    op, (a, b) = c.graph.ops[c.step.conv], c.graph.inputs_of(c.step.conv)
    (ka, kb), _ = add_weights([a, b], op.output)
    fields = [("size", str(op.output.size)), ("a_zero_point", str(a.zero_point)),
              ("b_zero_point", str(b.zero_point)), ("a_weight", str(ka)), ("b_weight", str(kb)),
              ("requant", _requant_fields(c.arrays, op.output.zero_point))]
    other = _buf(c.plan, c.step.more[0])
    return (c.ptype("add_params"), fields,
            f"{c.fn('add_s8')}(&{c.ident}_params, {c.src}, {other}, {c.dst});")


def _lower_concat(c: StepContext) -> Lowered:
    """One concat_s8 call per input (HWC: each writes its channels at an offset)."""
    op, tensors = c.graph.ops[c.step.conv], c.graph.inputs_of(c.step.conv)
    out_c = op.output.shape[0]
    calls, offset = [], 0
    for j, (ref, t, mult) in enumerate(zip(c.step.srcs, tensors,
                                           concat_multipliers(tensors, op.output), strict=True)):
        if mult is None:
            requant = "{.mult = NULL, .shift = NULL, .zero_point = 0, .table = NULL}"
        else:
            shift = f"{c.arrays.shift.name} + {j}" if c.arrays.shift is not None else "NULL"
            requant = (f"{{.mult = {c.arrays.mult.name} + {j}, .shift = {shift}, "
                       f".zero_point = {op.output.zero_point}, .table = NULL}}")
        name = f"{c.ident}_in{j}_params"
        c.more_params.append((c.ptype("concat_params"), name, [
            ("positions", str(op.output.size // out_c)), ("in_c", str(t.shape[0])),
            ("out_c", str(out_c)), ("offset", str(offset)),
            ("input_zero_point", str(t.zero_point)), ("requant", requant)]))
        calls.append(f"{c.fn('concat_s8')}(&{name}, {_buf(c.plan, ref)}, {c.dst});")
        offset += t.shape[0]
    return None, [], "\n    ".join(calls)


# Planner step kind -> its lowering: one kernel call (and its parameter block) per step.
# A new op kind is one entry here plus its kernel in templates/c/mnist_edge_kernels.c.j2.
STEP_LOWERING: dict[str, Callable[[StepContext], Lowered]] = {
    "input": _lower_input,
    "conv": _lower_conv,
    "conv_u8": _lower_conv,
    "linear": _lower_linear,
    "maxpool": _lower_pool,
    "avgpool": _lower_pool,
    "lut": _lower_lut,
    "add": _lower_add,
    "concat": _lower_concat,
    "mul": _lower_mul,
    "softmax": _lower_softmax,
    "mean": _lower_tfl_mean,
    "pad": _lower_tfl_pad,
    "to_chw": _lower_to_chw,
}
# QGraph op kind -> the planner step that computes it (tests/test_op_registry.py checks
# that every registered kind has one, and every step kind a lowering). conv2d on the raw
# pixels becomes "conv_u8"; a LUT after a conv, linear or average pool, and a max pool
# after a conv, fuse into that step; flatten and reshape emit nothing.
LOWERING: dict[str, str] = dict(STEP_KIND)


def _layer(graph: QGraph, plan: ArenaPlan, step: Step, mode: str, names: Names) -> Layer:
    arrays = step_arrays(graph, step, mode, names.prefix + "_")
    title = " + ".join(graph.ops[i].name for i in step.ops) or (
        "output" if step.kind == "to_chw" else "input")
    parts = [_op_summary(graph.ops[i], graph.input_of(i)) for i in step.ops]
    where = f"{_buf(plan, step.src)} -> {_buf(plan, step.dst)}"
    if step.band:
        rows = (f"{step.packed_band}-row (pair-packed builds; else {step.band}-row)"
                if step.packed_band else f"{step.band}-row")
        where += f", over its input in {rows} bands via arena + {step.lines_offset}"
    elif step.overlaps:
        where += ", over its input"
    comment = "; ".join(parts) if parts else (
        f"HWC -> CHW, the QGraph's order of its {_shape(step.flat_from or ())} output"
        if step.kind == "to_chw" else "pixels p -> int8 q = p - 128")
    ident = (data_symbol(graph.ops[step.ops[0]].name, names.prefix + "_") if step.ops
             else f"{names.prefix}_{'output' if step.kind == 'to_chw' else 'input'}")
    if step.kind not in STEP_LOWERING:
        raise MnistEdgeError(f"the C backend has no lowering for step kind {step.kind!r}")
    context = StepContext(graph, plan, step, arrays, ident, names)
    ptype, fields, call = STEP_LOWERING[step.kind](context)
    _annotate(graph, step, arrays)
    return Layer(title, f"{comment} [{where}]", arrays, ptype,
                 f"{ident}_params" if ptype else None, fields, call, context.more_params,
                 context.buffer_check)


def _annotate(graph: QGraph, step: Step, arrays: LayerArrays) -> None:
    """The comment above each array: what it is, its shape and its quantization."""
    if step.conv is not None and arrays.mult is not None:
        op = graph.ops[step.conv]
        x = graph.input_of(step.conv)
        quant = f"in {_quant(x)}; out {_quant(op.output)}"
        if arrays.weights is not None:
            w = op.arrays["weight"]
            if step.kind == "conv_u8":
                taps = w.shape[2] * w.shape[3]
                layout = (f"[{w.shape[0]}][{taps + taps % 2}] (one input channel, "
                          f"{w.shape[2]}x{w.shape[3]} taps{' + a 0' if taps % 2 else ''}, int16)")
            elif op.kind == "conv2d":
                layout = f"[{w.shape[0]}][{w.shape[2]}][{w.shape[3]}][{w.shape[1]}] (OHWI)"
            elif step.flat_from is not None and len(step.flat_from) == 3:
                layout = (f"[{w.shape[0]}][{w.shape[1]}] (columns in HWC order of "
                          f"{_shape(step.flat_from)})")
            else:
                layout = f"[{w.shape[0]}][{w.shape[1]}]"
            ws = op.arrays["w_scale"]
            arrays.weights.comment = (f"{op.name}: {op.kind} weights {layout}, int8 symmetric, "
                                      f"w_scale {float(ws.min())!r}..{float(ws.max())!r}; {quant}")
            folded = "" if step.kind == "conv_u8" else " - z_x * sum(w)"
            arrays.bias.comment = f"{op.name}: bias{folded}, int32 at scale s_x * s_w[c]"
        else:
            arrays.mult.comment = f"{op.name}: {op.kind} sum of (x - z_x); {quant}"
        what = "M = s_x * s_w / s_y as float32" if arrays.shift is None else \
            "m of M = m * 2^-shift" if graph.arithmetic != "tflite" else \
            "Q31 m of M ~= m * 2^(shift - 31) (TFLM's QuantizeMultiplier)"
        arrays.mult.comment = (arrays.mult.comment + "\n" if arrays.mult.comment else "") + \
            f"{op.name}: requantization, {what}"
        if arrays.shift is not None:
            arrays.shift.comment = f"{op.name}: requantization shift"
    if arrays.table is not None:
        lut_i = step.lut if step.lut is not None else step.ops[0]
        op = graph.ops[lut_i]
        act = f" {op.attrs['activation']}" if "activation" in op.attrs else ""
        arrays.table.comment = (f"{op.name}: LUT{act}, y = table[x + 128]; "
                                f"out {_quant(op.output)}")


def input_doc(graph: QGraph) -> str:
    """The C API's input, in words: its encoding and layout."""
    what = ("uint8 bytes p (q = p - 128)" if graph.input_encoding == "uint8"
            else "int8 values q")
    shape = graph.input.shape
    if len(shape) == 1:
        return f"{shape[0]} {what}"
    c, h, w = shape
    if c == 1:
        return f"{h}x{w} {what}, row-major: input[y * {w} + x]"
    return (f"{h}x{w}x{c} {what}, HWC (channels interleaved, as TFLite and CMSIS-NN): "
            f"input[(y * {w} + x) * {c} + c]")


def c_inputs(graph: QGraph, inputs: np.ndarray) -> np.ndarray:
    """A batch in the QGraph's layout ([N, C, H, W] or [N, K], its encoding) -> the rows the
    C API reads, [N, INPUT_SIZE], HWC for images: what every C harness writes."""
    graph.input_to_int8(inputs)  # checks dtype and shape
    x = np.asarray(inputs).reshape(-1, *graph.input.shape)
    if x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x).reshape(len(x), -1)


def self_test_vectors(graph: QGraph, inputs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows the C reads, golden int8 logits) of the self-test's inputs (seeded random when
    `inputs` is None)."""
    if inputs is None:
        inputs = random_inputs(graph, DEFAULT_VECTORS, seed=0)
    try:
        rows = c_inputs(graph, inputs)
    except MnistEdgeError as exc:
        raise MnistEdgeError(f"test vectors: {exc}") from None
    if len(rows) == 0:
        raise MnistEdgeError("at least one test vector is needed for the self-test")
    return rows, golden.run_int8(graph, inputs)


def render_tree(graph: QGraph, requant: str = "float",
                vector_pixels: np.ndarray | None = None,
                prefix: str = DEFAULT_PREFIX) -> dict[str, bytes]:
    """Every generated file's bytes, keyed by file name (manifest.json included)."""
    require_arithmetic(graph, "C", ("onnx", "tflite"))
    if requant not in REQUANT_MODES:
        raise MnistEdgeError(f"requant mode {requant!r}: choose float or int")
    if graph.arithmetic == "tflite":
        requant = "int"  # TFLM's requantization is integer only: --requant does not apply
    names = check_prefix(prefix)
    plan = plan_arena(graph)
    layers = [_layer(graph, plan, s, requant, names) for s in plan.steps]
    arrays: list[CArray] = [a for layer in layers for a in layer.arrays.all()]
    seen: dict[str, CArray] = {}
    for a in arrays:
        if a.name in seen:
            raise MnistEdgeError(f"two ops map to the same C name {a.name}; rename one")
        seen[a.name] = a
    rows, logits = self_test_vectors(graph, vector_pixels)
    out, x = graph.output, graph.input
    dims = dict(zip("CHW", x.shape, strict=True)) if len(x.shape) == 3 else {}
    ctx: dict[str, Any] = {
        "model": graph.name,
        "qhash": graph.content_hash(),
        "version": __version__,
        "classes": out.size,
        "input_doc": input_doc(graph),
        "input_ctype": f"{graph.input_encoding}_t",
        "input_dims": list(dims.items()),
        "input_size": x.size,
        "input_scale": float_literal(x.scale),
        "input_zero_point": x.zero_point,
        "arena_bytes": plan.arena_bytes,
        "unfused_arena_bytes": plan.unfused_arena_bytes,
        "weight_bytes": sum(a.nbytes for a in arrays),
        "output_scale": float_literal(out.scale),
        "output_zero_point": out.zero_point,
        "requant": requant,
        "tflite": graph.arithmetic == "tflite",
        "scratch_bytes": plan.scratch_bytes,  # the largest step's, inside the arena
        "in_place_steps": len(plan.in_place),
        "lines_bytes": plan.lines_bytes,
        "layers": layers,
        "arrays": arrays,
        "format_values": format_values,
        "sources": [names.file(f) for f in SOURCES],
        "x86_sources": [names.file(f) for f in X86_SOURCES],
        "mve_sources": [names.file(f) for f in MVE_SOURCES],
        **names.context(),
        "vector_count": len(rows),
        "vector_pixels": [format_values(CArray("int8_t", "", r.astype(np.int64)))
                          for r in rows],
        "vector_logits": [", ".join(str(int(v)) for v in row) for row in logits],
        "vector_classes": [int(c) for c in golden.predict(logits)],
        "fused": plan.fused,
    }
    env = template_env("c")
    files = {names.file(name): env.get_template(tpl).render(ctx).encode()
             for name, tpl in TEMPLATES.items()}
    manifest: dict[str, Any] = {
        "generator": f"mnist-edge {__version__}",
        "model": graph.name,
        "qgraph_hash": ctx["qhash"],
        "requant": requant,
        "arena_bytes": plan.arena_bytes,
        "unfused_arena_bytes": plan.unfused_arena_bytes,
        "scratch_bytes": plan.scratch_bytes,
        "weight_bytes": ctx["weight_bytes"],
        "fused": plan.fused,
        "test_vectors": len(rows),
        **({"prefix": prefix} if prefix != DEFAULT_PREFIX else {}),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return files


def generate_c(graph: QGraph, out_dir: Path, requant: str = "float",
               vector_pixels: np.ndarray | None = None, prefix: str = DEFAULT_PREFIX) -> Path:
    """Write the C tree to `out_dir` atomically (the old tree stays until the new one is done)."""
    files = render_tree(graph, requant, vector_pixels, prefix)
    return write_tree(out_dir, files)
