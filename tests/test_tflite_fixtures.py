"""Single-operator `.tflite` files, written without TensorFlow, each exact against TFLM.

For the operators the MLPerf Tiny models lack (and a few variants of those they have):
one small model per case, run by `tflite_walk` and by TFLite Micro on structured and
seeded random inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
from tflite_walk import run

from mnist_edge.backends.tflite_flatbuffer import build
from mnist_edge.importers.tflite_reader import parse_tflite
from mnist_edge.probe_inputs import probe_inputs

pytest.importorskip("tflite_micro")
from mnist_edge.targets.tflm import run_tflm  # noqa: E402

N = 48
RNG = np.random.default_rng(5)


def _act(name: str, shape: list[int], scale: float, zp: int) -> dict:
    return dict(name=name, shape=shape, dtype="int8", scale=scale, zero_point=zp)


def _unary(op: str, s_in: float, z_in: int, s_out: float, z_out: int, **options) -> bytes:
    shape = [1, 4, 5, 3]
    return build([_act("x", shape, s_in, z_in), _act("y", shape, s_out, z_out)],
                 [dict(op=op, inputs=[0], outputs=[1], options=options)], [0], [1])


def _binary(op: str, shape_b: list[int], activation: str = "NONE") -> bytes:
    shape = [1, 4, 5, 3]
    return build([_act("a", shape, 0.05, -7), _act("b", shape_b, 0.031, 12),
                  _act("y", shape, 0.09, 3)],
                 [dict(op=op, inputs=[0, 1], outputs=[2],
                       options=dict(fused_activation=activation))], [0, 1], [2])


def _conv(depthwise: bool, stride: int, padding: str, dilation: int, mult: int = 1) -> bytes:
    cin = 3
    cout = cin * mult if depthwise else 5
    wshape = [1, 3, 3, cout] if depthwise else [cout, 3, 3, cin]
    w = RNG.integers(-127, 128, wshape).astype(np.int8)
    scales = RNG.uniform(0.002, 0.02, cout)
    h = (9 + stride - 1) // stride if padding == "SAME" else (
        (9 + stride - ((3 - 1) * dilation + 1)) // stride)
    tensors = [_act("x", [1, 9, 9, cin], 0.04, -3),
               dict(name="w", shape=wshape, dtype="int8", scale=scales,
                    zero_point=[0] * cout, axis=3 if depthwise else 0, data=w),
               dict(name="b", shape=[cout], dtype="int32", scale=scales * 0.04,
                    zero_point=[0] * cout, data=RNG.integers(-900, 900, cout).astype(np.int32)),
               _act("y", [1, h, h, cout], 0.08, 5)]
    opts = dict(padding=padding, stride_w=stride, stride_h=stride, dilation_w=dilation,
                dilation_h=dilation, fused_activation="RELU6")
    if depthwise:
        opts["depth_multiplier"] = mult
    return build(tensors, [dict(op="DEPTHWISE_CONV_2D" if depthwise else "CONV_2D",
                                inputs=[0, 1, 2], outputs=[3], options=opts)], [0], [3])


def _pool(op: str, padding: str) -> bytes:
    out = 3 if padding == "SAME" else 2
    return build([_act("x", [1, 7, 7, 4], 0.05, -2), _act("y", [1, out, out, 4], 0.05, -2)],
                 [dict(op=op, inputs=[0], outputs=[1],
                       options=dict(padding=padding, stride_w=3, stride_h=3, filter_w=3,
                                    filter_h=3, fused_activation="RELU"))], [0], [1])


def _concat() -> bytes:
    return build([_act("a", [1, 2, 3, 4], 0.05, 1), _act("b", [1, 2, 3, 2], 0.05, 1),
                  _act("y", [1, 2, 3, 6], 0.05, 1)],
                 [dict(op="CONCATENATION", inputs=[0, 1], outputs=[2],
                       options=dict(axis=3))], [0, 1], [2])


def _pad(op: str) -> bytes:
    pads = np.array([[0, 0], [1, 2], [0, 1], [0, 0]], dtype=np.int32)
    tensors = [_act("x", [1, 3, 3, 2], 0.05, 9),
               dict(name="p", shape=[4, 2], dtype="int32", data=pads),
               _act("y", [1, 6, 4, 2], 0.05, 9)]
    inputs = [0, 1]
    if op == "PADV2":
        tensors.insert(2, dict(name="v", shape=[1], dtype="int8", scale=0.05, zero_point=9,
                               data=np.array([-20], dtype=np.int8)))
        inputs = [0, 1, 2]
    return build(tensors, [dict(op=op, inputs=inputs, outputs=[len(tensors) - 1])],
                 [0], [len(tensors) - 1])


def _edges() -> bytes:
    """float in -> QUANTIZE -> int8 FULLY_CONNECTED -> DEQUANTIZE -> float out."""
    w = RNG.integers(-127, 128, (6, 10)).astype(np.int8)
    tensors = [dict(name="xf", shape=[1, 10], dtype="float32"), _act("x", [1, 10], 0.02, -4),
               dict(name="w", shape=[6, 10], dtype="int8", scale=0.01, zero_point=0, data=w),
               _act("y", [1, 6], 0.05, 2), dict(name="yf", shape=[1, 6], dtype="float32")]
    ops = [dict(op="QUANTIZE", inputs=[0], outputs=[1]),
           dict(op="FULLY_CONNECTED", inputs=[1, 2, -1], outputs=[3],
                options=dict(fused_activation="NONE")),
           dict(op="DEQUANTIZE", inputs=[3], outputs=[4])]
    return build(tensors, ops, [0], [4])


CASES = {
    "conv_same_s1": lambda: _conv(False, 1, "SAME", 1),
    "conv_valid_s2": lambda: _conv(False, 2, "VALID", 1),
    "conv_dilated": lambda: _conv(False, 1, "VALID", 2),
    "depthwise_m1": lambda: _conv(True, 1, "SAME", 1),
    "depthwise_m8_s2": lambda: _conv(True, 2, "SAME", 1, mult=8),
    "max_pool_same": lambda: _pool("MAX_POOL_2D", "SAME"),
    "avg_pool_same": lambda: _pool("AVERAGE_POOL_2D", "SAME"),
    "add_broadcast": lambda: _binary("ADD", [1, 1, 1, 3], "RELU"),
    "sub": lambda: _binary("SUB", [1, 4, 5, 3]),
    "mul": lambda: _binary("MUL", [1, 4, 5, 3]),
    "mul_broadcast_relu6": lambda: _binary("MUL", [1, 1, 5, 1], "RELU6"),
    "logistic": lambda: _unary("LOGISTIC", 0.06, -10, 1 / 256, -128),
    "tanh": lambda: _unary("TANH", 0.03, 4, 1 / 128, 0),
    "relu": lambda: _unary("RELU", 0.05, -3, 0.04, -128),
    "relu6": lambda: _unary("RELU6", 0.05, -3, 0.05, -3),
    "leaky_relu": lambda: _unary("LEAKY_RELU", 0.05, -3, 0.04, 10, alpha=0.2),
    "leaky_relu_negative_alpha": lambda: _unary("LEAKY_RELU", 0.05, 6, 0.03, -9, alpha=-0.7),
    "relu_rescaled": lambda: _unary("RELU", 0.0371, 17, 0.0123, -128),
    "softmax": lambda: _unary("SOFTMAX", 0.1, 7, 1 / 256, -128, beta=1.0),
    "concat": _concat,
    "pad": lambda: _pad("PAD"),
    "padv2": lambda: _pad("PADV2"),
    "quantize_fc_dequantize": _edges,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_op_fixture_equals_tflm(case: str) -> None:
    data = CASES[case]()
    model = parse_tflite(data, case)
    inputs = [model.tensors[i] for i in model.inputs]
    xs = []
    for k, t in enumerate(inputs):
        if t.dtype == "float32":
            xs.append(np.random.default_rng(k).normal(0, 1.5, (N, *t.shape[1:]))
                      .astype(np.float32))
        else:
            xs.append(probe_inputs(t.shape[1:], N, seed=k,
                                   zero_point=int(t.quantization.zero_point[0])))
    ours = run(model, xs[0]) if len(xs) == 1 else _run_two(model, xs)
    ref = _tflm_many(data, xs)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    bad = np.flatnonzero(np.any((ours != ref).reshape(N, -1), axis=1))
    assert not len(bad), (f"{case}: {len(bad)}/{N} inputs differ; first {bad[0]}: ours "
                          f"{ours[bad[0]].ravel()[:10]} tflm {ref[bad[0]].ravel()[:10]}")


def _run_two(model, xs: list[np.ndarray]) -> np.ndarray:
    from tflite_walk import run_op

    op = model.operators[0]
    return run_op(model, op, [xs[0], xs[1], *[model.tensors[i].data for i in op.inputs[2:]]])


def _tflm_many(data: bytes, xs: list[np.ndarray]) -> np.ndarray:
    from mnist_edge.targets.tflm import tflm_interpreter

    if len(xs) == 1:
        return run_tflm(data, xs[0])
    it = tflm_interpreter(data)
    outs = []
    for i in range(N):
        for k, x in enumerate(xs):
            it.set_input(x[i:i + 1], k)
        it.invoke()
        outs.append(np.array(it.get_output(0))[0])
    return np.stack(outs)
