"""`mnist-edge import model.keras / model.h5`: Keras files become the float graph their
in-memory model's ONNX export gives, end to end exact; hostile or broken files run nothing
and leave nothing behind.

The routes are compared bit for bit, not to a tolerance: a file stores the float32 weights
exactly, and Keras loads them into the same layers that the same `model.export` then
writes, so the FloatGraph (ops, attributes, every array) and its float logits must be
identical. Any difference would be a lost or reordered weight, not rounding.
"""

from __future__ import annotations

import base64
import json
import marshal
import subprocess
import sys
import zipfile
from pathlib import Path

import exporters as E
import numpy as np
import pytest

from mnist_edge import fgraph
from mnist_edge.cli import main
from mnist_edge.importers import import_onnx

if not E.have_keras():
    pytest.skip("keras (Keras 3 on the torch backend) is not importable: scripts/setup.sh",
                allow_module_level=True)

CHECK = 300  # float check images (the CLI's default is 1,000)
LIMIT = 100  # validation images


# ---------------------------------------------------------------------------- models, files
def _functional():
    """Untrained, seeded: two branches (Conv2D, DepthwiseConv2D) added, a pool branch
    concatenated, Rescaling in front, GlobalAveragePooling2D and a Dense head."""
    keras = E._keras()
    keras.utils.set_random_seed(1)
    L = keras.layers
    x = keras.Input((28, 28, 1))
    h = L.Rescaling(1 / 255.0)(x)
    h = L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(h)
    a = L.Conv2D(6, 3, padding="same")(h)
    b = L.DepthwiseConv2D(3, padding="same")(h)
    h = L.ReLU()(L.Add()([a, b]))
    h = L.MaxPooling2D(2)(h)
    h = L.Concatenate()([h, L.AveragePooling2D(1)(h)])
    h = L.GlobalAveragePooling2D()(h)
    y = L.Dense(10, activation="softmax")(L.Dropout(0.1)(h))
    return keras.Model(x, y)


def _keras2_config(layer) -> dict:
    """A layer's config as TF-Keras 2.x wrote it into .h5 files: string dtype, nested
    objects without module/registered_name."""
    config = dict(layer.get_config())
    config["dtype"] = "float32"
    for key, value in list(config.items()):
        if isinstance(value, dict) and "class_name" in value:
            config[key] = {"class_name": value["class_name"],
                           "config": {k: v for k, v in value["config"].items()
                                      if k not in ("input_axes", "output_axes")}}
    return {"class_name": type(layer).__name__, "config": config}


def write_keras2_h5(model, path: Path) -> Path:
    """A Sequential model in the legacy layout of TF-Keras 2.x `model.save("x.h5")`:
    `model_config` (batch_input_shape, string dtypes) and `keras_version` attributes on the
    root, `model_weights/<layer>` groups with `weight_names` and `<layer>/<weight>:0`
    datasets (trainable weights first)."""
    import h5py

    layers = [{"class_name": "InputLayer", "config": {
        "batch_input_shape": [None, 28, 28, 1], "dtype": "float32", "sparse": False,
        "ragged": False, "name": "conv2d_input"}}]
    layers += [_keras2_config(layer) for layer in model.layers]
    layers[1]["config"]["batch_input_shape"] = [None, 28, 28, 1]
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["model_config"] = json.dumps(config).encode()
        group = f.create_group("model_weights")
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.15.0"
        group.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        for layer in model.layers:
            sub = group.create_group(layer.name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{w.path.split('/')[-1]}:0" for w in weights]
            sub.attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, weights, strict=True):
                sub.create_dataset(n, data=np.asarray(w.numpy()))
    return path


@pytest.fixture(scope="module")
def files(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The two models, their files and their in-memory ONNX exports."""
    folder = tmp_path_factory.mktemp("keras-files")
    simple = E.keras_model("keras_simple", str(mnist_dir))  # trained (BN, Dropout)
    functional = _functional()
    functional(np.zeros((1, 28, 28, 1), np.float32))  # Keras exports only called models
    import warnings

    out: dict = {"folder": folder, "models": {"simple": simple, "functional": functional}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, model in out["models"].items():
            model.save(folder / f"{key}.keras")
            model.save(folder / f"{key}.h5")  # Keras 3 still writes the legacy format
            out[key, "onnx"] = E.export_keras(model, folder / f"{key}.onnx")
    write_keras2_h5(simple, folder / "simple-keras2.h5")
    return out


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _same_graph(a: fgraph.FloatGraph, b: fgraph.FloatGraph, images: np.ndarray) -> None:
    ja, jb = a.to_json(), b.to_json()
    ja.pop("name"), jb.pop("name")
    assert ja == jb
    for oa, ob in zip(a.ops, b.ops, strict=True):
        for key in oa.arrays:
            assert oa.arrays[key].dtype == ob.arrays[key].dtype
            assert np.array_equal(oa.arrays[key], ob.arrays[key]), (oa.name, key)
    x = images[:, None].astype(np.float32) / 255.0
    la = fgraph.run_float(a, fgraph.float_input(a, images))
    lb = fgraph.run_float(b, fgraph.float_input(b, images))
    assert np.array_equal(la, lb) and la.shape == (len(x), 10)


# ---------------------------------------------------------------------------- same graph
@pytest.mark.parametrize("key,file", [("simple", "simple.keras"), ("simple", "simple.h5"),
                                      ("simple", "simple-keras2.h5"),
                                      ("functional", "functional.keras"),
                                      ("functional", "functional.h5")])
def test_file_gives_the_export_graph(files: dict, mnist_dir: Path, tmp_path: Path, key: str,
                                     file: str, capsys) -> None:
    from mnist_edge import data

    runs = tmp_path / "runs"
    path = files["folder"] / file
    code, out, err = _cli(capsys, "import", str(path), "--runs", str(runs), "--name", "file",
                          "--data", str(mnist_dir))
    assert code == 0, err
    assert out.startswith(f"imported {path} -> {runs / 'file'}") and "layout nhwc" in out
    run_dir, _ = import_onnx(files[key, "onnx"], runs, "onnx", data_dir=str(mnist_dir),
                             check_images=CHECK)
    a = fgraph.load(fgraph.find_in_run(runs / "file"))
    b = fgraph.load(fgraph.find_in_run(run_dir))
    images = data.load_mnist("test", str(mnist_dir))[0][:500]
    _same_graph(a, b, images)
    doc = json.loads((runs / "file" / "import.json").read_text())
    assert doc["source"] == str((runs / "file" / "source.onnx").resolve())
    keras_doc = doc["keras"]
    assert keras_doc["file"] == str(path.resolve())
    assert keras_doc["format"] == ("keras" if file.endswith(".keras") else "h5")
    assert keras_doc["keras_version"] == ("2.15.0" if "keras2" in file else
                                          __import__("keras").__version__)
    if key == "simple":
        assert [entry.split(" ")[1] for entry in keras_doc["layers"]][-2:] == [
            "(Dropout)", "(Dense)"]
    report = json.loads((runs / "file" / "report.json").read_text())
    assert report["imported_from"] == str(path.resolve())


def test_api_takes_the_model_or_its_file(files: dict, mnist_dir: Path, tmp_path: Path) -> None:
    """me.from_keras(model) and me.from_keras("model.keras") take the one path."""
    import mnist_edge as me

    m1 = me.from_keras(files["models"]["functional"], runs=tmp_path, data=str(mnist_dir))
    m2 = me.from_keras(files["folder"] / "functional.keras", runs=tmp_path,
                       data=str(mnist_dir))
    assert (m1.name, m2.name) == ("keras-model", "functional")
    import onnx

    # The ONNX files differ only in names (an in-memory model's input is an auto-named
    # KerasTensor, a loaded one's is its InputLayer): same nodes, same weights.
    o1, o2 = (onnx.load(str(m.run_dir / "source.onnx")).graph for m in (m1, m2))
    assert [n.op_type for n in o1.node] == [n.op_type for n in o2.node]
    assert [t.raw_data for t in o1.initializer] == [t.raw_data for t in o2.initializer]
    images = __import__("mnist_edge.data", fromlist=["x"]).load_mnist(
        "test", str(mnist_dir))[0][:200]
    _same_graph(m1.float_graph, m2.float_graph, images)
    with pytest.raises(me.MnistEdgeError, match="no such file"):
        me.from_keras(tmp_path / "missing.keras", runs=tmp_path)


@pytest.mark.parametrize("file", ["simple.keras", "simple.h5"])
def test_end_to_end_exact(files: dict, mnist_dir: Path, tmp_path: Path, file: str) -> None:
    import mnist_edge as me

    m = me.from_keras(files["folder"] / file, runs=tmp_path, data=str(mnist_dir))
    m.quantize(calib_images=200, data=str(mnist_dir), progress=False)
    v = m.validate("onnxruntime", "c", "c-x86", "c-int", "hls", data=str(mnist_dir), limit=LIMIT,
                   progress=False)
    for backend, figures in v.backends.items():
        assert figures["exact_logit_fraction"] == 1.0, (backend, figures)
        assert figures["images"] == LIMIT
    assert m.evaluate(data=str(mnist_dir), limit=LIMIT).int8_float_agreement >= 0.95


# ---------------------------------------------------------------------------- refusals
def _refused(capsys, tmp_path: Path, mnist_dir: Path, path: Path, *words: str) -> str:
    runs = tmp_path / "runs"
    code, _, err = _cli(capsys, "import", str(path), "--name", "bad", "--runs", str(runs),
                        "--data", str(mnist_dir))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("mnist-edge: error: "), err
    for word in words:
        assert word in err, err
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
    print("REFUSED", err.strip())
    return err


@pytest.fixture
def keras_never_loads(monkeypatch):
    """Fails the test if Keras is asked to load (or deserialize) anything."""
    return _spy_on_keras(monkeypatch)


def _spy_on_keras(monkeypatch) -> list:
    keras = E._keras()
    calls: list = []

    def spy(*args, **kwargs):
        calls.append(args)
        raise AssertionError("Keras was asked to load a refused file")

    for owner, attr in ((keras.saving, "load_model"), (keras.models, "load_model"),
                        (keras.saving, "deserialize_keras_object")):
        monkeypatch.setattr(owner, attr, spy)
    return calls


def _marker_code(marker: Path) -> str:
    """A lambda that writes `marker`, base64-marshalled as Keras stores Lambda layers."""
    fn = eval(f"lambda x: __import__('pathlib').Path({str(marker)!r}).write_text('ran') and x")
    return base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")


def _evil_layers(kind: str, marker: Path, module_dir: Path) -> dict:
    """One hostile layer entry (Keras 3 form unless said)."""
    if kind == "lambda":
        return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
                "config": {"name": "evil", "trainable": True, "dtype": "float32",
                           "function": {"class_name": "__lambda__", "config": {
                               "code": _marker_code(marker), "defaults": None,
                               "closure": None}},
                           "arguments": {}}}
    if kind == "keras2-lambda":  # TF-Keras 2.x: function = [code, defaults, closure]
        return {"class_name": "Lambda", "config": {
            "name": "evil", "trainable": True, "dtype": "float32",
            "function": [_marker_code(marker), None, None], "function_type": "lambda",
            "module": "__main__", "output_shape": None, "output_shape_type": "raw",
            "output_shape_module": None, "arguments": {}}}
    if kind == "custom":  # importing the module would write the marker
        (module_dir / "evil_layers.py").write_text(
            f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
            "class Evil:\n    pass\n")
        return {"module": "evil_layers", "class_name": "Evil",
                "registered_name": "evil_layers>Evil", "config": {"name": "evil"}}
    if kind == "function":  # a Dense whose activation is a function looked up by name
        return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                "config": {"name": "evil", "units": 4, "activation": {
                    "module": "os", "class_name": "function", "config": "system",
                    "registered_name": "function"}}}
    if kind == "nested":  # a built-in layer whose initializer is a custom class
        return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                "config": {"name": "evil", "units": 4, "kernel_initializer": {
                    "module": "evil_layers", "class_name": "Init", "config": {},
                    "registered_name": "evil_layers>Init"}}}
    raise KeyError(kind)


def _with_layer(config: dict, layer: dict) -> dict:
    config = json.loads(json.dumps(config))
    config["config"]["layers"].insert(1, layer)
    return config


def _rewrite_keras(src: Path, dst: Path, config: dict, extra: dict | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = json.dumps(config).encode() if info.filename == "config.json" else \
                zin.read(info)
            zout.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


def _rewrite_h5(src: Path, dst: Path, config: dict) -> Path:
    import h5py

    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
    return dst


WHAT = {"lambda": "Lambda", "keras2-lambda": "Lambda", "custom": "evil_layers",
        "function": "function", "nested": "evil_layers"}


@pytest.mark.parametrize("fmt,kind", [("keras", "lambda"), ("h5", "lambda"),
                                      ("h5", "keras2-lambda"), ("keras", "custom"),
                                      ("h5", "custom"), ("keras", "function"),
                                      ("keras", "nested")])
def test_hostile_file_runs_nothing(files: dict, mnist_dir: Path, tmp_path: Path, fmt: str,
                                   kind: str, capsys, monkeypatch) -> None:
    marker = tmp_path / "MARKER"
    modules = tmp_path / "modules"
    modules.mkdir()
    monkeypatch.syspath_prepend(str(modules))
    layer = _evil_layers(kind, marker, modules)
    src = files["folder"] / f"simple.{fmt}"
    path = tmp_path / f"evil.{fmt}"
    if fmt == "keras":
        with zipfile.ZipFile(src) as zf:
            config = json.loads(zf.read("config.json"))
        _rewrite_keras(src, path, _with_layer(config, layer))
    else:
        import h5py

        with h5py.File(src) as f:
            config = json.loads(f.attrs["model_config"])
        _rewrite_h5(src, path, _with_layer(config, layer))
    keras = E._keras()
    real_load = keras.saving.load_model
    with monkeypatch.context() as patched:
        calls = _spy_on_keras(patched)
        msg = _refused(capsys, tmp_path, mnist_dir, path, "'evil'", WHAT[kind], "refused")
        assert not calls
    assert not marker.exists() and "evil_layers" not in sys.modules, msg
    if kind == "lambda":  # the file is really hostile: Keras without safe mode runs it
        try:
            real_load(str(path), compile=False, safe_mode=False)
        except Exception:
            pass
        assert marker.read_text() == "ran"


def test_every_allowed_layer_imports(mnist_dir: Path, tmp_path: Path) -> None:
    """The layers `LAYERS` allows that the other models do not use, from a .keras file."""
    from mnist_edge.importers.keras_file import LAYERS, check_file, import_keras

    keras = E._keras()
    L = keras.layers
    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), L.Normalization(mean=0.1307, variance=0.3081 ** 2),
        L.ZeroPadding2D(1), L.SeparableConv2D(4, 3, strides=2), L.LeakyReLU(0.1),
        L.Conv2D(4, 3, strides=2, activation="elu"), L.ELU(), L.Reshape((6 * 6 * 4,)),
        L.Dense(10), L.Softmax()])
    model.save(tmp_path / "more.keras")
    info = check_file(tmp_path / "more.keras")
    seen = {entry.split(" (")[1].rstrip(")") for entry in info.layers}
    used = {"InputLayer", "Conv2D", "DepthwiseConv2D", "Dense", "MaxPooling2D",
            "AveragePooling2D", "GlobalAveragePooling2D", "Flatten", "Dropout",
            "BatchNormalization", "Activation", "ReLU", "Add", "Concatenate", "Rescaling"}
    assert seen | used == set(LAYERS)  # with the models above, every allowed layer
    run_dir, doc = import_keras(tmp_path / "more.keras", tmp_path / "runs",
                                data_dir=str(mnist_dir), check_images=CHECK)
    assert doc["input_norm"] == [0.1307000070810318, 0.30810001492500305]
    assert "Softmax" in {d["op_type"] for d in doc["dropped"]}
    assert {"leaky_relu", "elu"} <= set(doc["ops"])


def test_unmapped_layer_is_named(files: dict, mnist_dir: Path, tmp_path: Path, capsys) -> None:
    keras = E._keras()
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, name="c1"),
                              L.GlobalMaxPooling2D(name="gmp"), L.Dense(10)])
    model.save(tmp_path / "gmp.keras")
    _refused(capsys, tmp_path, mnist_dir, tmp_path / "gmp.keras", "'gmp'", "GlobalMaxPooling2D",
             "cannot be imported", "supported Keras layers")
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(4, 3, name="c1"),
                              L.Flatten(), L.Dense(10, activation="softplus", name="head")])
    model.save(tmp_path / "softplus.keras")
    _refused(capsys, tmp_path, mnist_dir, tmp_path / "softplus.keras", "'head'", "softplus")


def _h5_with(files: dict, tmp_path: Path, edit) -> Path:
    import h5py

    path = tmp_path / "odd.h5"
    path.write_bytes((files["folder"] / "simple.h5").read_bytes())
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


@pytest.mark.parametrize("case", ["random.keras", "random.h5", "zip-without-config",
                                  "zip-with-extra", "truncated.keras", "truncated.h5",
                                  "weights-only.h5", "config-not-json", "h5-external-link",
                                  "h5-external-data", "sequential-empty"])
def test_not_a_keras_file(files: dict, mnist_dir: Path, tmp_path: Path, case: str,
                          capsys, keras_never_loads) -> None:
    import h5py

    rng = np.random.default_rng(0)
    keras_file = files["folder"] / "simple.keras"
    with zipfile.ZipFile(keras_file) as zf:
        config = json.loads(zf.read("config.json"))
    if case.startswith("random"):
        path = tmp_path / case
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        words = ["not a"]
    elif case == "zip-without-config":
        path = tmp_path / "noconfig.keras"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("model.weights.h5", b"x")
        words = ["no config.json"]
    elif case == "zip-with-extra":
        path = _rewrite_keras(keras_file, tmp_path / "extra.keras", config,
                              {"assets/run_me.py": b"print('hi')"})
        words = ["assets/run_me.py"]
    elif case.startswith("truncated"):
        src = files["folder"] / ("simple.keras" if case.endswith("keras") else "simple.h5")
        path = tmp_path / ("cut" + src.suffix)
        path.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
        words = ["cut" + src.suffix]
    elif case == "weights-only.h5":
        path = _h5_with(files, tmp_path, lambda f: f.attrs.__delitem__("model_config"))
        words = ["no model_config", "weights-only"]
    elif case == "config-not-json":
        path = tmp_path / "notjson.keras"
        with zipfile.ZipFile(keras_file) as zin, zipfile.ZipFile(path, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, b"{'python': 1}" if info.filename == "config.json"
                              else zin.read(info))
        words = ["config.json is not valid JSON"]
    elif case == "h5-external-link":
        (tmp_path / "other.h5").write_bytes((files["folder"] / "simple.h5").read_bytes())
        path = _h5_with(files, tmp_path, lambda f: f["model_weights"].__setitem__(
            "elsewhere", h5py.ExternalLink(str(tmp_path / "other.h5"), "/")))
        words = ["ExternalLink", "refused"]
    elif case == "h5-external-data":
        secret = tmp_path / "secret.txt"
        secret.write_bytes(b"0123456789abcdef")
        path = _h5_with(files, tmp_path, lambda f: f.create_dataset(
            "model_weights/leak", shape=(16,), dtype="u1", external=[(str(secret), 0, 16)]))
        words = ["other files", "refused"]
    else:
        empty = json.loads(json.dumps(config))
        empty["config"]["layers"] = []
        path = _rewrite_keras(keras_file, tmp_path / "empty.keras", empty)
        words = ["no layers"]
    _refused(capsys, tmp_path, mnist_dir, path, *words)
    assert not keras_never_loads


def test_options_and_lazy_imports(files: dict, mnist_dir: Path, tmp_path: Path,
                                  capsys) -> None:
    code, _, err = _cli(capsys, "import", str(files["folder"] / "simple.keras"), "--layout",
                        "nchw", "--runs", str(tmp_path))
    assert code == 2 and "--layout" in err
    probe = ("import sys\nfrom mnist_edge.cli import main\n"
             "try:\n    main(['import', '--help'])\nexcept SystemExit:\n    pass\n"
             "import mnist_edge\n"
             "print(sorted(m for m in ('keras', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert ".keras" in out and ".h5" in out
    assert out.strip().splitlines()[-1] == "[]", out


def test_hdf5_crash_is_a_refusal(files: dict, mnist_dir: Path, tmp_path: Path, capsys,
                                 monkeypatch, keras_never_loads) -> None:
    """libhdf5 parses the untrusted bytes in a child process: if it dies on a signal (as a
    libhdf5 bug on malformed input would), the import is refused in one line."""
    from mnist_edge.importers import keras_file

    monkeypatch.setattr(keras_file, "_CHILD", "import os, signal; os.kill(os.getpid(), "
                                              "signal.SIGSEGV)")
    _refused(capsys, tmp_path, mnist_dir, files["folder"] / "simple.h5", "libhdf5 crashed",
             "SIGSEGV")
    assert not keras_never_loads


def test_mutated_h5_never_escapes(files: dict, tmp_path: Path) -> None:
    """Byte-flipped and truncated .h5 files: the isolated check answers each with a
    KerasFile or one MnistEdgeError line, never a crash of this process or a traceback."""
    from mnist_edge.errors import MnistEdgeError
    from mnist_edge.importers.keras_file import check_file_isolated

    data = (files["folder"] / "simple.h5").read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"ok": 0, "refused": 0}
    for i in range(24):
        mutated = bytearray(data)
        if i % 4 == 3:
            mutated = mutated[: int(rng.integers(8, len(data)))]
        else:
            for at in rng.integers(0, len(data), 1 + i % 8):
                mutated[at] ^= 1 << int(rng.integers(0, 8))
        path = tmp_path / f"m{i}.h5"
        path.write_bytes(bytes(mutated))
        copy = tmp_path / f"copy{i}"
        copy.mkdir()
        try:
            check_file_isolated(path, copy)
            outcomes["ok"] += 1
        except MnistEdgeError as exc:
            assert "\n" not in str(exc) and "Traceback" not in str(exc), exc
            outcomes["refused"] += 1
    print(outcomes)
    assert outcomes["refused"] > 0


def test_build_from_keras_file(files: dict, mnist_dir: Path, tmp_path: Path, capsys) -> None:
    """`build --from model.keras` takes the same import route as `import`, then the whole
    build; a .tflite is refused there (already int8) in one line, before any work."""
    runs = tmp_path / "runs"
    code, out, err = _cli(capsys, "build", "--from", str(files["folder"] / "simple.keras"),
                          "--runs", str(runs), "--calib-images", "200", "--backends", "c-int",
                          "--data", str(mnist_dir))
    assert code == 0, out + err
    assert "[1/7] importing" in out
    info = json.loads((runs / "simple" / "import.json").read_text())
    assert info["keras"]["format"] == "keras"
    report = json.loads((runs / "simple" / "report.json").read_text())
    assert report["backends"]["c-int"]["exact_logit_fraction"] == 1.0
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"TFL3")
    code, out, err = _cli(capsys, "build", "--from", str(tflite), "--runs", str(runs))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "already" in err, err
    assert not (runs / "m").exists()
