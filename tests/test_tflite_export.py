"""`export tflite` and `quantize --arithmetic tflite`: a tflite-arithmetic QGraph written as
an int8 `.tflite` that TFLite Micro runs with golden's numbers.

Round trips: the MLPerf Tiny int8 models and the single-operator fixtures go `.tflite` ->
import -> export -> import to the same QGraph (same hash), and export -> import -> export
is byte-identical. TFLM on each exported file equals golden. Our own quantizer's tflite
arithmetic (the `tiny` run, a DAG with a residual add, a depthwise conv with padding that
is neither SAME nor VALID, a concat and a global pool) exports and runs exactly in TFLM.
Refusals are one line, exit 2, and leave no file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_tflite_fixtures import CASES, _act
from test_tflite_ops import CASES as OP_CASES
from test_tflite_qgraph import MLPERF, VARIANTS, _mlperf

from mnist_edge import api, golden, qgraph
from mnist_edge.backends.tflite import export_tflite, tflite_bytes
from mnist_edge.backends.tflite_flatbuffer import build
from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers.tflite_qgraph import tflite_to_qgraph
from mnist_edge.importers.tflite_reader import parse_tflite
from mnist_edge.probe_inputs import probe_batch
from mnist_edge.quantize.calibrate import calibrate
from mnist_edge.quantize.ptq import quantize_graph
from mnist_edge.testing import random_dag_fgraph, random_inputs, random_pixels

pytest.importorskip("tflite_micro")
from mnist_edge.targets.tflm import from_tflite_output, run_tflm, to_tflite_input  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# the fixtures the importer refuses by name (two inputs, a SOFTMAX over a feature map):
# nothing to export. Their single-input VARIANTS are here.
REFUSED = {"add_broadcast", "mul_broadcast_relu6", "sub", "mul", "concat", "softmax"}
# the later operators' fixtures whose kinds export writes back: MEAN, PAD/PADV2, RESHAPE
LATER = {k: v for k, v in OP_CASES.items() if k.startswith(("mean", "pad", "reshape"))}


def _import(data: bytes, name: str = "m") -> qgraph.QGraph:
    return tflite_to_qgraph(parse_tflite(data, name), name)[0]


def _tflm_equals_golden(graph: qgraph.QGraph, data: bytes, x: np.ndarray) -> None:
    """TFLM running `data` gives golden's bytes on the inputs `x` (the graph's encoding)."""
    model = parse_tflite(data, "exported")
    t_in, t_out = model.tensors[model.inputs[0]], model.tensors[model.outputs[0]]
    q = graph.input_to_int8(x)
    ref = from_tflite_output(graph, run_tflm(data, to_tflite_input(graph, q, t_in)), t_out)
    ours = golden.run_int8(graph, x)
    bad = np.flatnonzero(np.any(ours != ref, axis=1))
    assert not len(bad), f"{len(bad)}/{len(q)} differ; first {bad[0]}: {ours[bad[0]][:8]} " \
                         f"vs tflm {ref[bad[0]][:8]}"


def _round_trip(data: bytes, n: int) -> None:
    graph = _import(data)
    exported = tflite_bytes(graph)
    again = _import(exported)
    assert again.content_hash() == graph.content_hash()
    assert tflite_bytes(again) == exported
    _tflm_equals_golden(graph, exported, probe_batch(graph, n, 3))


@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_model_round_trips_and_tflm_runs_the_export(name: str) -> None:
    _round_trip(_mlperf(name).read_bytes(), 12)


def _pad_then_conv() -> bytes:
    """PAD (the zero point) -> CONV_2D SAME: the importer folds the PAD into the conv's
    padding (2, 1, 1, 3), which is neither SAME nor VALID; the export writes a PAD again."""
    rng = np.random.default_rng(8)
    pads = np.array([[0, 0], [1, 0], [0, 2], [0, 0]], dtype=np.int32)
    tensors = [_act("x", [1, 5, 5, 2], 0.05, 3),
               dict(name="p", shape=[4, 2], dtype="int32", data=pads),
               _act("xp", [1, 6, 7, 2], 0.05, 3),
               dict(name="w", shape=[3, 3, 3, 2], dtype="int8", scale=[0.01, 0.02, 0.015],
                    zero_point=[0] * 3, axis=0,
                    data=rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8)),
               _act("y", [1, 6, 7, 3], 0.08, -5)]
    return build(tensors, [dict(op="PAD", inputs=[0, 1], outputs=[2]),
                           dict(op="CONV_2D", inputs=[2, 3, -1], outputs=[4],
                                options=dict(padding="SAME", stride_w=1, stride_h=1))],
                 [0], [4])


def _depthwise_one_channel() -> bytes:
    """DEPTHWISE_CONV_2D over a single input channel, multiplier 4: a plain convolution,
    imported as one (no groups) and written back as CONV_2D."""
    rng = np.random.default_rng(9)
    scales = rng.uniform(0.002, 0.02, 4)
    tensors = [_act("x", [1, 6, 6, 1], 0.04, -3),
               dict(name="w", shape=[1, 3, 3, 4], dtype="int8", scale=scales,
                    zero_point=[0] * 4, axis=3,
                    data=rng.integers(-127, 128, (1, 3, 3, 4)).astype(np.int8)),
               dict(name="b", shape=[4], dtype="int32", scale=scales * 0.04,
                    zero_point=[0] * 4, data=rng.integers(-900, 900, 4).astype(np.int32)),
               _act("y", [1, 6, 6, 4], 0.08, 5)]
    return build(tensors, [dict(op="DEPTHWISE_CONV_2D", inputs=[0, 1, 2], outputs=[3],
                                options=dict(padding="SAME", stride_w=1, stride_h=1,
                                             depth_multiplier=4))], [0], [3])


FIXTURES = {**{k: v for k, v in CASES.items() if k not in REFUSED},
            **{f"variant_{k}": v for k, v in VARIANTS.items()}, **LATER,
            "pad_conv": _pad_then_conv,
            "depthwise_one_channel": _depthwise_one_channel}


@pytest.mark.parametrize("case", sorted(FIXTURES))
def test_fixture_round_trips_and_tflm_runs_the_export(case: str) -> None:
    _round_trip(FIXTURES[case](), 24)


def test_refused_fixtures_are_refused_on_import() -> None:
    """The fixtures left out above are left out because the importer refuses them."""
    for case in REFUSED:
        with pytest.raises(MnistEdgeError):
            _import(CASES[case]())


def test_folded_pad_comes_back_as_a_pad() -> None:
    graph = _import(_pad_then_conv())
    assert graph.ops[0].attrs["padding"] == [2, 1, 1, 3]
    model = parse_tflite(tflite_bytes(graph), "e")
    assert [op.op for op in model.operators] == ["PAD", "CONV_2D"]


def test_depthwise_over_one_channel_is_a_conv() -> None:
    data = _depthwise_one_channel()
    graph = _import(data)
    assert "groups" not in graph.ops[0].attrs
    assert [op.op for op in parse_tflite(tflite_bytes(graph), "e").operators] == ["CONV_2D"]
    _tflm_equals_golden(graph, data, probe_batch(graph, 24, 1))  # the original file too


def _dag(arithmetic: str = "tflite") -> qgraph.QGraph:
    """random_dag_fgraph with its GELU (no TFLite builtin) a sigmoid and its tanh a ReLU
    (a concat input keeps the concat's scale, which a TANH's fixed 1/128 cannot)."""
    fg = random_dag_fgraph(4)
    kinds = {"gelu": "sigmoid", "tanh": "relu"}
    for op in fg.ops:
        op.kind = kinds.get(op.kind, op.kind)
    return quantize_graph(fg, calibrate(fg, random_pixels(64, 4), "minmax"), arithmetic)


def test_quantized_dag_exports_and_tflm_equals_golden() -> None:
    graph = _dag()
    assert graph.arithmetic == "tflite"
    kinds = {op.kind for op in graph.ops}
    assert {"add", "concat", "avgpool2d", "lut"} <= kinds and "global_avgpool" not in kinds
    lut = next(op for op in graph.ops if op.attrs.get("activation") == "logistic")
    assert (lut.output.scale, lut.output.zero_point) == (1 / 256, -128)
    data = tflite_bytes(graph)
    ops = [op.op for op in parse_tflite(data, "dag").operators]
    assert {"PAD", "DEPTHWISE_CONV_2D", "LOGISTIC", "ADD", "CONCATENATION",
            "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"} <= set(ops)
    _tflm_equals_golden(graph, data, random_inputs(graph, 64, 1))
    assert tflite_bytes(_dag()) == data  # deterministic


def test_default_arithmetic_is_unchanged() -> None:
    """`arithmetic` is a parameter of the one quantizer: the default graph is the onnx one,
    and the tflite graph differs only where TFLM constrains it."""
    fg = random_dag_fgraph(4)
    ranges = calibrate(fg, random_pixels(64, 4), "minmax")
    assert quantize_graph(fg, ranges).content_hash() == \
        quantize_graph(fg, ranges, "onnx").content_hash()
    assert quantize_graph(fg, ranges).arithmetic == "onnx"


def test_activation_without_a_builtin_is_refused_by_name() -> None:
    fg = random_dag_fgraph(4)  # its GELU has no TFLite builtin
    ranges = calibrate(fg, random_pixels(16, 4), "minmax")
    with pytest.raises(MnistEdgeError, match="op g1: gelu has no TFLite builtin"):
        quantize_graph(fg, ranges, "tflite")


def test_non_tflm_table_is_refused() -> None:
    graph = _dag()
    lut = next(op for op in graph.ops if op.kind == "lut")
    lut.arrays["table"] = np.roll(lut.arrays["table"], 1)
    with pytest.raises(MnistEdgeError, match="not TFLM's"):
        tflite_bytes(graph)


def test_onnx_graph_is_refused_and_nothing_written(tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    with pytest.raises(MnistEdgeError, match="onnx arithmetic; only a tflite-arithmetic"):
        export_tflite(_dag("onnx"), out)
    assert list(tmp_path.iterdir()) == []


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_edge.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def tiny_tflite(tiny_run: Path, mnist_dir: Path, tmp_path_factory) -> Path:
    """A copy of the trained `tiny` run, quantized again in the tflite arithmetic."""
    run = tmp_path_factory.mktemp("tfl") / "tiny"
    shutil.copytree(tiny_run, run)
    r = _cli("quantize", str(run), "--arithmetic", "tflite", "--calib-images", "300",
             "--data", str(mnist_dir), cwd=run.parent)
    assert r.returncode == 0, r.stderr
    assert "tflite arithmetic" in r.stdout
    return run


def test_cli_quantize_tflite_export_and_tflm_on_mnist(tiny_tflite: Path, mnist_dir: Path
                                                      ) -> None:
    run = tiny_tflite
    assert qgraph.load_run(run).arithmetic == "tflite"
    r = _cli("export", "tflite", str(run), "-o", "out/tiny.tflite", cwd=run.parent)
    assert r.returncode == 0, r.stderr
    out = run.parent / "out" / "tiny.tflite"
    assert r.stdout.strip() == f"wrote {Path('out/tiny.tflite')}"
    again = api.load(run).export_tflite(run.parent / "again.tflite")
    assert out.read_bytes() == again.read_bytes()
    # not imported from a .tflite: tflm runs the QGraph's export, and says so
    figures = api.load(run).validate("tflm", data=str(mnist_dir), limit=300,
                                     progress=False).backends["tflm"]
    assert figures["exact_logit_fraction"] == 1.0 and figures["images"] == 300
    assert "export" in figures["tflite"]
    r = _cli("validate", str(run), "--backend", "tflm", "--data", str(mnist_dir), "--limit",
             "300", cwd=run.parent)
    assert r.returncode == 0, r.stderr
    assert "exact logits 100.0000%" in r.stdout and "on 300 images" in r.stdout


def test_cli_refusals_are_one_line_and_write_nothing(tiny_run: Path, tmp_path: Path) -> None:
    """The onnx-arithmetic `tiny` run cannot be written as a .tflite; tflm refuses it too."""
    out = tmp_path / "m.tflite"
    cases = [
        (["export", "tflite", str(tiny_run), "-o", str(out)],
         "is in the onnx arithmetic; only a tflite-arithmetic graph is written as a .tflite"),
        (["export", "onnx", str(tiny_run), "-o", str(out)], "-o/--out applies to export tflite"),
        (["export", "tflite", str(tiny_run), "--format", "qdq"],
         "--format and --activations apply to export onnx"),
        (["validate", str(tiny_run), "--backend", "tflm", "--limit", "5"],
         "its QGraph is in the onnx arithmetic"),
    ]
    for args, words in cases:
        r = _cli(*args, cwd=tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and words in lines[0], (args, r.stderr)
    assert not out.exists() and not (tiny_run / "model.int8.tflite").exists()
