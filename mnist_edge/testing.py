"""Random but valid QGraphs, for testing every backend on every op kind."""

from __future__ import annotations

import numpy as np

from . import golden
from .fgraph import FloatGraph, FOp
from .ops import REGISTRY
from .qgraph import INPUT_SCALE, INPUT_ZERO_POINT, QGraph, QOp, QTensor, expected_output_shape

# Two layouts that between them use every op kind, odd sizes, strides and groups.
LAYOUTS: dict[str, list[tuple[str, dict]]] = {
    "mixed": [
        ("conv2d", {"cout": 4, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1]}),
        ("lut", {}),
        ("maxpool2d", {"kernel": [2, 2], "stride": [2, 2]}),
        ("conv2d", {"cout": 6, "kernel": [3, 3], "stride": [2, 2], "padding": [0, 1, 1, 0]}),
        ("avgpool2d", {"kernel": [2, 2], "stride": [2, 2]}),
        ("conv2d", {"cout": 6, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1],
                    "groups": 2}),
        ("global_avgpool", {}),
        ("flatten", {}),
        ("linear", {"cout": 10}),
    ],
    "dense": [
        ("conv2d", {"cout": 3, "kernel": [5, 5], "stride": [1, 1], "padding": [0, 0, 0, 0]}),
        ("maxpool2d", {"kernel": [3, 3], "stride": [2, 2]}),
        ("flatten", {}),
        ("linear", {"cout": 12}),
        ("lut", {}),
        ("linear", {"cout": 10}),
    ],
    # Every op kind as the first op: each must read the pixels' int8 form q = p - 128
    # (only a conv that is their sole reader takes the raw pixels). "from" names the
    # tensors an op reads (default: the op before it).
    "linear-first": [
        ("flatten", {}),
        ("linear", {"cout": 24}),
        ("lut", {}),
        ("linear", {"cout": 10}),
    ],
    "maxpool-first": [
        ("maxpool2d", {"kernel": [2, 2], "stride": [2, 2]}),
        ("conv2d", {"cout": 3, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1]}),
        ("flatten", {}),
        ("linear", {"cout": 10}),
    ],
    "avgpool-first": [
        ("avgpool2d", {"kernel": [3, 3], "stride": [2, 2]}),
        ("conv2d", {"cout": 4, "kernel": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]}),
        ("global_avgpool", {}),
        ("flatten", {}),
        ("linear", {"cout": 10}),
    ],
    "gap-first": [
        ("global_avgpool", {}),
        ("flatten", {}),
        ("linear", {"cout": 10}),
    ],
    "lut-first": [  # then a 9x9 conv on one int8 channel: the generic kernel
        ("lut", {}),
        ("conv2d", {"cout": 3, "kernel": [9, 9], "stride": [2, 2], "padding": [0, 1, 1, 0]}),
        ("flatten", {}),
        ("linear", {"cout": 10}),
    ],
    "add-first": [
        ("lut", {}),
        ("add", {"from": ["input", "lut0"]}),
        ("conv2d", {"cout": 2, "kernel": [5, 5], "stride": [3, 3], "padding": [0, 0, 0, 0]}),
        ("flatten", {}),
        ("linear", {"cout": 10}),
    ],
    "concat-first": [
        ("concat", {"from": ["input", "input"]}),
        ("conv2d", {"cout": 3, "kernel": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1],
                    "groups": 1}),
        ("flatten", {}),
        ("lut", {}),
        ("linear", {"cout": 10}),
    ],
}
FIRST_OP_LAYOUTS = tuple(k for k in LAYOUTS if k.endswith("-first"))
# Inputs other than 1x28x28 pixels: (shape, encoding, zero point; None: raw pixels).
LAYOUT_INPUTS: dict[str, tuple[tuple[int, ...], str, int | None]] = {
    "rgb": ((3, 20, 18), "uint8", 17),  # channels that differ, an odd width
    "features": ((1, 49, 10), "int8", -7),  # audio features, int8 with a zero point
    "vector": ((40,), "int8", 5),  # a feature vector
    "rgb-lut": ((3, 12, 12), "uint8", -128),  # raw RGB pixels, normalised by a LUT
    "grey32": ((1, 32, 32), "uint8", None),  # one channel of raw pixels, not 28x28
}
LAYOUTS.update({
    "rgb": [
        ("conv2d", {"cout": 5, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1]}),
        ("maxpool2d", {"kernel": [2, 2], "stride": [2, 2]}),
        ("conv2d", {"cout": 6, "kernel": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1],
                    "groups": 1}),
        ("flatten", {}),
        ("linear", {"cout": 7}),
    ],
    "features": [
        ("conv2d", {"cout": 4, "kernel": [10, 4], "stride": [2, 2], "padding": [4, 1, 5, 2]}),
        ("conv2d", {"cout": 4, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1],
                    "groups": 4}),
        ("conv2d", {"cout": 6, "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0, 0, 0]}),
        ("avgpool2d", {"kernel": [5, 5], "stride": [5, 5]}),
        ("flatten", {}),
        ("linear", {"cout": 12}),
    ],
    "vector": [
        ("linear", {"cout": 16}),
        ("lut", {}),
        ("linear", {"cout": 40}),
    ],
    "rgb-lut": [
        ("lut", {}),
        ("conv2d", {"cout": 4, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1]}),
        ("global_avgpool", {}),
        ("flatten", {}),
        ("linear", {"cout": 3}),
    ],
})
LAYOUTS["grey32"] = [
    ("conv2d", {"cout": 4, "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1, 1, 1]}),
    ("maxpool2d", {"kernel": [2, 2], "stride": [2, 2]}),
    ("conv2d", {"cout": 6, "kernel": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1]}),
    ("flatten", {}),
    ("linear", {"cout": 5}),
]
# The layouts whose inputs are not MNIST's image format (grey32 is, at another size: the
# demo and the web page test it).
SHAPE_LAYOUTS = ("rgb", "features", "vector", "rgb-lut")


def _accumulators(op: QOp, x: QTensor, h: np.ndarray) -> np.ndarray:
    centred = h.astype(np.float32) - np.float32(x.zero_point)
    if op.kind == "linear":
        return centred @ op.arrays["weight"].astype(np.float32).T
    return golden.conv_sum(golden.pad_hw(centred, op.attrs["padding"]), op.arrays["weight"],
                           op.attrs)


def _scale(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def random_qgraph(seed: int = 0, layout: str = "mixed") -> QGraph:
    """A QGraph with random weights, scales and zero points that passes validate()."""
    rng = np.random.default_rng(seed)
    shape, encoding, zero_point = LAYOUT_INPUTS.get(layout, ((1, 28, 28), "uint8", None))
    if zero_point is None:  # raw pixels: real p / 255
        graph_input = QTensor(shape, INPUT_SCALE, INPUT_ZERO_POINT)
    else:
        graph_input = QTensor(shape, _scale(rng, 0.01, 0.1), zero_point)
    tensors = {"input": graph_input}
    raw = random_input_values(shape, encoding, 32, seed)
    values = {"input": raw if encoding == "int8" else golden.pixels_to_int8(raw)}
    previous = "input"
    ops: list[QOp] = []
    for i, (kind, spec) in enumerate(LAYOUTS[layout]):
        name = f"{kind}{i}"
        inputs = list(spec.get("from", [previous]))
        ins = [tensors[n] for n in inputs]
        x, h = ins[0], values[inputs[0]]
        attrs = {k: v for k, v in spec.items() if k not in ("cout", "from")}
        arrays: dict[str, np.ndarray] = {}
        if kind in ("conv2d", "linear"):
            cout = spec["cout"]
            groups = spec.get("groups", 1)
            fan_in = x.shape[0] // groups
            wshape = (cout, fan_in, *spec["kernel"]) if kind == "conv2d" else (cout, x.shape[0])
            w = rng.integers(-127, 128, size=wshape).astype(np.int8)
            arrays = {
                "weight": w,
                "bias": rng.integers(-2000, 2000, size=cout).astype(np.int32),
                "w_scale": np.exp(rng.uniform(-7, -4, size=cout)).astype(np.float32),
            }
            # Pick the output scale from real accumulators so outputs span the int8 range.
            probe = QOp(name, kind, QTensor((), 1.0, 0), attrs, arrays)
            probe.output.shape = expected_output_shape(probe, x)
            acc = _accumulators(probe, x, h)
            spread = float(np.percentile(np.abs(acc), 99)) + 1.0
            real = spread * x.scale * float(np.median(arrays["w_scale"]))
            out_scale = _scale(rng, real / 150, real / 60)
            zp = int(rng.integers(-60, 60))
        elif kind in ("avgpool2d", "global_avgpool", "add", "concat"):
            widest = max(t.scale for t in ins)
            out_scale = _scale(rng, widest * 0.5, widest * 2)
            zp = int(rng.integers(-128, 128))
        elif kind == "lut":
            arrays = {"table": rng.integers(-128, 128, size=256).astype(np.int8)}
            out_scale, zp = _scale(rng, 0.01, 0.1), int(rng.integers(-128, 128))
        else:
            out_scale, zp = x.scale, x.zero_point
        op = QOp(name, kind, QTensor((), out_scale, zp), attrs, arrays, inputs)
        op.output.shape = expected_output_shape(op, ins)
        ops.append(op)
        values[name] = REGISTRY[kind].golden(op, [values[n] for n in inputs], ins)
        tensors[name] = op.output
        previous = name
    graph = QGraph(f"random-{layout}-{seed}", graph_input, ops, input_encoding=encoding)
    graph.validate()
    return graph


def random_pixels(n: int, seed: int = 0, hw: tuple[int, ...] = (28, 28)) -> np.ndarray:
    """MNIST-like pixels [n, *hw]: mostly 0 with bright strokes, plus the extremes 0 and 255."""
    rng = np.random.default_rng(seed)
    shape = (n, *hw)
    p = np.where(rng.random(shape) < 0.2, rng.integers(0, 256, shape), 0)
    return p.astype(np.uint8)


def random_inputs(graph: QGraph, n: int, seed: int = 0) -> np.ndarray:
    """Seeded inputs [n, *input shape] in the graph's encoding."""
    return random_input_values(tuple(graph.input.shape), graph.input_encoding, n, seed)


def random_input_values(shape: tuple[int, ...], encoding: str, n: int,
                        seed: int = 0) -> np.ndarray:
    """MNIST-like strokes for one-channel uint8 images, uniform bytes otherwise."""
    if encoding == "uint8" and len(shape) == 3 and shape[0] == 1:
        return random_pixels(n, seed, shape[1:])[:, None]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8).view(np.dtype(encoding))


def random_dag_fgraph(seed: int = 0) -> FloatGraph:
    """A small float graph with a residual add, a depthwise conv and a channel concat."""
    rng = np.random.default_rng(seed)

    def conv(name: str, cin: int, cout: int, k: int, inputs: list[str], **attrs) -> FOp:
        groups = attrs.get("groups", 1)
        w = rng.normal(0, 1 / np.sqrt(cin // groups * k * k), (cout, cin // groups, k, k))
        return FOp(name, "conv2d", {"kernel": [k, k], "stride": attrs.get("stride", [1, 1]),
                                    "padding": attrs.get("padding", [0, 0, 0, 0]),
                                    "groups": groups},
                   {"weight": w.astype(np.float32),
                    "bias": rng.normal(0, 0.1, cout).astype(np.float32)}, inputs)

    ops = [
        conv("c0", 1, 4, 3, ["input"], padding=[1, 1, 1, 1]),
        FOp("r0", "relu", inputs=["c0"]),
        FOp("p0", "maxpool2d", {"kernel": [2, 2], "stride": [2, 2]}, inputs=["r0"]),
        conv("c1", 4, 4, 3, ["p0"], padding=[1, 1, 1, 1]),
        FOp("g1", "gelu", inputs=["c1"]),
        FOp("a0", "add", inputs=["p0", "g1"]),
        FOp("r1", "relu", inputs=["a0"]),
        conv("c2", 4, 4, 3, ["r1"], stride=[2, 2], padding=[0, 1, 1, 0], groups=4),
        conv("c3", 4, 3, 1, ["r1"], stride=[2, 2]),
        FOp("t3", "tanh", inputs=["c3"]),
        FOp("cat", "concat", inputs=["c2", "t3"]),
        FOp("gap", "global_avgpool", inputs=["cat"]),
        FOp("flat", "flatten", inputs=["gap"]),
        FOp("fc", "linear", {}, {"weight": rng.normal(0, 0.5, (10, 7)).astype(np.float32),
                                 "bias": rng.normal(0, 0.1, 10).astype(np.float32)}, ["flat"]),
    ]
    return FloatGraph(f"random-dag-{seed}", ops)


def random_dag_qgraph(seed: int = 0) -> QGraph:
    """random_dag_fgraph quantized by the real quantizer, calibrated on random pixels."""
    from .quantize.calibrate import calibrate
    from .quantize.ptq import quantize_graph

    fg = random_dag_fgraph(seed)
    return quantize_graph(fg, calibrate(fg, random_pixels(64, seed), "minmax"))


def seeded_zoo_qgraph(name: str, calibration: np.ndarray, seed: int = 0) -> QGraph:
    """Zoo model `name` with seeded random weights, folded, calibrated on `calibration`
    (uint8 pixels) and quantized: a real QGraph of the zoo's shape without a training run."""
    import torch

    from .models import build_model
    from .quantize.calibrate import calibrate
    from .quantize.fold import fold_model
    from .quantize.ptq import quantize_graph

    torch.manual_seed(seed)
    folded = fold_model(build_model(name).eval(), name)
    return quantize_graph(folded, calibrate(folded, calibration, "minmax"))
