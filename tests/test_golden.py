"""The vectorized golden model against a straightforward loop implementation of the contract."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_edge import golden
from mnist_edge.errors import MnistEdgeError
from mnist_edge.qgraph import QGraph, pool_window
from mnist_edge.testing import LAYOUTS, random_inputs, random_pixels, random_qgraph


def requant_scalar(acc: int, mult: np.float32, zp: int) -> int:
    y = int(np.rint(np.float32(acc) * mult)) + zp
    return max(-128, min(127, y))


def loop_op(graph: QGraph, i: int, x: np.ndarray) -> np.ndarray:
    """One op on one image, written as plainly as the spec reads."""
    op, xq = graph.ops[i], graph.input_of(i)
    zx, zy = xq.zero_point, op.output.zero_point
    out = np.zeros(op.output.shape, dtype=np.int64)
    if op.kind == "conv2d":
        w, b, mult = op.arrays["weight"], op.arrays["bias"], graph.multiplier(i)
        kh, kw = op.attrs["kernel"]
        sh, sw = op.attrs["stride"]
        pt, pl, _, _ = op.attrs["padding"]
        groups = op.attrs.get("groups", 1)
        cin_g, cout_g = w.shape[1], w.shape[0] // groups
        for co, oy, ox in np.ndindex(*op.output.shape):
            g = co // cout_g
            acc = int(b[co])
            for ci, ky, kx in np.ndindex(cin_g, kh, kw):
                iy, ix = oy * sh + ky - pt, ox * sw + kx - pl
                if 0 <= iy < xq.shape[1] and 0 <= ix < xq.shape[2]:
                    acc += (int(x[g * cin_g + ci, iy, ix]) - zx) * int(w[co, ci, ky, kx])
            out[co, oy, ox] = requant_scalar(acc, mult[co], zy)
    elif op.kind == "linear":
        w, b, mult = op.arrays["weight"], op.arrays["bias"], graph.multiplier(i)
        for co in range(w.shape[0]):
            acc = int(b[co]) + sum((int(x[k]) - zx) * int(w[co, k]) for k in range(w.shape[1]))
            out[co] = requant_scalar(acc, mult[co], zy)
    elif op.kind in ("maxpool2d", "avgpool2d", "global_avgpool"):
        kh, kw = op.attrs.get("kernel", xq.shape[1:])
        sh, sw = op.attrs.get("stride", [1, 1])
        mult = graph.multiplier(i) if op.kind != "maxpool2d" else None
        assert op.kind == "maxpool2d" or kh * kw == pool_window(op, xq)
        for c, oy, ox in np.ndindex(*op.output.shape):
            win = x[c, oy * sh : oy * sh + kh, ox * sw : ox * sw + kw].astype(np.int64)
            out[c, oy, ox] = (win.max() if op.kind == "maxpool2d"
                              else requant_scalar(int((win - zx).sum()), mult[c], zy))
    elif op.kind == "lut":
        for idx in np.ndindex(*x.shape):
            out[idx] = op.arrays["table"][int(x[idx]) + 128]
    elif op.kind == "flatten":
        out = x.reshape(-1)
    return out.astype(np.int8)


# The loops read one tensor per op: the chain layouts (add and concat: test_op_registry).
CHAIN_LAYOUTS = sorted(k for k, ops in LAYOUTS.items() if all("from" not in s for _, s in ops))


@pytest.mark.parametrize("layout", CHAIN_LAYOUTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_golden_matches_loops_on_random_qgraphs(layout: str, seed: int) -> None:
    graph = random_qgraph(seed, layout)
    pixels = random_inputs(graph, 2, seed + 10)
    logits, trace = golden.run_int8(graph, pixels, trace=True)
    for n in range(len(pixels)):
        x = graph.input_to_int8(pixels[n : n + 1])[0]
        for i in range(len(graph.ops)):
            x = loop_op(graph, i, x)
            np.testing.assert_array_equal(trace[i][n], x, err_msg=f"op {graph.ops[i].name}")
        np.testing.assert_array_equal(logits[n], x)


def test_argmax_ties_go_to_lowest_index() -> None:
    logits = np.array([[3, 7, 7, 1], [-128, -128, -128, -128]], dtype=np.int8)
    assert golden.predict(logits).tolist() == [1, 0]


def test_batching_does_not_change_results() -> None:
    graph = random_qgraph(3, "mixed")
    pixels = random_pixels(golden.BATCH + 107, 5)
    whole = golden.run_int8(graph, pixels)
    parts = np.concatenate([golden.run_int8(graph, pixels[i : i + 1]) for i in (0, 600, 506)])
    np.testing.assert_array_equal(whole[[0, 600, 506]], parts)


def test_inputs_must_have_the_graphs_encoding_and_shape() -> None:
    graph = random_qgraph(0, "mixed")
    with pytest.raises(ValueError):
        golden.pixels_to_int8(np.zeros((1, 28, 28), dtype=np.float32))
    for bad in (np.zeros((1, 28, 28), np.float32), np.zeros((1, 27, 28), np.uint8),
                np.zeros((1, 28, 28), np.int8), np.zeros((1, 2, 28, 28), np.uint8)):
        with pytest.raises(MnistEdgeError, match="takes"):
            golden.run_int8(graph, bad)
    features = random_qgraph(0, "features")  # int8 [N,1,49,10]; [N,49,10] is the same
    x = random_inputs(features, 3)
    assert x.dtype == np.int8 and x.shape == (3, 1, 49, 10)
    np.testing.assert_array_equal(golden.run_int8(features, x), golden.run_int8(features, x[:, 0]))
    with pytest.raises(MnistEdgeError, match="takes int8 input"):
        golden.run_int8(features, x.view(np.uint8))
    with pytest.raises(MnistEdgeError, match=r"\[N,1,49,10\]"):
        golden.run_int8(features, x[:, :, :48])
