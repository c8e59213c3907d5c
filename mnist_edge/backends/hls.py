"""HLS C++ for FPGAs, plus memory initialization files, rendered from a QGraph.

The generated tree is plain C++14 (no vendor headers, no float, no dynamic
memory, no recursion) so that host g++ can C-simulate exactly what Vitis HLS
synthesizes. Requantization is the integer-only path of the contract
(`requant.decompose` + `requant.requantize_int`), so C-simulation matches the
golden model bit for bit. The README's latency figures come from
`latency_model`, computed from the same loop structure the templates emit.

A graph in the `tflite` arithmetic renders the same kernels behind a `tflite` switch:
TFLM's Q31 requantization, ADD/SUB/MUL (broadcasting too: a CHW input with a dimension of
1 is read at index 0 along it), pools over in-image taps, MEAN over H and W, PAD, SOFTMAX,
with every constant taken from `QGraph.prepare`; RESHAPE is a view (the registry admits
only those that keep the CHW order, the HLS buffers' order). What TFLM's own C++ leaves
undefined (shifts of 32 or more, multipliers of one or more where TFLM assumes less, int32
sums that may overflow) is refused by name.
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

from .. import golden
from ..errors import MnistEdgeError
from ..ops.elementwise import add_weights, broadcasts
from ..ops.layout import concat_multipliers
from ..paths import atomic_dir, template_env
from ..qgraph import INPUT_NAME, QGraph
from ..testing import random_inputs, random_pixels
from .c import c_inputs
from .c_planner import windows_touch_input
from .inputs import require_arithmetic
from .memfiles import WRITERS, requant_words

DEFAULT_PART = "xc7z020clg400-1"  # Zynq-7020, as on the PYNQ-Z2
DEFAULT_PARALLEL = 4  # output channels computed side by side in conv2d / linear
CLOCK_NS = 10.0

# Assumed pipeline depths (cycles) for the latency model. Vitis's scheduler sets
# the real ones; csynth's report gives them, these only make the estimate explicit.
DEPTH = {"mac": 4, "pool": 3, "copy": 2, "lut": 3}
REQUANT_CYCLES = 5  # pipeline depth: 48-bit product on DSPs, 24-bit rounding, shift, saturate
LOOP_OVERHEAD = 1  # entry/exit of each iteration of a non-pipelined outer loop

TEMPLATE_FILES = {
    "mnist_edge_hls.h.j2": "mnist_edge_hls.h",
    "mnist_edge_kernels.h.j2": "mnist_edge_kernels.h",
    "mnist_edge_params.h.j2": "mnist_edge_params.h",
    "mnist_edge_hls.cpp.j2": "mnist_edge_hls.cpp",
    "tb_mnist_edge.cpp.j2": "tb_mnist_edge.cpp",
    "csim_main.cpp.j2": "csim_main.cpp",
    "run_hls.tcl.j2": "run_hls.tcl",
    "README.md.j2": "README.md",
}
SOURCES = ("mnist_edge_hls.cpp",)  # what synthesis compiles; headers come along


@dataclass
class ParamArray:
    """One constant array: a C ROM in mnist_edge_params.h and one memory file per format."""

    name: str
    values: np.ndarray
    ctype: str
    width: int
    signed: bool
    what: str
    lanes: int | None = None  # weights: declared [lanes][depth / lanes], one ROM per lane

    @property
    def depth(self) -> int:
        return int(self.values.size)

    @property
    def c_dims(self) -> str:
        if self.lanes is not None:
            return f"[{self.lanes}][{self.depth // self.lanes}]"
        return f"[{self.depth}]"

    def c_blocks(self, per_line: int = 16) -> list[list[str]]:
        """Initializer lines, one block per lane (row-major order either way)."""
        flat = [str(int(v)) for v in self.values.ravel()]
        lanes = self.lanes or 1
        size = len(flat) // lanes
        blocks = [flat[k * size : (k + 1) * size] for k in range(lanes)]
        return [[", ".join(b[i : i + per_line]) for i in range(0, len(b), per_line)]
                for b in blocks]


@dataclass
class Layer:
    """One op as the top function calls it, with the loop figures of the latency model."""

    name: str
    kind: str
    summary: str
    call: str  # C++ statement, empty for flatten
    x_buf: str
    y_buf: str
    y_size: int
    outer: int  # iterations of the non-pipelined outer loops
    trip: int  # iterations of the pipelined loop (per outer iteration)
    depth: int
    post: int  # cycles after the pipelined loop per outer iteration (requantization)
    params: list[ParamArray] = field(default_factory=list)
    lanes: int = 1  # output channels computed in parallel (conv2d / linear)

    @property
    def cycles(self) -> int:
        if self.trip == 0:
            return 0
        per = self.trip + self.depth - 1 + self.post
        return self.outer * (per + (LOOP_OVERHEAD if self.outer > 1 else 0))

    @property
    def formula(self) -> str:
        if self.trip == 0:
            return "0 (a view: the next layer reads the same buffer)"
        inner = f"{self.trip} + {self.depth} - 1"
        if self.post:
            inner += f" + {self.post}"
        if self.outer > 1:
            return f"{self.outer} × ({inner} + {LOOP_OVERHEAD})"
        return inner


def c_name(name: str, taken: set[str]) -> str:
    """A C identifier for an op name, unique within the generated code."""
    base = re.sub(r"[^0-9a-zA-Z_]", "_", name).strip("_").lower() or "op"
    if base[0].isdigit():
        base = "op_" + base
    out, n = base, 1
    while out in taken:
        n += 1
        out = f"{base}_{n}"
    taken.add(out)
    return out


def _requant_params(graph: QGraph, i: int, cname: str) -> list[ParamArray]:
    if graph.arithmetic == "tflite":
        c = graph.prepare(i)
        return [
            ParamArray(f"{cname}_mult", np.asarray(c["mult"], np.int64), "int32_t", 32, True,
                       "Q31 multiplier m per channel (M ~= m * 2^(shift - 31), TFLM's "
                       "QuantizeMultiplier)"),
            ParamArray(f"{cname}_shift", np.asarray(c["shift"], np.int64), "int8_t", 8, True,
                       "requantization exponent per channel (left if > 0, right if < 0)"),
        ]
    m, shift = requant_words(graph, i, "HLS")
    return [
        ParamArray(f"{cname}_mult", m, "uint32_t", 24, False,
                   "requantization mantissa m per channel (M = m * 2^-shift)"),
        ParamArray(f"{cname}_shift", shift, "uint8_t", 8, False,
                   "requantization right shift per channel"),
    ]


def lanes_for(cout: int, groups: int, parallel: int) -> int:
    """The widest lane count <= `parallel` that divides the outputs (1 for grouped convs)."""
    if groups != 1:
        return 1
    return max(p for p in range(1, max(parallel, 1) + 1) if cout % p == 0)


@dataclass
class _Site:
    """What a lowering needs to emit one op: the graph, the op, its buffers and names."""

    graph: QGraph
    i: int
    cname: str
    ins: list[str]  # buffers of the op's inputs
    out: str  # buffer of its output
    parallel: int

    @property
    def op(self):
        return self.graph.ops[self.i]


def _lower_conv2d(s: _Site) -> Layer:
    op, x, y = s.op, s.graph.input_of(s.i), s.op.output
    w = op.arrays["weight"]
    cin, h, wd = x.shape
    cout, _, oh, ow = (w.shape[0], *y.shape)
    kh, kw = op.attrs["kernel"]
    sh, sw = op.attrs.get("stride", [1, 1])
    pt, pl, pb, pr = op.attrs.get("padding", [0, 0, 0, 0])
    groups = int(op.attrs.get("groups", 1))
    params = [
        ParamArray(f"{s.cname}_weight", w, "int8_t", 8, True,
                   f"weights [{cout}][{cin // groups}][{kh}][{kw}] (out, in/groups, ky, kx)"),
        ParamArray(f"{s.cname}_bias", op.arrays["bias"], "int32_t", 32, True,
                   "bias per output channel (scale x_scale * w_scale)"),
        *_requant_params(s.graph, s.i, s.cname),
    ]
    params[0].lanes = lanes = lanes_for(cout, groups, s.parallel)
    targs = [cin, h, wd, cout, oh, ow, kh, kw, sh, sw, pt, pl, groups, x.zero_point,
             y.zero_point, lanes]
    summary = (f"conv2d {_dims(x.shape)} -> {_dims(y.shape)}, kernel {kh}x{kw}, "
               f"stride {sh}x{sw}, padding t{pt} l{pl} b{pb} r{pr}, groups {groups}, "
               f"{lanes} lane(s)")
    if s.graph.arithmetic == "tflite":
        dh, dw = op.spec.attr(op, "dilation")
        targs += [dh, dw, *_clamp(s)]
        summary += (f", dilation {dh}x{dw}" if (dh, dw) != (1, 1) else "") + _clamp_summary(s)
    return Layer(s.cname, op.kind, summary, _call("conv2d", targs, [*s.ins, s.out,
                                                                    _names(params)]),
                 s.ins[0], s.out, y.size, cout // lanes * oh * ow, cin // groups * kh * kw,
                 DEPTH["mac"], lanes + REQUANT_CYCLES - 1, params, lanes)


def _lower_linear(s: _Site) -> Layer:
    op, x, y = s.op, s.graph.input_of(s.i), s.op.output
    w = op.arrays["weight"]
    params = [
        ParamArray(f"{s.cname}_weight", w, "int8_t", 8, True,
                   f"weights [{w.shape[0]}][{w.shape[1]}] (out, in)"),
        ParamArray(f"{s.cname}_bias", op.arrays["bias"], "int32_t", 32, True,
                   "bias per output (scale x_scale * w_scale)"),
        *_requant_params(s.graph, s.i, s.cname),
    ]
    params[0].lanes = lanes = lanes_for(y.size, 1, s.parallel)
    targs = [x.size, y.size, x.zero_point, y.zero_point, lanes]
    summary = f"linear {x.size} -> {y.size}, {lanes} lane(s)"
    if s.graph.arithmetic == "tflite":
        targs += _clamp(s)
        summary += _clamp_summary(s)
    call = _call("linear", targs, [*s.ins, s.out, _names(params)])
    return Layer(s.cname, op.kind, summary, call,
                 s.ins[0], s.out, y.size, y.size // lanes, x.size, DEPTH["mac"],
                 lanes + REQUANT_CYCLES - 1, params, lanes)


def _lower_pool(s: _Site) -> Layer:
    op, x, y = s.op, s.graph.input_of(s.i), s.op.output
    c, h, wd = x.shape
    _, oh, ow = y.shape
    kh, kw = op.attrs["kernel"]
    sh, sw = op.attrs["stride"]
    targs = [c, h, wd, oh, ow, kh, kw, sh, sw]
    params: list[ParamArray] = []
    if s.graph.arithmetic == "tflite":  # TFLM's pools: in-image taps, no rescale, the clamp
        pt, pl, pb, pr = op.spec.attr(op, "padding")
        call = _call(op.kind, targs + [pt, pl, *_clamp(s)], [*s.ins, s.out])
        summary = (f"{op.kind} {_dims(x.shape)} -> {_dims(y.shape)}, window {kh}x{kw}, "
                   f"stride {sh}x{sw}, padding t{pt} l{pl} b{pb} r{pr}{_clamp_summary(s)}")
        post = REQUANT_CYCLES if op.kind == "avgpool2d" else 0
        return Layer(s.cname, op.kind, summary, call, s.ins[0], s.out, y.size, c * oh * ow,
                     kh * kw, DEPTH["pool"], post)
    if op.kind == "avgpool2d":
        params = _requant_params(s.graph, s.i, s.cname)
        call = _call("avgpool2d", targs + [x.zero_point, y.zero_point],
                     [*s.ins, s.out, _names(params)])
        post = REQUANT_CYCLES
    else:
        call, post = _call("maxpool2d", targs, [*s.ins, s.out]), 0
    summary = (f"{op.kind} {_dims(x.shape)} -> {_dims(y.shape)}, window {kh}x{kw}, "
               f"stride {sh}x{sw}")
    return Layer(s.cname, op.kind, summary, call, s.ins[0], s.out, y.size, c * oh * ow,
                 kh * kw, DEPTH["pool"], post, params)


def _lower_global_avgpool(s: _Site) -> Layer:
    op, x, y = s.op, s.graph.input_of(s.i), s.op.output
    c, h, wd = x.shape
    params = _requant_params(s.graph, s.i, s.cname)
    call = _call("global_avgpool", [c, h * wd, x.zero_point, y.zero_point],
                 [*s.ins, s.out, _names(params)])
    return Layer(s.cname, op.kind, f"global_avgpool {_dims(x.shape)} -> {_dims(y.shape)}",
                 call, s.ins[0], s.out, y.size, c, h * wd, DEPTH["pool"], REQUANT_CYCLES,
                 params)


def _lower_lut(s: _Site) -> Layer:
    op, x = s.op, s.graph.input_of(s.i)
    params = [ParamArray(f"{s.cname}_table", op.arrays["table"], "int8_t", 8, True,
                         "activation table: y = table[x + 128]")]
    summary = f"lut over {x.size} values ({op.attrs.get('activation', 'table')})"
    return Layer(s.cname, op.kind, summary, _call("lut", [x.size], [*s.ins, s.out,
                                                                    _names(params)]),
                 s.ins[0], s.out, op.output.size, 1, x.size, DEPTH["lut"], 0, params)


def _lower_flatten(s: _Site) -> Layer:
    x, y = s.graph.input_of(s.i), s.op.output
    return Layer(s.cname, "flatten", f"flatten {_dims(x.shape)} -> {y.shape[0]}", "",
                 s.ins[0], s.ins[0], y.size, 0, 0, 0, 0)


def _lower_add(s: _Site) -> Layer:
    if s.graph.arithmetic == "tflite":
        return _lower_tfl_add(s)
    op, (a, b), y = s.op, s.graph.inputs_of(s.i), s.op.output
    (ka, kb), _ = add_weights([a, b], y)
    params = _requant_params(s.graph, s.i, s.cname)
    call = _call("add", [y.size, a.zero_point, b.zero_point, ka, kb, y.zero_point],
                 [*s.ins, s.out, _names(params)])
    summary = (f"add {_dims(y.shape)}: {ka} * ({_centred('a', a.zero_point)}) + "
               f"{kb} * ({_centred('b', b.zero_point)})")
    return Layer(s.cname, op.kind, summary, call, s.ins[0], s.out, y.size, 1, y.size,
                 DEPTH["mac"], REQUANT_CYCLES, params)


def _lower_tfl_add(s: _Site) -> Layer:
    """TFLM's ADD / SUB: CalculateOpDataAdd's constants as template arguments."""
    op, y = s.op, s.op.output
    c = s.graph.prepare(s.i)
    consts = [int(op.kind == "sub"), c["left_shift"],
              c["input1_offset"], c["input1_multiplier"], c["input1_shift"],
              c["input2_offset"], c["input2_multiplier"], c["input2_shift"],
              c["output_multiplier"], c["output_shift"], c["output_offset"], *c["act"]]
    summary = (f"{op.kind} {_dims(y.shape)} (TFLM's {op.kind.upper()}: inputs << "
               f"{c['left_shift']}, rescaled, {'subtracted' if op.kind == 'sub' else 'summed'}"
               f", rescaled){_clamp_summary(s)}")
    return _binary(s, "add", "Add", consts, summary)


def _lower_mul(s: _Site) -> Layer:
    """TFLM's MUL (tflite arithmetic only): CalculateOpDataMul's constants."""
    c = s.graph.prepare(s.i)
    consts = [-c["input1_zp"], -c["input2_zp"], c["mult"], c["shift"], c["output_zp"],
              *c["act"]]
    summary = f"mul {_dims(s.op.output.shape)} (TFLM's MUL){_clamp_summary(s)}"
    return _binary(s, "mul", "Mul", consts, summary)


def _binary(s: _Site, kernel: str, functor: str, consts: list[int], summary: str) -> Layer:
    """A tflite ADD / SUB / MUL: `kernel` over two inputs of one shape, or, where an input
    broadcasts (a dimension of 1 where the output has more), the `broadcast` kernel with
    each input's CxHxW dimensions and the per-element `functor`."""
    op, y = s.op, s.op.output
    ins = s.graph.inputs_of(s.i)
    if broadcasts(ins):
        dims = [d for t in (y, *ins) for d in t.shape]
        call = (f"broadcast<{_args(dims)}, {functor}<{_args(consts)}>>(\n"
                f"        {', '.join([*s.ins, s.out])});")
        summary += f", broadcasting {' with '.join(_dims(t.shape) for t in ins)}"
    else:
        call = _call(kernel, [y.size, *consts], [*s.ins, s.out])
    return Layer(s.cname, op.kind, summary, call, s.ins[0], s.out, y.size, 1, y.size,
                 DEPTH["mac"], REQUANT_CYCLES)


def _lower_softmax(s: _Site) -> Layer:
    """TFLM's int8 SOFTMAX (tflite arithmetic only): CalculateSoftmaxParams' constants.
    Three pipelined passes over the vector: its max, the sum of exps, the outputs."""
    y = s.op.output
    c = s.graph.prepare(s.i)
    targs = [y.size, c["input_multiplier"], c["input_left_shift"], c["diff_min"]]
    summary = f"softmax over {y.size} values (TFLM's fixed-point exp and reciprocal)"
    return Layer(s.cname, s.op.kind, summary, _call("softmax", targs, [*s.ins, s.out]),
                 s.ins[0], s.out, y.size, 3, y.size, DEPTH["mac"], REQUANT_CYCLES)


def _clamp(s: _Site) -> list[int]:
    """The fused activation's clamp [lo, hi] of a tflite op, from `QGraph.prepare`."""
    return [int(v) for v in s.graph.prepare(s.i)["act"]]


def _clamp_summary(s: _Site) -> str:
    lo, hi = _clamp(s)
    return "" if (lo, hi) == (-128, 127) else f", clamped to [{lo}, {hi}]"


def _lower_mean(s: _Site) -> Layer:
    """TFLM's MEAN over H and W (tflite arithmetic only): QuantizedMeanOrSum's constants."""
    op, x, y = s.op, s.graph.input_of(s.i), s.op.output
    c = s.graph.prepare(s.i)
    channels, h, w = x.shape
    call = _call("mean", [channels, c["count"], c["input_zp"], c["mult"], c["shift"],
                          c["output_zp"]], [*s.ins, s.out])
    summary = (f"mean {_dims(x.shape)} -> {_dims(y.shape)} over H and W (TFLM's "
               "QuantizedMeanOrSum: the sum, rescaled with 1/(H W) folded in)")
    return Layer(s.cname, op.kind, summary, call, s.ins[0], s.out, y.size, channels, h * w,
                 DEPTH["pool"], REQUANT_CYCLES)


def _lower_pad(s: _Site) -> Layer:
    """TFLM's PAD / PADV2 (tflite arithmetic only): the input inside a border of one value."""
    op, x, y = s.op, s.graph.input_of(s.i), s.op.output
    top, left, bottom, right = op.attrs.get("padding", [0, 0, 0, 0])
    call = _call("pad", [*x.shape, *y.shape[1:], top, left, op.attrs["value"]],
                 [*s.ins, s.out])
    summary = (f"pad {_dims(x.shape)} -> {_dims(y.shape)}, t{top} l{left} b{bottom} r{right} "
               f"with {op.attrs['value']}")
    return Layer(s.cname, op.kind, summary, call, s.ins[0], s.out, y.size, 1, y.size,
                 DEPTH["copy"], 0)


def _lower_reshape(s: _Site) -> Layer:
    """A reshape keeps the CHW order (the registry admits only those where HWC agrees): a
    view, like flatten."""
    x, y = s.graph.input_of(s.i), s.op.output
    return Layer(s.cname, "reshape", f"reshape {_dims(x.shape)} -> {_dims(y.shape)}", "",
                 s.ins[0], s.ins[0], y.size, 0, 0, 0, 0)


def _lower_concat(s: _Site) -> Layer:
    op, tensors, y = s.op, s.graph.inputs_of(s.i), s.op.output
    # tflite: TFLM's CONCATENATION copies bytes (equal quantization is a registry rule)
    params = [] if s.graph.arithmetic == "tflite" else _requant_params(s.graph, s.i, s.cname)
    calls, offset = [], 0
    for j, (buf, t, m) in enumerate(zip(s.ins, tensors, concat_multipliers(tensors, y),
                                        strict=True)):
        if m is None:
            calls.append(_call("concat_copy", [t.size, offset, y.size], [buf, s.out]))
        else:
            calls.append(_call("concat_rescale", [t.size, offset, y.size, t.zero_point,
                                                  y.zero_point],
                               [buf, s.out, f"{params[0].name}[{j}]",
                                f"{params[1].name}[{j}]"]))
        offset += t.size
    summary = f"concat {' + '.join(_dims(t.shape) for t in tensors)} -> {_dims(y.shape)}"
    return Layer(s.cname, op.kind, summary, "\n    ".join(calls), s.ins[0], s.out, y.size,
                 1, y.size, DEPTH["copy"], REQUANT_CYCLES, params)


# One entry per registered op kind (tests/test_op_registry.py checks that none is missing).
LOWERING: dict[str, Callable[[_Site], Layer]] = {
    "conv2d": _lower_conv2d,
    "linear": _lower_linear,
    "maxpool2d": _lower_pool,
    "avgpool2d": _lower_pool,
    "global_avgpool": _lower_global_avgpool,
    "lut": _lower_lut,
    "flatten": _lower_flatten,
    "add": _lower_add,
    "concat": _lower_concat,
    "sub": _lower_add,
    "mul": _lower_mul,
    "softmax": _lower_softmax,
    "mean": _lower_mean,
    "pad": _lower_pad,
    "reshape": _lower_reshape,
}


def _tflite_refusal(graph: QGraph, i: int) -> str | None:
    """Why the HLS kernels cannot compute op i of a tflite graph as TFLM does, or None. Each
    limit is where TFLM's own C++ would shift by 32 or more, or assume a multiplier below
    one, or divide by zero (the C backend refuses the same)."""
    op = graph.ops[i]
    c = graph.prepare(i)
    if op.kind in ("conv2d", "linear", "mul") and (np.min(c["shift"]) < -31
                                                   or np.max(c["shift"]) > 30):
        return "a requantization shift outside -31..30"
    if op.kind in ("add", "sub") and max(c["input1_shift"], c["input2_shift"],
                                         c["output_shift"]) > 0:
        return "an ADD/SUB multiplier of one or more"
    if op.kind == "softmax" and (op.output.size >= 512 or c["input_left_shift"] > 30):
        return "a softmax over 512 values or more, or with an input shift above 30"
    if op.kind in ("avgpool2d", "maxpool2d") and not windows_touch_input(graph, i):
        return "a pool window entirely in the padding"
    if op.kind == "mean" and (c["count"] >= 1 << 23 or not -31 <= c["shift"] <= 30):
        return "a MEAN over 2^23 values or more, or with a shift outside -31..30"
    return None


def build_layers(graph: QGraph, parallel: int = DEFAULT_PARALLEL) -> list[Layer]:
    """The ops as kernel calls, buffers and loop trip counts (one buffer per op output)."""
    graph.validate()
    require_arithmetic(graph, "HLS", ("onnx", "tflite"))
    if not 1 <= parallel <= 64:
        raise MnistEdgeError(f"parallel lanes must be 1..64, got {parallel}")
    taken = {"pixels", "logits", "x0"}
    layers: list[Layer] = []
    buffer_of = {INPUT_NAME: "x0"}
    nbuf = 0
    for i, op in enumerate(graph.ops):
        if op.kind not in LOWERING:
            raise MnistEdgeError(f"op {op.name}: op kind {op.kind!r} is not supported by the "
                                 f"HLS backend (supported: {', '.join(LOWERING)})")
        reason = _tflite_refusal(graph, i) if graph.arithmetic == "tflite" else None
        if reason:
            raise MnistEdgeError(f"op {op.name} ({op.kind}): the HLS backend does not "
                                 f"implement {reason} in the tflite arithmetic")
        out = ""
        if op.kind not in ("flatten", "reshape"):
            nbuf += 1
            out = f"x{nbuf}"
        site = _Site(graph, i, c_name(op.name, taken), [buffer_of[n] for n in op.inputs], out,
                     parallel)
        layers.append(LOWERING[op.kind](site))
        buffer_of[op.name] = layers[-1].y_buf
    return layers


def _args(values: list[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


def _names(params: list[ParamArray]) -> str:
    return ", ".join(p.name for p in params)


def _call(kernel: str, targs: list[int], args: list[str]) -> str:
    """`kernel<targs>(args);`, arguments on a continuation line if the line gets long."""
    head, tail = f"{kernel}<{_args(targs)}>(", f"{', '.join(args)});"
    return head + tail if len(head + tail) <= 90 else f"{head}\n        {tail}"


def _centred(name: str, zero_point: int) -> str:
    return f"{name} - {zero_point}" if zero_point >= 0 else f"{name} + {-zero_point}"


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def latency_model(graph: QGraph, layers: list[Layer] | None = None,
                  parallel: int = DEFAULT_PARALLEL) -> dict[str, Any]:
    """Cycles per image implied by the emitted loops (II=1 pipelined inner loops)."""
    layers = build_layers(graph, parallel) if layers is None else layers
    pixels = graph.input.size
    io_in = pixels + DEPTH["copy"] - 1
    io_out = graph.output.size + DEPTH["copy"] - 1
    rows = [{"layer": "read_pixels", "kind": "input", "lanes": 1, "outer": 1, "trip": pixels,
             "formula": f"{pixels} + {DEPTH['copy']} - 1", "cycles": io_in}]
    rows += [{"layer": layer.name, "kind": layer.kind, "lanes": layer.lanes,
              "outer": layer.outer, "trip": layer.trip, "formula": layer.formula,
              "cycles": layer.cycles} for layer in layers]
    rows.append({"layer": "write_logits", "kind": "output", "lanes": 1, "outer": 1,
                 "trip": graph.output.size,
                 "formula": f"{graph.output.size} + {DEPTH['copy']} - 1", "cycles": io_out})
    total = sum(r["cycles"] for r in rows)
    return {
        "formula": "cycles = Σ_layers outer × (trip + depth − 1 + post + overhead)",
        "assumptions": {"pipeline_depth": DEPTH, "requant_depth": REQUANT_CYCLES,
                        "loop_overhead": LOOP_OVERHEAD, "initiation_interval": 1,
                        "clock_ns": CLOCK_NS},
        "layers": rows,
        "total_cycles": total,
        "latency_us_at_clock": round(total * CLOCK_NS / 1000.0, 3),
    }


@dataclass(frozen=True)
class InputPort:
    """The top function's input stream: its C name, size macro, element type and order.

    One channel of uint8 pixels keeps the names the HLS backend always had (`pixels`,
    MNIST_EDGE_PIXELS); int8 input (features, TFLite models) is `input`. A CxHxW input
    streams in HWC order (channels interleaved, as the C API, TFLite and a camera give it)
    and the top function stores it as the CHW buffer the layers read.
    """

    name: str
    macro: str
    ctype: str
    elem: str  # "uint8" | "int8"
    size: int
    channels: int  # 1 for one channel or a vector: the stream is the buffer's order
    doc: str  # the header's sentence about it
    meaning: str  # the README's "Meaning" column
    order: str  # manifest.json

    @property
    def pixels(self) -> bool:
        return self.ctype == "uint8_t"


def input_port(graph: QGraph) -> InputPort:
    """How the HLS top function reads the graph's input."""
    shape = tuple(graph.input.shape)
    u8 = graph.input_encoding == "uint8"
    name, macro, ctype, elem = (("pixels", "MNIST_EDGE_PIXELS", "uint8_t", "uint8") if u8 else
                                ("input", "MNIST_EDGE_INPUT_SIZE", "int8_t", "int8"))
    size = graph.input.size
    values = "pixels p (q = p - 128)" if u8 else "values q"
    quant = "" if u8 else (f", real = {graph.input.scale!r} x (q - ({graph.input.zero_point}))")
    if len(shape) == 3 and shape[0] == 1 and u8:  # the backend's original interface
        _, h, w = shape
        return InputPort(name, macro, ctype, elem, size, 1,
                         f"One image in: {size} uint8 pixels, row-major {h}x{w}.",
                         f"row-major {h}x{w} pixels, 0 = background, 255 = ink",
                         f"row-major {h}x{w}, uint8 0..255")
    if len(shape) == 3:
        c, h, w = shape
        order = f"row-major {h}x{w}" if c == 1 else f"HWC {h}x{w}x{c} (channels interleaved)"
        return InputPort(name, macro, ctype, elem, size, c,
                         f"One input in: {size} {elem} {values}, {order}.",
                         f"{order} {elem} {values}{quant}", f"{order}, {elem}")
    return InputPort(name, macro, ctype, elem, size, 1,
                     f"One input in: {size} {elem} {values}.",
                     f"{size} {elem} {values}{quant}", f"vector of {size}, {elem}")


def _comment(p: ParamArray, op_name: str) -> str:
    kind = "signed two's complement" if p.signed else "unsigned"
    return (f"mnist-edge {p.name}: {p.what} (op {op_name})\n"
            f"width {p.width} bits, {kind}; depth {p.depth}; row-major (C) order, "
            "address 0 = first element")


def generate_hls(graph: QGraph, out_dir: Path, vector_pixels: np.ndarray | None = None,
                 part: str = DEFAULT_PART, parallel: int = DEFAULT_PARALLEL) -> Path:
    """Write the HLS project (sources, testbench, Tcl, memory files, README) atomically.

    `parallel` is the most output channels a conv2d / linear layer computes side by side.
    """
    require_arithmetic(graph, "HLS", ("onnx", "tflite"))
    port = input_port(graph)
    layers = build_layers(graph, parallel)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", part):
        raise MnistEdgeError(f"FPGA part {part!r} is not a valid part name")
    shape = tuple(graph.input.shape)
    if vector_pixels is None and port.pixels and len(shape) == 3 and shape[0] == 1:
        vector_pixels = random_pixels(20, 0, shape[1:])
        vector_source = (f"synthetic (mnist_edge.testing.random_pixels(20, 0, "
                         f"({shape[1]}, {shape[2]})))")
    elif vector_pixels is None:
        vector_pixels = random_inputs(graph, 20, seed=0)
        vector_source = "synthetic (mnist_edge.testing.random_inputs(graph, 20, seed=0))"
    else:
        vector_source = "caller-supplied images" if port.pixels else "caller-supplied inputs"
    rows = c_inputs(graph, vector_pixels)  # the stream's order (HWC), what csim_main reads
    golden_logits = golden.run_int8(graph, vector_pixels)
    latency = latency_model(graph, layers, parallel)
    params = [p for layer in layers for p in layer.params]
    op_of = {p.name: layer.name for layer in layers for p in layer.params}
    buffers = [(layer.y_buf, layer.y_size) for layer in layers if layer.call]
    # Each lane reads its own row of the weights: that is where partitioning pays.
    partitions = [f"{layer.name}_weight" for layer in layers if layer.lanes > 1]
    context = {
        "graph": graph,
        "model": graph.name,
        "qgraph_hash": graph.content_hash(),
        "layers": layers,
        "params": params,
        "buffers": buffers,
        "partitions": partitions,
        "parallel": parallel,
        "last_buf": layers[-1].y_buf,
        "classes": graph.output.size,
        "pixels": port.size,
        "port": port,
        "tflite": graph.arithmetic == "tflite",
        "latency": latency,
        "part": part,
        "clock_ns": CLOCK_NS,
        "vectors": len(rows),
        "vector_source": vector_source,
        "output_scale": graph.output.scale,
        "output_zero_point": graph.output.zero_point,
        "depth": DEPTH,
        "requant_cycles": REQUANT_CYCLES,
        "loop_overhead": LOOP_OVERHEAD,
    }
    env = template_env("hls")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        tmp.chmod(0o755)  # mkdtemp creates 0700; the generated tree is meant to be shared
        for template, name in TEMPLATE_FILES.items():
            (tmp / name).write_text(env.get_template(template).render(**context))
        mem_dir = tmp / "mem"
        mem_dir.mkdir()
        manifest_arrays = []
        for p in params:
            files = {}
            for ext, writer in WRITERS.items():
                text = writer(p.values, p.width, p.signed, _comment(p, op_of[p.name]))
                (mem_dir / f"{p.name}{ext}").write_text(text)
                files[ext[1:]] = f"mem/{p.name}{ext}"
            manifest_arrays.append({
                "name": p.name, "op": op_of[p.name], "what": p.what, "c_type": p.ctype,
                "width": p.width, "signed": p.signed, "depth": p.depth,
                "shape": list(p.values.shape), "order": "row-major (C order), address 0 first",
                "files": files,
                "sha256": hashlib.sha256(np.ascontiguousarray(p.values).tobytes()).hexdigest(),
            })
        vec_dir = tmp / "test_vectors"
        vec_dir.mkdir()
        (vec_dir / "pixels.bin").write_bytes(rows.tobytes())
        (vec_dir / "golden_logits.bin").write_bytes(golden_logits.astype(np.int8).tobytes())
        manifest = {
            "generator": "mnist-edge generate hls",
            "model": graph.name,
            "qgraph_hash": graph.content_hash(),
            "top": "mnist_edge_top",
            "part": part,
            "clock_ns": CLOCK_NS,
            "parallel": parallel,
            "interface": {
                port.name: {"direction": "in", "protocol": "AXI4-Stream", "width": 8,
                            "count": port.size, "order": port.order,
                            **({} if port.pixels else {
                                "signed": True, "scale": graph.input.scale,
                                "zero_point": graph.input.zero_point})},
                "logits": {"direction": "out", "protocol": "AXI4-Stream", "width": 8,
                           "count": graph.output.size, "signed": True,
                           "scale": graph.output.scale,
                           "zero_point": graph.output.zero_point},
                "control": "AXI4-Lite (ap_ctrl_hs: ap_start/ap_done/ap_idle)",
            },
            "latency": latency,
            "arrays": manifest_arrays,
            "test_vectors": {"count": len(rows), "source": vector_source,
                             "pixels": "test_vectors/pixels.bin",
                             "golden_logits": "test_vectors/golden_logits.bin"},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out_dir
