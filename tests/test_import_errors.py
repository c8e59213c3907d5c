"""Bad ONNX files: one-line error, exit 2, no run folder left behind."""

from __future__ import annotations

from pathlib import Path

import exporters as E
import numpy as np
import pytest

from mnist_edge.cli import main


def _cli(capsys, *args: str) -> tuple[int, str]:
    """The CLI in-process (a subprocess would spend seconds importing torch)."""
    code = main(list(args))
    return code, capsys.readouterr().err


def _refused(tmp_path: Path, mnist_dir: Path, path: Path, *words: str, capsys=None) -> str:
    runs = tmp_path / "runs"
    code, err = _cli(capsys, "import", str(path), "--name", "bad", "--runs", str(runs),
                     "--data", str(mnist_dir))
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("mnist-edge: error:")]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    assert not (runs / "bad").exists()
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
    return lines[0]


def _tiny_model(nodes, inits, out_shape=(None, 10), in_shape=(None, 1, 28, 28)):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_not_onnx(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\n" * 20)
    _refused(tmp_path, mnist_dir, path, "notes.onnx", "ONNX", capsys=capsys)


def test_missing_file(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    _refused(tmp_path, mnist_dir, tmp_path / "nothere.onnx", "no such file", capsys=capsys)


def test_truncated_file(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    data = E.exported("plain", "torchscript", str(mnist_dir)).read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    _refused(tmp_path, mnist_dir, path, "cut.onnx", capsys=capsys)


def test_unsupported_op(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    import onnx
    from onnx import helper

    rng = np.random.default_rng(0)
    model = _tiny_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv_a", pads=[1, 1, 1, 1]),
         helper.make_node("Floor", ["c"], ["f"], name="weird_floor"),
         helper.make_node("Flatten", ["f"], ["flat"]),
         helper.make_node("Gemm", ["flat", "fc"], ["y"], transB=1)],
        {"w": rng.normal(size=(2, 1, 3, 3)), "fc": rng.normal(size=(10, 2 * 28 * 28))})
    path = tmp_path / "floor.onnx"
    onnx.save(model, str(path))
    msg = _refused(tmp_path, mnist_dir, path, "weird_floor", "Floor", "supported:", capsys=capsys)
    assert "Conv" in msg


def test_output_not_classes(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    import onnx
    from onnx import helper

    rng = np.random.default_rng(0)
    model = _tiny_model([helper.make_node("Conv", ["x", "w"], ["y"], name="only_conv")],
                        {"w": rng.normal(size=(4, 1, 3, 3))}, out_shape=(None, 4, 26, 26))
    path = tmp_path / "map.onnx"
    onnx.save(model, str(path))
    _refused(tmp_path, mnist_dir, path, "[N,4x26x26]", "a vector [N, K]", capsys=capsys)


def test_missing_external_data(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    import onnx

    model = onnx.load(str(E.exported("plain", "torchscript", str(mnist_dir))))
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(model, str(src / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    (src / "model.onnx.data").unlink()
    _refused(tmp_path, mnist_dir, src / "model.onnx", "model.onnx.data", "not found", capsys=capsys)


def test_external_data_outside_the_folder(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    """A model whose external data points outside its folder is refused in one line (onnx
    itself refuses it too, which was reported as an internal error, exit 3)."""
    import onnx

    model = onnx.load(str(E.exported("plain", "torchscript", str(mnist_dir))))
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(model, str(src / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    (src / "model.onnx.data").rename(tmp_path / "secret.data")
    model = onnx.load(str(src / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
    onnx.save(model, str(src / "model.onnx"))
    _refused(tmp_path, mnist_dir, src / "model.onnx", "outside the model's folder",
             capsys=capsys)


def test_wrong_import_is_refused_by_the_float_check(tmp_path: Path, mnist_dir: Path) -> None:
    """A float graph that does not match the file (here: weights off by 1 %) is refused."""
    import onnx

    from mnist_edge.errors import MnistEdgeError
    from mnist_edge.importers import check, convert, load

    path = E.exported("plain", "torchscript", str(mnist_dir))
    model = load.load_onnx(path)
    graph, info = convert.convert(model, "p")
    graph.ops[0].arrays["weight"] = graph.ops[0].arrays["weight"] * np.float32(1.01)
    pixels = np.asarray(__import__("mnist_edge.data", fromlist=["x"]).load_mnist(
        "test", str(mnist_dir))[0][:100])
    with pytest.raises(MnistEdgeError, match="differs from onnxruntime"):
        check.float_check(onnx.load(str(path)), graph, info, pixels, None)


@pytest.mark.parametrize("option,word", [(["--normalize", "0.5"], "MEAN,STD"),
                                         (["--layout", "nhwc"], "NCHW")])
def test_bad_options(tmp_path: Path, mnist_dir: Path, option: list[str], word: str,
                     capsys) -> None:
    path = E.exported("plain", "torchscript", str(mnist_dir))
    runs = tmp_path / "runs"
    code, err = _cli(capsys, "import", str(path), "--runs", str(runs), "--data", str(mnist_dir),
                     *option)
    assert code == 2 and word in err, err
    assert not runs.exists() or not any(runs.iterdir())
