"""The TFLite operators added after the first import (issue 24): MEAN over H and W,
HARD_SWISH, an int8 -> int8 QUANTIZE inside a model, broadcasting ADD / SUB / MUL (and with
a constant of one value, a table), PAD /
PADV2 that do not fold into a convolution, RESHAPE where CHW and HWC orders agree.

Each is a small `.tflite` written without TensorFlow (backends/tflite_flatbuffer.py), in several
quantizations (equal and unequal scales, zero points at the edges, scales that make
TFLM's fixed-point paths shift left or right), imported into a QGraph, and golden equals
TensorFlow Lite Micro on every output byte of structured and random inputs; the
generated C (tests/test_c_tflite.py's harness) and the HLS C++ (`validate --backend hls`,
here) equal golden.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_tflite_qgraph import golden_vs_tflm

from mnist_edge.backends.tflite_flatbuffer import build
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers.tflite_qgraph import tflite_to_qgraph
from mnist_edge.importers.tflite_reader import parse_tflite

pytest.importorskip("tflite_micro")

N = 64


def _act(name: str, shape: list[int], scale: float, zp: int) -> dict:
    return dict(name=name, shape=shape, dtype="int8", scale=scale, zero_point=zp)


def _mean(hw: tuple[int, int], q_in: tuple[float, int], q_out: tuple[float, int],
          keep_dims: bool = True, axes: tuple[int, ...] = (1, 2)) -> bytes:
    h, w = hw
    shape = [1, h, w, 5]
    reduced = {a % 4 for a in axes}
    out = [1 if d in reduced else n for d, n in enumerate(shape)] if keep_dims else \
        [n for d, n in enumerate(shape) if d not in reduced]
    return build([_act("x", shape, *q_in),
                  dict(name="axes", shape=[len(axes)], dtype="int32",
                       data=np.array(axes, np.int32)),
                  _act("y", out, *q_out)],
                 [dict(op="MEAN", inputs=[0, 1], outputs=[2],
                       options=dict(keep_dims=keep_dims))], [0], [2])


def _unary(op: str, q_in: tuple[float, int], q_out: tuple[float, int]) -> bytes:
    shape = [1, 4, 5, 3]
    return build([_act("x", shape, *q_in), _act("y", shape, *q_out)],
                 [dict(op=op, inputs=[0], outputs=[1])], [0], [1])


def _broadcast(op: str, source: str, first: bool = False, activation: str = "NONE") -> bytes:
    """x [1,4,5,3] and a smaller tensor computed from it, broadcast against x by OP:
    `mean` [1,1,1,3] (per channel, as a squeeze-excite block), `pool` [1,1,5,3] (an
    average over H), `conv` [1,4,5,1] (a 1x1 conv to one channel: per pixel)."""
    rng = np.random.default_rng(len(op) + len(source))
    x = _act("x", [1, 4, 5, 3], 0.05, -7)
    if source == "mean":
        tensors = [x, dict(name="axes", shape=[2], dtype="int32", data=np.array([1, 2], np.int32)),
                   _act("s", [1, 1, 1, 3], 0.021, 5)]
        ops = [dict(op="MEAN", inputs=[0, 1], outputs=[2], options=dict(keep_dims=True))]
    elif source == "pool":
        tensors = [x, _act("s", [1, 1, 5, 3], 0.05, -7)]
        ops = [dict(op="AVERAGE_POOL_2D", inputs=[0], outputs=[1],
                    options=dict(padding="VALID", stride_w=1, stride_h=1, filter_w=1,
                                 filter_h=4, fused_activation="NONE"))]
    else:
        scale = np.array([0.01])
        tensors = [x, dict(name="w", shape=[1, 1, 1, 3], dtype="int8", scale=scale,
                           zero_point=[0], axis=0,
                           data=rng.integers(-127, 128, (1, 1, 1, 3)).astype(np.int8)),
                   _act("s", [1, 4, 5, 1], 0.013, -30)]
        ops = [dict(op="CONV_2D", inputs=[0, 1, -1], outputs=[2],
                    options=dict(padding="SAME", stride_w=1, stride_h=1))]
    small = len(tensors) - 1
    tensors.append(_act("y", [1, 4, 5, 3], 0.09, 3))
    ops.append(dict(op=op, inputs=[small, 0] if first else [0, small], outputs=[small + 1],
                    options=dict(fused_activation=activation)))
    return build(tensors, ops, [0], [small + 1])


def _broadcast_both(op: str, activation: str = "NONE") -> bytes:
    """x [1,4,5,3] -> an average over H [1,1,5,3] and a 1x1 conv to one channel [1,4,5,1];
    OP of the two: both operands broadcast (along H, along C) to [1,4,5,3]."""
    rng = np.random.default_rng(len(op) + 17)
    tensors = [_act("x", [1, 4, 5, 3], 0.05, -7), _act("h", [1, 1, 5, 3], 0.05, -7),
               dict(name="w", shape=[1, 1, 1, 3], dtype="int8", scale=np.array([0.01]),
                    zero_point=[0], axis=0,
                    data=rng.integers(-127, 128, (1, 1, 1, 3)).astype(np.int8)),
               _act("p", [1, 4, 5, 1], 0.013, -30), _act("y", [1, 4, 5, 3], 0.09, 3)]
    ops = [dict(op="AVERAGE_POOL_2D", inputs=[0], outputs=[1],
                options=dict(padding="VALID", stride_w=1, stride_h=1, filter_w=1, filter_h=4,
                             fused_activation="NONE")),
           dict(op="CONV_2D", inputs=[0, 2, -1], outputs=[3],
                options=dict(padding="SAME", stride_w=1, stride_h=1)),
           dict(op=op, inputs=[1, 3], outputs=[4], options=dict(fused_activation=activation))]
    return build(tensors, ops, [0], [4])


def _pad_then(op: str, value: int | None) -> bytes:
    """x [1,5,5,2] -> PAD (or PADV2 with `value`) -> OP: a PAD that does not fold into a
    convolution (OP is no conv, or the value is not the zero point)."""
    rng = np.random.default_rng(9)
    pads = np.array([[0, 0], [1, 2], [2, 0], [0, 0]], dtype=np.int32)
    tensors = [_act("x", [1, 5, 5, 2], 0.05, 9),
               dict(name="p", shape=[4, 2], dtype="int32", data=pads)]
    inputs = [0, 1]
    if value is not None:
        tensors.append(dict(_act("v", [1], 0.05, 9), data=np.array([value], np.int8)))
        inputs.append(2)
    xp = len(tensors)
    tensors.append(_act("xp", [1, 8, 7, 2], 0.05, 9))
    ops = [dict(op="PADV2" if value is not None else "PAD", inputs=inputs, outputs=[xp])]
    if op == "MAX_POOL_2D":
        tensors.append(_act("y", [1, 4, 3, 2], 0.05, 9))
        ops.append(dict(op=op, inputs=[xp], outputs=[xp + 1],
                        options=dict(padding="VALID", stride_w=2, stride_h=2, filter_w=2,
                                     filter_h=2)))
    elif op == "CONV_2D":
        scales = rng.uniform(0.002, 0.02, 3)
        tensors += [dict(name="w", shape=[3, 3, 3, 2], dtype="int8", scale=scales,
                         zero_point=[0] * 3, axis=0,
                         data=rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8)),
                    _act("y", [1, 6, 5, 3], 0.1, -3)]
        ops.append(dict(op=op, inputs=[xp, xp + 1, -1], outputs=[xp + 2],
                        options=dict(padding="VALID", stride_w=1, stride_h=1)))
    return build(tensors, ops, [0], [len(tensors) - 1])


def _reshape(src: list[int], dst: list[int], then_conv: bool = False) -> bytes:
    """x -> RESHAPE (-> a 1x1 CONV_2D on the result)."""
    tensors = [_act("x", src, 0.05, -7),
               dict(name="s", shape=[len(dst)], dtype="int32", data=np.array(dst, np.int32)),
               _act("r", dst, 0.05, -7)]
    ops = [dict(op="RESHAPE", inputs=[0, 1], outputs=[2])]
    if then_conv:
        rng = np.random.default_rng(2)
        tensors += [dict(name="w", shape=[4, 1, 1, dst[3]], dtype="int8", scale=[0.01] * 4,
                         zero_point=[0] * 4, axis=0,
                         data=rng.integers(-127, 128, (4, 1, 1, dst[3])).astype(np.int8)),
                    _act("y", [*dst[:3], 4], 0.2, 1)]
        ops.append(dict(op="CONV_2D", inputs=[2, 3, -1], outputs=[4],
                        options=dict(padding="SAME", stride_w=1, stride_h=1)))
    return build(tensors, ops, [0], [len(tensors) - 1])


CASES = {
    # MEAN: equal quantization (still QuantizedMeanOrSum in the installed TFLM)...
    "mean_same_quant": lambda: _mean((7, 7), (0.05, -3), (0.05, -3)),
    "mean_same_quant_flat": lambda: _mean((5, 3), (0.02, 100), (0.02, 100), keep_dims=False),
    "mean_negative_axes": lambda: _mean((4, 6), (0.05, -3), (0.05, -3), axes=(-3, -2)),
    # ... and QuantizedMeanOrSum with 1/N folded into the multiplier
    "mean_rescaled": lambda: _mean((7, 7), (0.05, -3), (0.02, 4)),
    "mean_rescaled_flat": lambda: _mean((6, 10), (0.1, -128), (0.013, 127), keep_dims=False),
    "mean_zero_point_only": lambda: _mean((3, 3), (0.05, -3), (0.05, 9)),
    "mean_large_window": lambda: _mean((20, 19), (0.003, 17), (0.5, -20)),
    "mean_tiny_output_scale": lambda: _mean((2, 2), (0.5, 0), (0.004, -1)),
    # HARD_SWISH: reluish exponent > 0, = 0 and < 0; zero points at the edges
    "hard_swish": lambda: _unary("HARD_SWISH", (0.05, -3), (0.03, -20)),
    "hard_swish_fine_input": lambda: _unary("HARD_SWISH", (0.003, 10), (0.002, -128)),
    "hard_swish_coarse_input": lambda: _unary("HARD_SWISH", (0.4, -128), (0.35, -100)),
    "hard_swish_large_range": lambda: _unary("HARD_SWISH", (0.15, 127), (0.12, 50)),
    "hard_swish_equal_quant": lambda: _unary("HARD_SWISH", (0.0235, -40), (0.0235, -40)),
    # an int8 -> int8 QUANTIZE inside the model: TFLM's Requantize
    "requantize_down": lambda: _unary("QUANTIZE", (0.05, -3), (0.11, 20)),
    "requantize_up": lambda: _unary("QUANTIZE", (0.07, 60), (0.013, -128)),
    "requantize_zero_point": lambda: _unary("QUANTIZE", (0.05, -3), (0.05, 7)),
    # broadcasting ADD / SUB / MUL: per channel, along H, per pixel; either operand first
    "add_broadcast_channel": lambda: _broadcast("ADD", "mean", activation="RELU"),
    "add_broadcast_h_first": lambda: _broadcast("ADD", "pool", first=True),
    "sub_broadcast_channel_first": lambda: _broadcast("SUB", "mean", first=True),
    "sub_broadcast_pixel": lambda: _broadcast("SUB", "conv", activation="RELU6"),
    "mul_broadcast_channel": lambda: _broadcast("MUL", "mean"),
    "mul_broadcast_pixel_first": lambda: _broadcast("MUL", "conv", first=True),
    "mul_broadcast_h": lambda: _broadcast("MUL", "pool", activation="RELU"),
    # both operands broadcast: [1,1,W,C] with [1,H,W,1]
    "add_broadcast_both": lambda: _broadcast_both("ADD"),
    "mul_broadcast_both": lambda: _broadcast_both("MUL", activation="RELU6"),
    # a constant operand of one value: a table by the same semantics
    "add_constant": lambda: _constant_operand("ADD", (40,), activation="RELU"),
    "sub_constant_first": lambda: _constant_operand("SUB", (-77,), first=True,
                                                    q_k=(0.11, -3)),
    "mul_constant_scalar": lambda: _constant_operand("MUL", (127,), q_k=(0.004, 0)),
    "mul_constant_one_value_per_channel": lambda: _constant_operand("MUL", (-20, -20, -20),
                                                                    first=True),
    # PAD / PADV2 that do not fold into a convolution
    "pad_then_max_pool": lambda: _pad_then("MAX_POOL_2D", None),
    "padv2_value_then_conv": lambda: _pad_then("CONV_2D", -100),
    "padv2_extreme_value_then_max_pool": lambda: _pad_then("MAX_POOL_2D", 127),
    # RESHAPE where CHW and HWC orders agree
    "reshape_same_channels": lambda: _reshape([1, 4, 5, 3], [1, 2, 10, 3], then_conv=True),
    "reshape_one_channel": lambda: _reshape([1, 4, 6, 1], [1, 3, 8, 1], then_conv=True),
    "reshape_vector_to_position": lambda: _reshape([1, 6], [1, 1, 1, 6], then_conv=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_equals_tflm(case: str) -> None:
    equal, n = golden_vs_tflm(CASES[case](), case, n=N)
    assert equal == n


def test_mean_maps_to_one_op_and_a_view() -> None:
    graph, mapped = tflite_to_qgraph(parse_tflite(CASES["mean_rescaled_flat"](), "m"), "m")
    assert [op.kind for op in graph.ops] == ["mean", "flatten"]
    assert graph.output.shape == (5,)
    graph, _ = tflite_to_qgraph(parse_tflite(CASES["mean_same_quant"](), "m"), "m")
    assert graph.ops[0].kind == "mean" and graph.ops[0].output.shape == (5, 1, 1)


def _constant_operand(op: str, values=(5, -9, 100), first: bool = False,
                      q_k: tuple[float, int] = (0.02, 1), activation: str = "NONE") -> bytes:
    """OP(x, a constant) (or OP(constant, x)): [1,1,1,3] of `values`, [1] for one value."""
    shape = [1] if len(values) == 1 else [1, 1, 1, len(values)]
    k = dict(_act("k", shape, *q_k), data=np.array(values, np.int8).reshape(shape))
    return build([_act("x", [1, 4, 5, 3], 0.05, -7), k, _act("y", [1, 4, 5, 3], 0.09, 3)],
                 [dict(op=op, inputs=[1, 0] if first else [0, 1], outputs=[2],
                       options=dict(fused_activation=activation))], [0], [2])


def _rank_broadcast() -> bytes:
    """MUL of x [1,4,5,3] with FULLY_CONNECTED's [1,3]: ranks 4 and 2."""
    w = np.ones((3, 60), np.int8)
    return build([_act("x", [1, 4, 5, 3], 0.05, -7),
                  dict(name="w", shape=[3, 60], dtype="int8", scale=0.01, zero_point=0, data=w),
                  _act("f", [1, 3], 0.3, 0), _act("y", [1, 4, 5, 3], 0.09, 3)],
                 [dict(op="FULLY_CONNECTED", inputs=[0, 1, -1], outputs=[2]),
                  dict(op="MUL", inputs=[0, 2], outputs=[3])], [0], [3])


@pytest.mark.parametrize("data, words", [
    (lambda: _reshape([1, 4, 5, 3], [1, 4, 15, 1]), "moves elements between"),
    (lambda: _reshape([1, 4, 5, 3], [1, 20, 3]), "only .1,H,W,C. and .1,D. tensors"),
    (lambda: _constant_operand("ADD"), r"operator 0 \(ADD\): a constant operand of more "),
    (lambda: _constant_operand("MUL"), r"operator 0 \(MUL\): a constant operand of more "),
    (_rank_broadcast, r"operator 1 \(MUL\): broadcasts \[1, 4, 5, 3\] with \[1, 3\]"),
    (lambda: _mean((4, 4), (0.05, 0), (0.05, 0), axes=(3,)), r"reduces axes \[3\]"),
    (lambda: _mean((4, 4), (0.05, 0), (0.05, 0), axes=(1,)), r"reduces axes \[1\]"),
    (lambda: _unary("HARD_SWISH", (0.05, 0), (0.0001, 0)), "output_multiplier_exponent"),
])
def test_refused_by_operator(data, words: str) -> None:
    with pytest.raises(MnistEdgeError, match=words) as exc:
        tflite_to_qgraph(parse_tflite(data(), "m"), "m")
    assert str(exc.value).startswith("operator ")


def test_onnx_arithmetic_refuses_a_broadcasting_add() -> None:
    graph, _ = tflite_to_qgraph(parse_tflite(CASES["add_broadcast_h_first"](), "b"), "b")
    graph.validate()
    graph.arithmetic = "onnx"
    with pytest.raises(MnistEdgeError, match="broadcasting inputs of different shapes is "
                                             "defined in the tflite arithmetic only"):
        graph.validate()


def test_c_refuses_a_graph_that_only_reshapes() -> None:
    from mnist_edge.backends.c import render_tree

    graph, _ = tflite_to_qgraph(parse_tflite(_reshape([1, 4, 6, 1], [1, 3, 8, 1]), "r"), "r")
    with pytest.raises(MnistEdgeError, match="only reshapes its input"):
        render_tree(graph)


HLS_INPUTS = 300


@pytest.mark.parametrize("case", sorted(CASES))
def test_hls_csim_exact(case: str, tmp_path: Path) -> None:
    """`validate --backend hls` (the C-simulation, one compile) equals golden on every
    output byte of structured and seeded random inputs: MEAN, PAD, RESHAPE and the
    broadcasting ADD / SUB / MUL (per channel, along H, per pixel, either operand first)
    included. The full-size runs (2,000 inputs each, against TFLM as well) are
    scripts/tflite_ops_parity.py's (docs/BENCHMARKS.md)."""
    from helpers import need

    from mnist_edge.importers import import_tflite
    from mnist_edge.probe_inputs import probe_batch
    from mnist_edge.qgraph import load_run
    from mnist_edge.testing import random_inputs
    from mnist_edge.validate import validate_backend

    need("g++")
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(CASES[case]())
    run_dir = import_tflite(path, tmp_path / "runs", None)[0]
    graph = load_run(run_dir)
    x = np.concatenate([probe_batch(graph, 40, 1), random_inputs(graph, HLS_INPUTS - 40,
                                                                 seed=len(case))])
    f = validate_backend(run_dir, "hls", x, None)
    assert f["images"] == HLS_INPUTS and f["exact_logit_fraction"] == 1.0, (case, f)
