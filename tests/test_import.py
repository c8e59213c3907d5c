"""Import of real exported ONNX files (PyTorch TorchScript + dynamo, Keras 3 on torch).

Each file is made on the fly by `tests/exporters.py` (small models trained for seconds);
`import_onnx` itself refuses any file whose float graph differs from onnxruntime, so an
import that returns is a float check that passed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import exporters as E
import numpy as np
import pytest

from mnist_edge import fgraph
from mnist_edge.importers import import_onnx

pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript: scripts/setup.sh")
CHECK = 300  # test images of the float check (the CLI uses 1,000)
EXPECTED = {"residual": {"add"}, "concat": {"concat"}, "gelu_silu": {"gelu", "silu"},
            "depthwise": {"conv2d", "global_avgpool"},
            "activations": {"leaky_relu", "clip", "elu", "hardsigmoid", "hardswish"}}


def _import(tmp_path: Path, path: Path, name: str, **kw):
    run_dir, doc = import_onnx(path, tmp_path / "runs", name, check_images=CHECK, **kw)
    assert (run_dir / f"{name}.fgraph.json").exists() and (run_dir / "import.json").exists()
    assert doc["float_check"]["relative_diff"] <= 1e-4
    assert doc["float_check"]["argmax_agreement"] == 1.0
    return run_dir, doc


@pytest.mark.parametrize("exporter", E.EXPORTERS)
@pytest.mark.parametrize("key", E.TORCH_MODELS)
def test_torch_export_imports(tmp_path: Path, mnist_dir: Path, key: str, exporter: str) -> None:
    path = E.exported(key, exporter, str(mnist_dir))
    run_dir, doc = _import(tmp_path, path, key)
    assert EXPECTED.get(key, {"conv2d", "linear"}) <= set(doc["ops"])
    assert doc["layout"] == "nchw" and doc["input_norm"] is None
    if key == "activations":
        assert {d["op_type"] for d in doc["dropped"]} == {"LogSoftmax"}
        assert doc["argmax_unchanged"] is True
    graph = fgraph.load(fgraph.find_in_run(run_dir))
    if key == "depthwise":
        assert [op.attrs["groups"] for op in graph.ops if op.kind == "conv2d"] == [1, 8, 1, 16, 1]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["import"]["float_max_abs_diff_vs_onnxruntime"] >= 0


def test_batchnorm_nodes_fold(tmp_path: Path, mnist_dir: Path) -> None:
    """The TorchScript export without constant folding keeps BatchNormalization nodes."""
    import onnx

    path = E.exported("bn_dropout", "torchscript", str(mnist_dir))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" in ops
    _, doc = _import(tmp_path, path, "bn")
    assert [f["op_type"] for f in doc["folded"]] == ["BatchNormalization"] * 2
    assert "BatchNormalization" not in doc["ops"]


@pytest.mark.parametrize("key", E.KERAS_MODELS)
def test_keras_export_imports(tmp_path: Path, mnist_dir: Path, key: str) -> None:
    """Channels-last: Transposes around every Conv/MaxPool, NHWC flatten before Dense."""
    if not E.have_keras():
        pytest.skip("keras (torch backend) not installed: scripts/setup.sh")
    path = E.exported(key, "keras", str(mnist_dir))
    run_dir, doc = _import(tmp_path, path, key)
    assert doc["layout"] == "nhwc"
    assert "Softmax" in {d["op_type"] for d in doc["dropped"]}
    graph = fgraph.load(fgraph.find_in_run(run_dir))
    if key == "keras_simple":  # TF-style 'same' with stride 2 pads only bottom/right
        assert graph.ops[0].attrs["padding"] == [0, 0, 1, 1]
        assert graph.ops[0].attrs["stride"] == [2, 2]


@pytest.mark.parametrize("opset", [8, 11, 13, 21])
def test_opsets(tmp_path: Path, mnist_dir: Path, opset: int) -> None:
    exporter = "dynamo" if opset > 17 else "torchscript"
    path = E.exported("plain", exporter, str(mnist_dir), opset=opset)
    import onnx

    assert onnx.load(str(path)).opset_import[0].version == opset
    _import(tmp_path, path, f"plain{opset}")


def test_external_data_and_initializers_as_inputs(tmp_path: Path, mnist_dir: Path) -> None:
    """Weights in model.onnx.data, and initializers also listed as graph inputs (old style)."""
    import onnx

    model = onnx.load(str(E.exported("plain", "dynamo", str(mnist_dir))))
    for init in model.graph.initializer:
        model.graph.input.append(onnx.helper.make_tensor_value_info(
            init.name, init.data_type, list(init.dims)))
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(model, str(src / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert (src / "model.onnx.data").stat().st_size > 4 * 1000
    _, doc = _import(tmp_path, src / "model.onnx", "external")
    assert len(doc["sha256"]) == 64


def test_normalize_option_and_in_model_normalization(tmp_path: Path, mnist_dir: Path) -> None:
    """Normalize((0.1307,), (0.3081,)) outside (--normalize) or inside the model (Sub/Div)."""
    import torch

    path = E.exported("normalized", "dynamo", str(mnist_dir))
    _, doc = _import(tmp_path, path, "outside", normalize=(0.1307, 0.3081))
    assert doc["input_norm"] == pytest.approx([0.1307, 0.3081])

    class Inside(torch.nn.Module):
        def __init__(self, body: torch.nn.Module) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body((x - 0.1307) / 0.3081)

    inside = E.export_torch(Inside(E.torch_model("normalized", str(mnist_dir))),
                            tmp_path / "inside.onnx", "torchscript")
    run_dir, doc = _import(tmp_path, inside, "inside")
    assert doc["input_norm"] == pytest.approx([0.1307, 0.3081], rel=1e-6)
    graph = fgraph.load(fgraph.find_in_run(run_dir))
    assert graph.input_norm == pytest.approx((0.1307, 0.3081), rel=1e-6)


def test_cli_import_and_build_from(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    from mnist_edge.cli import main

    path = E.exported("plain", "torchscript", str(mnist_dir))
    runs = tmp_path / "runs"
    assert main(["import", str(path), "--name", "mine", "--runs", str(runs), "--data",
                 str(mnist_dir)]) == 0
    assert "float check vs onnxruntime" in capsys.readouterr().out
    info = json.loads((runs / "mine" / "import.json").read_text())
    assert info["float_check"]["images"] == 1000
    assert main(["quantize", str(runs / "mine"), "--qat-epochs", "1", "--data",
                 str(mnist_dir)]) == 2
    assert "post-training only" in capsys.readouterr().err
    code = main(["build", "--from", str(path), "--name", "built", "--runs", str(runs),
                 "--calib-images", "200", "--backends", "onnxruntime", "--data",
                 str(mnist_dir)])
    assert code == 0, capsys.readouterr()
    report = json.loads((runs / "built" / "report.json").read_text())
    assert report["backends"]["onnxruntime"]["exact_logit_fraction"] == 1.0
    assert report["int8_float_agreement"] > 0.9


# ------------------------------------------------------------------ one frontend
def _zoo_module(name: str):
    import torch

    from mnist_edge.models import build_model

    torch.manual_seed(1)
    model = build_model(name)
    for m in model.modules():  # non-trivial BatchNorm statistics, so folding is exercised
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("zoo", ["edge", "gapnet", "simplecnn", "kerascnn", "lenet5", "mlp",
                                 "tiny"])
def test_zoo_through_importer_equals_fold_model(tmp_path: Path, mnist_dir: Path,
                                                zoo: str) -> None:
    """One frontend: torch.onnx.export + import gives fold_model's graph for every zoo model."""
    from mnist_edge import data
    from mnist_edge.quantize.fold import fold_model

    model = _zoo_module(zoo)
    path = E.export_torch(model, tmp_path / f"{zoo}.onnx", "torchscript")
    _, doc = _import(tmp_path, path, zoo)
    imported = fgraph.load(fgraph.find_in_run(tmp_path / "runs" / zoo))
    folded = fold_model(model, zoo)
    assert [(o.kind, o.attrs) for o in imported.ops] == [(o.kind, o.attrs) for o in folded.ops]
    for a, b in zip(imported.ops, folded.ops, strict=True):
        assert sorted(a.arrays) == sorted(b.arrays)
        for k in a.arrays:
            np.testing.assert_allclose(a.arrays[k], b.arrays[k], rtol=2e-6, atol=1e-7,
                                       err_msg=f"{zoo} {a.name}.{k}")
    images = data.load_mnist("test", str(mnist_dir))[0][:200, None] / np.float32(255)
    np.testing.assert_allclose(fgraph.run_float(imported, images),
                               fgraph.run_float(folded, images), rtol=0, atol=1e-5)


# ------------------------------------------------------------------ end to end
E2E = [("plain", "dynamo"), ("bn_dropout", "torchscript"),
       ("depthwise", "dynamo"), ("keras_cnn", "keras"), ("keras_simple", "keras"),
       ("residual", "dynamo"), ("concat", "torchscript"), ("gelu_silu", "dynamo"),
       ("activations", "torchscript"), ("normalized", "dynamo")]
QEMU = {("plain", "dynamo"), ("keras_cnn", "keras"), ("residual", "dynamo")}


@pytest.mark.parametrize("key,exporter", E2E)
def test_end_to_end(tmp_path: Path, mnist_dir: Path, key: str, exporter: str) -> None:
    """import -> quantize -> validate onnxruntime, c, c-int, hls (and qemu-m4): bit-exact."""
    from mnist_edge import golden, pipeline, qgraph
    from mnist_edge.quantize import quantize_run

    if exporter == "keras" and not E.have_keras():
        pytest.skip("keras (torch backend) not installed: scripts/setup.sh")
    normalize = (0.1307, 0.3081) if key == "normalized" else None
    run_dir, _ = _import(tmp_path, E.exported(key, exporter, str(mnist_dir)), key,
                         normalize=normalize)
    quantize_run(run_dir, str(mnist_dir), "percentile", 200)
    images, _ = pipeline.test_set(str(mnist_dir), 200)
    graph = qgraph.load_run(run_dir)
    q = golden.run_int8(graph, images)
    f = fgraph.run_float(fgraph.load(fgraph.find_in_run(run_dir)), images[:, None] / 255.0)
    agreement = float(np.mean(golden.predict(q) == np.argmax(f, axis=1)))
    assert agreement >= 0.95, f"int8/float top-1 agreement {agreement:.1%}"
    # The int8 logits track the float ones (a wrong LUT or input mapping would not).
    error = np.abs(golden.dequantize(q, graph.output) - f).max() / np.ptp(f)
    print(f"{key}: agreement {agreement:.1%}, max |int8 - float| {error:.3f} of the range")
    assert error < 0.1, f"dequantized int8 logits off by {error:.1%} of the float range"
    backends = ["onnxruntime", "c", "c-int"]
    if shutil.which("g++"):
        backends.append("hls")
    if (key, exporter) in QEMU and shutil.which("qemu-system-arm") and shutil.which(
            "arm-none-eabi-gcc"):
        assert pipeline.all_exact(pipeline.validate_run(run_dir, ["qemu-m4"], str(mnist_dir), 20))
    assert pipeline.all_exact(pipeline.validate_run(run_dir, backends, str(mnist_dir), 100))


# ------------------------------------------------------------------ FloatGraph v2
def test_fgraph_v2_roundtrip_and_old_files(tmp_path: Path) -> None:
    """inputs and input_norm survive save/load; a v1 chain file (neither) still loads."""
    rng = np.random.default_rng(0)
    conv = fgraph.FOp("c", "conv2d", {"kernel": [3, 3], "stride": [1, 1],
                                      "padding": [1, 1, 1, 1], "groups": 1},
                      {"weight": rng.normal(size=(2, 1, 3, 3)).astype(np.float32),
                       "bias": np.zeros(2, np.float32)})
    ops = [conv, fgraph.FOp("a", "leaky_relu", {"alpha": 0.2}),
           fgraph.FOp("s", "add", inputs=["c", "a"]),
           fgraph.FOp("k", "concat", {"axis": 1}, inputs=["s", "c"]),
           fgraph.FOp("g", "global_avgpool"), fgraph.FOp("f", "flatten"),
           fgraph.FOp("l", "linear", {}, {"weight": rng.normal(size=(3, 4)).astype(np.float32),
                                          "bias": np.zeros(3, np.float32)})]
    graph = fgraph.FloatGraph("dag", ops, (0.5, 0.25))
    assert [o.inputs for o in graph.ops][:2] == [["input"], ["c"]]
    fgraph.save(graph, tmp_path / "dag")
    back = fgraph.load(tmp_path / "dag")
    assert back.input_norm == (0.5, 0.25) and [o.inputs for o in back.ops] == [
        o.inputs for o in graph.ops]
    x = rng.uniform(0, 1, size=(5, 1, 28, 28)).astype(np.float32)
    logits, outs = fgraph.run_float(back, x, trace=True)
    # by hand: normalize, conv, leaky, add, concat, mean, linear
    h = (x - 0.5) / 0.25
    c = outs[0]
    a = np.where(c >= 0, c, 0.2 * c)
    np.testing.assert_allclose(outs[2], c + a, rtol=1e-6)
    pooled = np.concatenate([c + a, c], axis=1).mean(axis=(2, 3))
    np.testing.assert_allclose(logits, pooled @ ops[-1].arrays["weight"].T, rtol=1e-4, atol=1e-5)
    assert len(outs) == len(ops) and h.shape == x.shape
    doc = json.loads((tmp_path / "dag.fgraph.json").read_text())
    for o in doc["ops"]:
        del o["inputs"]
    doc["ops"] = [o for o in doc["ops"] if o["name"] in ("c", "a")]
    del doc["input_norm"]
    (tmp_path / "old.fgraph.json").write_text(json.dumps(doc))
    shutil.copy(tmp_path / "dag.fgraph.npz", tmp_path / "old.fgraph.npz")
    old = fgraph.load(tmp_path / "old")
    assert old.input_norm is None and [o.inputs for o in old.ops] == [["input"], ["c"]]
    with pytest.raises(fgraph.MnistEdgeError, match="reads"):
        fgraph.FloatGraph("bad", [fgraph.FOp("s", "add", inputs=["input", "nothing"])])


def test_activation_fn_matches_torch() -> None:
    import torch
    from torch import nn

    v = np.linspace(-8, 8, 1601)
    t = torch.from_numpy(v)
    pairs = {("leaky_relu", (("alpha", 0.1),)): nn.LeakyReLU(0.1), ("elu", (("alpha", 0.5),)):
             nn.ELU(0.5), ("hardsigmoid", (("alpha", 1 / 6), ("beta", 0.5))): nn.Hardsigmoid(),
             ("hardswish", ()): nn.Hardswish(), ("silu", ()): nn.SiLU(),
             ("clip", (("min", 0.0), ("max", 6.0))): nn.ReLU6()}
    for (kind, attrs), module in pairs.items():
        np.testing.assert_allclose(fgraph.activation_fn(kind, dict(attrs))(v),
                                   module(t).numpy(), rtol=1e-12, atol=1e-12, err_msg=kind)
    assert set(fgraph.ACTIVATIONS) >= {"relu", "gelu", "silu", "clip", "hardswish"}


def test_static_batch_export(tmp_path: Path, mnist_dir: Path) -> None:
    """Exported without a dynamic axis (batch fixed at 3): the check runs in batches of 3."""
    import torch

    path = tmp_path / "static.onnx"
    torch.onnx.export(E.torch_model("plain", str(mnist_dir)), (torch.zeros(3, 1, 28, 28),),
                      str(path), dynamo=False)
    _import(tmp_path, path, "static")
