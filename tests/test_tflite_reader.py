"""The `.tflite` reader: real files parse as the schema's own accessors read them, and
hostile or unsupported files are one-line MnistEdgeErrors naming the operator."""

from __future__ import annotations

import collections
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from tflite_fuzz import fuzz

from mnist_edge.backends.tflite_flatbuffer import build
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers.tflite_reader import parse_tflite, read_tflite

MLPERF = Path(__file__).resolve().parent.parent.parent / "shared" / "models" / "mlperf-tiny"
INT8_MODELS = ("pretrainedResnet_quant.tflite", "kws_ref_model.tflite", "vww_96_int8.tflite",
               "ad01_int8.tflite")
FUZZ_MUTATIONS = 2000


def _mlperf(name: str) -> Path:
    path = MLPERF / name
    if not path.is_file():
        print(f"skipped: {path} not found (the MLPerf Tiny models live in ../shared)")
        pytest.skip(f"{path} not found")
    return path


def _refused(data: bytes, *needles: str) -> str:
    with pytest.raises(MnistEdgeError) as info:
        parse_tflite(data, "m.tflite")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("m.tflite: "), msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------ real files
@pytest.mark.parametrize("name", INT8_MODELS + ("pretrainedResnet.tflite",))
def test_reader_agrees_with_generated_accessors(name: str) -> None:
    """Every field we read equals what the `tflite` package's generated code reads."""
    import tflite

    path = _mlperf(name)
    ours = read_tflite(path)
    ref = tflite.Model.GetRootAs(path.read_bytes(), 0)
    sg = ref.Subgraphs(0)
    assert ours.inputs == tuple(sg.InputsAsNumpy()) and ours.outputs == tuple(sg.OutputsAsNumpy())
    assert len(ours.tensors) == sg.TensorsLength()
    for t in ours.tensors:
        r = sg.Tensors(t.index)
        assert t.name == r.Name().decode() and t.shape == tuple(r.ShapeAsNumpy())
        raw = ref.Buffers(r.Buffer()).DataAsNumpy()
        if t.is_constant:
            assert t.data.tobytes() == raw.tobytes() and not t.data.flags.writeable
        q = r.Quantization()
        if t.quantization is not None:
            assert np.array_equal(t.quantization.scale, q.ScaleAsNumpy())
            assert np.array_equal(t.quantization.zero_point, q.ZeroPointAsNumpy())
            assert t.quantization.axis == q.QuantizedDimension()
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if isinstance(v, int)}
    for op in ours.operators:
        r = sg.Operators(op.index)
        code = ref.OperatorCodes(r.OpcodeIndex())
        assert op.op == names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        assert op.inputs == tuple(r.InputsAsNumpy()) and op.outputs == tuple(r.OutputsAsNumpy())
        _check_options(op, r)


def _check_options(op, r) -> None:
    import tflite

    table = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
             "FULLY_CONNECTED": tflite.FullyConnectedOptions,
             "AVERAGE_POOL_2D": tflite.Pool2DOptions, "ADD": tflite.AddOptions,
             "SOFTMAX": tflite.SoftmaxOptions}.get(op.op)
    if table is None:
        return
    opts = table()
    opts.Init(r.BuiltinOptions().Bytes, r.BuiltinOptions().Pos)
    o = op.options
    acts = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
    if op.op == "SOFTMAX":
        assert o["beta"] == opts.Beta()
        return
    assert o["fused_activation"] == acts[opts.FusedActivationFunction()]
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"):
        assert (o["stride_w"], o["stride_h"]) == (opts.StrideW(), opts.StrideH())
        assert o["padding"] == ("SAME", "VALID")[opts.Padding()]
    if op.op == "DEPTHWISE_CONV_2D":
        assert o["depth_multiplier"] == opts.DepthMultiplier()
    if op.op == "AVERAGE_POOL_2D":
        assert (o["filter_w"], o["filter_h"]) == (opts.FilterWidth(), opts.FilterHeight())
    if op.op == "FULLY_CONNECTED":
        assert o["keep_num_dims"] == opts.KeepNumDims()


def test_hybrid_file_is_refused_by_operator() -> None:
    data = _mlperf("kws_ref_model_float32.tflite").read_bytes()
    _refused(data, "operator 0 (CONV_2D)", "hybrid")


# ------------------------------------------------------------------ built files
def _fc_model(**override) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(0)
    tensors = [dict(name="x", shape=[1, 8], dtype="int8", scale=0.05, zero_point=3),
               dict(name="w", shape=[4, 8], dtype="int8", scale=0.01, zero_point=0,
                    data=rng.integers(-127, 128, (4, 8)).astype(np.int8)),
               dict(name="b", shape=[4], dtype="int32", scale=5e-4, zero_point=0,
                    data=np.arange(4, dtype=np.int32)),
               dict(name="y", shape=[1, 4], dtype="int8", scale=0.07, zero_point=-5)]
    ops = [dict(op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3],
                options=dict(fused_activation="RELU"))]
    for i, t in override.pop("tensors", {}).items():
        tensors[i].update(t)
    ops[0].update(override)
    return tensors, ops


def test_built_model_parses() -> None:
    t, o = _fc_model()
    model = parse_tflite(build(t, o, [0], [3]))
    assert model.operators[0].op == "FULLY_CONNECTED" and model.tensors[1].data.shape == (4, 8)


@pytest.mark.parametrize(("case", "needles"), [
    ("shape_vs_buffer", ("tensor 1 'w'", "needs 32 bytes", "holds 16")),
    ("buffer_out_of_range", ("buffer 99",)),
    ("input_out_of_range", ("operator 0 (FULLY_CONNECTED) input index 17",)),
    ("read_before_write", ("operator 0 (FULLY_CONNECTED) reads tensor 0 'x' before",)),
    ("two_subgraphs", ("2 subgraphs",)),
    ("custom_op", ("operator 0", "custom op 'MyOp'",)),
    ("int16", ("operator 0 (FULLY_CONNECTED)", "int16")),
    ("dynamic_shape", ("dynamic shape",)),
    ("unsupported_op", ("operator 0 (LSTM) is not supported",)),
    ("wrong_output_shape", ("operator 0 (FULLY_CONNECTED): output shape [1, 5]",)),
])
def test_hostile_built_files(case: str, needles: tuple[str, ...]) -> None:
    t, o = _fc_model()
    inputs, outputs, subgraphs = [0], [3], 1
    if case == "shape_vs_buffer":
        t[1]["data"] = t[1]["data"][:2]
    elif case == "buffer_out_of_range":
        t[1]["buffer"] = 99
    elif case == "input_out_of_range":
        o[0]["inputs"] = [0, 17, 2]
    elif case == "read_before_write":
        inputs = []
    elif case == "two_subgraphs":
        subgraphs = 2
    elif case == "custom_op":
        o[0].update(op="CUSTOM", custom="MyOp", options={})
    elif case == "int16":
        t[0]["dtype"] = t[3]["dtype"] = "int16"
    elif case == "dynamic_shape":
        t[0]["signature"] = [-1, -1]
    elif case == "unsupported_op":
        o[0].update(op="LSTM", options={})
    elif case == "wrong_output_shape":
        t[3]["shape"] = [1, 5]
    _refused(build(t, o, inputs, outputs, subgraphs), *needles)


# ------------------------------------------------------------------ byte-level damage
def test_truncated_and_foreign_files() -> None:
    data = _mlperf("kws_ref_model.tflite").read_bytes()
    for cut in (0, 3, 8, 100, len(data) // 2, len(data) - 1):
        _refused(data[:cut])
    _refused(b"\x89PNG\r\n\x1a\n" + bytes(100), "TFL3")


def test_vector_length_two_to_the_31_and_offsets_outside() -> None:
    """Overwrite the length of the tensors vector with 2**31 and the root offset with a
    position past the end: both refused without reading or allocating."""
    import tflite

    data = _mlperf("ad01_int8.tflite").read_bytes()
    sg = tflite.Model.GetRootAs(data, 0).Subgraphs(0)
    vec = sg._tab.Vector(sg._tab.Offset(4))  # first tensor offset; the length sits before it
    bad = bytearray(data)
    struct.pack_into("<I", bad, vec - 4, 1 << 31)
    _refused(bytes(bad), "2147483648 elements")
    bad = bytearray(data)
    struct.pack_into("<I", bad, 0, len(data) + 1000)
    _refused(bytes(bad), "outside")


def test_fuzzed_mlperf_files_never_crash() -> None:
    """2,000 mutations (truncations, bit flips, overwritten offsets and lengths): each a
    clean parse or a one-line MnistEdgeError, none slower than 10 s
    (scripts/tflite_fuzz.py runs more)."""
    files = {n: _mlperf(n).read_bytes() for n in INT8_MODELS + ("kws_ref_model_float32.tflite",)}
    counts: collections.Counter = collections.Counter()
    t0 = time.time()
    worst = 0.0
    for _, _, outcome, secs in fuzz(files, FUZZ_MUTATIONS, seed=11):
        counts[outcome] += 1
        worst = max(worst, secs)
    print(f"fuzz: {dict(counts)} in {time.time() - t0:.1f} s, slowest {worst:.3f} s")
    assert sum(counts.values()) == FUZZ_MUTATIONS and counts["refused"] > 0
