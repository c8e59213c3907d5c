"""Folding, calibration and quantization invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mnist_edge import golden
from mnist_edge.errors import MnistEdgeError
from mnist_edge.fgraph import activation_fn, run_float
from mnist_edge.models import MODEL_NAMES, build_model
from mnist_edge.qgraph import INPUT_SCALE, QTensor
from mnist_edge.quantize.calibrate import calibrate, tensor_range
from mnist_edge.quantize.fold import fold_model
from mnist_edge.quantize.ptq import build_lut, qparams, quantize_graph, quantize_weights
from mnist_edge.testing import random_pixels


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)
    return model.eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_folded_graph_matches_torch(name: str) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build_model(name))
    x = torch.from_numpy(random_pixels(8, 1).astype(np.float32) / 255)[:, None]
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_float(fold_model(model, name), x.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_unsupported_layer_is_named() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Softmax(dim=1))
    with pytest.raises(MnistEdgeError, match="Softmax"):
        fold_model(model, "bad")


def test_nan_weights_are_refused() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    model[1].weight.data[0, 0] = float("nan")
    with pytest.raises(MnistEdgeError, match="NaN"):
        fold_model(model, "nan")


def test_weights_are_symmetric_per_channel() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3, 3, 3)) * np.array([1, 10, 0.01, 0, 3])[:, None, None, None]
    q, scale = quantize_weights(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert q.min() >= -127 and q.max() <= 127
    peaks = np.abs(q.reshape(5, -1)).max(axis=1)
    assert list(peaks[[0, 1, 2, 4]]) == [127] * 4 and peaks[3] == 0
    np.testing.assert_allclose(q * scale[:, None, None, None], w, atol=float(scale.max()) / 2)


def test_zero_is_exact_and_relu_range_uses_minus_128() -> None:
    for lo, hi in [(-1.0, 3.0), (0.0, 6.0), (-5.0, 0.0), (-0.01, 0.02)]:
        scale, zp = qparams(lo, hi)
        assert float(np.float32(scale)) == scale
        assert -128 <= zp <= 127
        assert scale * (-128 - zp) <= lo + scale and scale * (127 - zp) >= hi - scale
    assert qparams(0.0, 6.0)[1] == -128


def test_lut_follows_the_formula() -> None:
    x = QTensor((4,), 0.05, 3)
    y_scale, y_zp = qparams(-1.0, 1.0)
    table = build_lut("tanh", x, y_scale, y_zp)
    for i in (0, 1, 77, 128, 200, 255):
        real = np.tanh(0.05 * (i - 128 - 3))
        assert table[i] == np.clip(np.rint(real / y_scale) + y_zp, -128, 127)
    assert np.all(np.diff(table.astype(int)) >= 0)  # tanh is monotone


def test_activation_references() -> None:
    v = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    torch_v = torch.tensor(v)
    np.testing.assert_allclose(activation_fn("selu")(v), torch.selu(torch_v).numpy(), 1e-12)
    np.testing.assert_allclose(activation_fn("gelu")(v), nn.functional.gelu(torch_v).numpy(),
                               1e-12)
    np.testing.assert_allclose(activation_fn("sigmoid")(v), torch.sigmoid(torch_v).numpy(), 1e-12)


def test_percentile_range_clips_outliers_but_keeps_zero() -> None:
    v = np.concatenate([np.linspace(0.1, 1, 100_000), [50.0]])
    lo, hi = tensor_range(v, "percentile")
    assert lo == 0.0 and hi < 2
    assert tensor_range(v, "minmax") == (0.0, 50.0)
    with pytest.raises(MnistEdgeError):
        tensor_range(v, "mse")


@pytest.mark.parametrize("name", ["gapnet", "lenet5", "tiny"])
def test_quantized_untrained_model_tracks_float(name: str) -> None:
    torch.manual_seed(1)
    model = _randomize_bn(build_model(name))
    folded = fold_model(model, name)
    pixels = random_pixels(64, 2)
    graph = quantize_graph(folded, calibrate(folded, pixels, "minmax"))
    assert graph.input.scale == INPUT_SCALE and graph.input.zero_point == -128
    kinds = [op.kind for op in graph.ops]
    assert "relu" not in kinds  # ReLU fuses into the output range
    if name == "gapnet":
        assert kinds.count("lut") == 2 and "global_avgpool" in kinds
    if name == "lenet5":
        assert kinds.count("lut") == 4 and kinds.count("avgpool2d") == 2
    q = golden.dequantize(golden.run_int8(graph, pixels), graph.output)
    f = run_float(folded, pixels[:, None] / np.float32(255))
    span = f.max() - f.min()
    assert np.abs(q - f).max() < 0.1 * span


def test_wide_layers_keep_full_resolution_and_sum_exactly() -> None:
    """A 784-input layer whose worst case passes 2^24: no coarsening, exact golden sums."""
    from mnist_edge.fgraph import FloatGraph, FOp
    from mnist_edge.ops.conv import weighted_bound
    from mnist_edge.requant import ACC_LIMIT, requantize_float

    rng = np.random.default_rng(0)
    weight = rng.uniform(0.9, 1.0, size=(2, 784)).astype(np.float32)
    weight[1] *= rng.choice([-1, 1], size=784)
    folded = FloatGraph("wide", [FOp("flatten0", "flatten"), FOp("fc1", "linear", {}, {
        "weight": weight, "bias": np.zeros(2, np.float32)})])
    graph = quantize_graph(folded, calibrate(folded, random_pixels(16, 0), "minmax"))
    fc, x = graph.ops[1], graph.input_of(1)
    np.testing.assert_array_equal(fc.arrays["w_scale"],
                                  (np.abs(weight).max(axis=1) / 127).astype(np.float32))
    assert weighted_bound(fc, [x]) > ACC_LIMIT  # float32 BLAS could round: golden must not
    pixels = np.full((4, 28, 28), 255, np.uint8)
    pixels[1:] = random_pixels(3, 1)
    q = pixels.reshape(4, -1).astype(np.int64) - 128 - x.zero_point
    acc = q @ fc.arrays["weight"].astype(np.int64).T + fc.arrays["bias"]
    assert np.abs(acc).max() > ACC_LIMIT
    want = requantize_float(acc, graph.multiplier(1)[None, :], fc.output.zero_point)
    np.testing.assert_array_equal(golden.run_int8(graph, pixels), want)
