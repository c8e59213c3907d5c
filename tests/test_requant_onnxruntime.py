"""Pin the requantization contract (mnist_edge.requant) to onnxruntime's QLinearConv.

One 1x1 QLinearConv with one input channel and weight 1 per output channel turns the
bias into the accumulator: acc[c, p] = bias[c] + (x[p] - x_zero_point). Scales, zero
points and biases are graph inputs, so two sessions (uint8 and int8 activations) serve
every case: random scales, exact rounding ties, saturation at both ends and
accumulators up to +-(2**24 - 1).
"""

from __future__ import annotations

import numpy as np
import pytest

from mnist_edge.requant import ACC_LIMIT, decompose, multiplier, requantize_float, requantize_int

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CHANNELS = 2048
POSITIONS = 16
ONNX_TYPES = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8}
NP_TYPES = {"uint8": np.uint8, "int8": np.int8}


def _session(act: str):
    t = ONNX_TYPES[act]
    inputs = [helper.make_tensor_value_info("x", t, [1, 1, 1, POSITIONS]),
              helper.make_tensor_value_info("x_scale", TensorProto.FLOAT, []),
              helper.make_tensor_value_info("x_zero_point", t, []),
              helper.make_tensor_value_info("w_scale", TensorProto.FLOAT, [CHANNELS]),
              helper.make_tensor_value_info("y_scale", TensorProto.FLOAT, []),
              helper.make_tensor_value_info("y_zero_point", t, []),
              helper.make_tensor_value_info("bias", TensorProto.INT32, [CHANNELS])]
    inits = [numpy_helper.from_array(np.ones((CHANNELS, 1, 1, 1), np.int8), "w"),
             numpy_helper.from_array(np.zeros(CHANNELS, np.int8), "w_zero_point")]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zero_point", "w", "w_scale",
                                            "w_zero_point", "y_scale", "y_zero_point", "bias"],
                            ["y"])
    graph = helper.make_graph([node], "requant_probe", inputs,
                              [helper.make_tensor_value_info("y", t, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size=None) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size)).astype(np.float32)


def _order_cases(rng: np.random.Generator) -> tuple[np.float32, np.float32, np.ndarray,
                                                   np.ndarray]:
    """Scales whose M depends on the float32 evaluation order, with accumulators that tell.

    M = float32(float32(x * w) / y) differs by one ulp from float32(x * w / y) for about a
    quarter of scale triples; near a rounding boundary that changes the output. These cases
    pin the order of operations, which random cases almost never do.
    """
    x_scale, y_scale = _log_uniform(rng, 1e-3, 1e-1), _log_uniform(rng, 1e-2, 1.0)
    w_out, acc_out, found = [], [], 0
    for _ in range(100):
        w = _log_uniform(rng, 1e-4, 1e-1, 8 * CHANNELS)
        m32 = ((x_scale * w).astype(np.float32) / y_scale).astype(np.float32)
        m64 = (np.float64(x_scale) * w.astype(np.float64) / np.float64(y_scale))
        m64 = m64.astype(np.float32)
        base = np.floor((rng.integers(-100, 100, w.size) + 0.5) / m64).astype(np.int64)
        for k in range(-3, 4):
            acc = base + k
            f = acc.astype(np.float32)
            tells = (m32 != m64) & (np.rint(f * m32) != np.rint(f * m64)) & (np.abs(acc) < 1 << 23)
            w_out.append(w[tells])
            acc_out.append(acc[tells])
            found += int(tells.sum())
        if found >= CHANNELS:
            break
    w_sel, acc_sel = np.concatenate(w_out)[:CHANNELS], np.concatenate(acc_out)[:CHANNELS]
    assert len(w_sel) == CHANNELS, "too few order-sensitive cases; sample more"
    return np.float32(x_scale), np.float32(y_scale), w_sel, acc_sel


def _cases(rng: np.random.Generator, kind: str) -> dict:
    """One batch of CHANNELS x POSITIONS cases; position 0 gets exactly the target acc."""
    if kind == "order":
        x_scale, y_scale, w_scale, target = _order_cases(rng)
        return {"x_scale": x_scale, "y_scale": y_scale, "w_scale": w_scale, "target": target,
                "x_zero_point": int(rng.integers(-128, 128)), "y_zero_point": 0}
    if kind == "ties":
        # M = odd * 2**-s exactly, and acc chosen so acc * M = n + 0.5.
        x_scale, y_scale = np.float32(1.0), np.float32(1.0)
        s = rng.integers(1, 14, CHANNELS)
        odd = 2 * rng.integers(0, 64, CHANNELS) + 1
        w_scale = (odd * np.exp2(-s.astype(np.float64))).astype(np.float32)
        n = rng.integers(-300, 300, CHANNELS)
        target = (2 * n + 1) << (s - 1)  # acc * M = (2n + 1) * odd / 2: always a tie
    else:
        x_scale = _log_uniform(rng, 1e-4, 1.0)
        y_scale = _log_uniform(rng, 1e-3, 10.0)
        w_scale = _log_uniform(rng, 1e-7, 1e-1, CHANNELS)
        magnitude = np.exp2(rng.uniform(0, 24, CHANNELS)).astype(np.int64)
        target = np.minimum(magnitude, ACC_LIMIT - 1) * rng.choice([-1, 1], CHANNELS)
        target[:4] = [ACC_LIMIT - 1, -(ACC_LIMIT - 1), 0, 1]
        if kind == "saturate":  # outputs far beyond int8 on both sides
            y_scale = np.float32(x_scale * np.median(w_scale) / 4)
    return {"x_scale": np.float32(x_scale), "y_scale": np.float32(y_scale),
            "w_scale": w_scale, "target": target.astype(np.int64),
            "x_zero_point": int(rng.integers(-128, 128)),
            "y_zero_point": int(rng.integers(-128, 128))}


def _run(sess, act: str, case: dict, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Return (acc, onnxruntime y as int8-domain int64, M per channel, y zero point)."""
    offset = 128 if act == "uint8" else 0
    xz = case["x_zero_point"]
    x = rng.integers(-128, 128, POSITIONS)
    x[0] = xz  # position 0: acc == bias == target exactly
    bias = case["target"]
    acc = bias[:, None] + (x - xz)[None, :]
    feed = {"x": (x + offset).astype(NP_TYPES[act]).reshape(1, 1, 1, POSITIONS),
            "x_scale": np.array(case["x_scale"], np.float32),
            "x_zero_point": np.array(xz + offset, NP_TYPES[act]),
            "w_scale": case["w_scale"],
            "y_scale": np.array(case["y_scale"], np.float32),
            "y_zero_point": np.array(case["y_zero_point"] + offset, NP_TYPES[act]),
            "bias": bias.astype(np.int32)}
    y = sess.run(None, feed)[0].reshape(CHANNELS, POSITIONS).astype(np.int64) - offset
    mult = multiplier(case["x_scale"], case["w_scale"], case["y_scale"])
    return acc, y, mult


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_requantize_matches_onnxruntime_qlinearconv(act: str) -> None:
    sess = _session(act)
    rng = np.random.default_rng(1234 if act == "uint8" else 5678)
    checked = ties = low = high = big = 0
    order_sensitive = 0
    for kind in ["random"] * 6 + ["saturate"] * 3 + ["ties"] * 3 + ["order"] * 2:
        case = _cases(rng, kind)
        acc, y, mult = _run(sess, act, case, rng)
        ok = np.abs(acc) < ACC_LIMIT  # the contract's domain
        m = np.broadcast_to(mult[:, None], acc.shape)
        zp = case["y_zero_point"]
        want = requantize_float(acc, m, zp).astype(np.int64)
        m24, shift = decompose(mult)
        want_int = requantize_int(acc, np.broadcast_to(m24[:, None], acc.shape),
                                  np.broadcast_to(shift[:, None], acc.shape), zp).astype(np.int64)
        bad = ok & (y != want)
        assert not bad.any(), (
            f"{kind}: onnxruntime differs from requantize_float at {np.argwhere(bad)[:3]}: "
            f"acc {acc[bad][:3]}, M {m[bad][:3]}, ort {y[bad][:3]}, contract {want[bad][:3]}")
        assert np.array_equal(want_int[ok], want[ok]), f"{kind}: integer path differs"
        exact = acc.astype(np.float64) * m.astype(np.float64)  # exact: 24 + 24 bits < 53
        ties += int(np.sum(ok & (np.abs(exact - np.floor(exact)) == 0.5)))
        low += int(np.sum(ok & (y == -128)))
        high += int(np.sum(ok & (y == 127)))
        big += int(np.sum(ok & (np.abs(acc) >= (1 << 23))))
        checked += int(ok.sum())
        if kind == "order":
            order_sensitive += CHANNELS
    # The cases really cover what the contract is about (guards against a vacuous test).
    assert checked > 300_000
    assert ties > 10_000 and low > 1_000 and high > 1_000 and big > 1_000
    assert order_sensitive >= 2 * CHANNELS
