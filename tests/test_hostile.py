"""Hostile input: a careless or malicious user never loses a file and never sees a traceback.

Each case of issue 14's list is a named test. Every failing command must exit 2 (or the
documented exit 1 for "ran but not bit-exact"), print exactly one line on stderr, leave no
temporary file, and change or delete no file it did not create (snapshots before/after).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "MNIST_EDGE_DEBUG"}
    full_env.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run([sys.executable, "-m", "mnist_edge.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=full_env, timeout=timeout)


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder` (files by content, links by target, folders by name)."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_one_line_error(r: subprocess.CompletedProcess, code: int = 2,
                          needle: str | None = None) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("mnist-edge: error: "), r.stderr
    assert "Traceback" not in r.stderr
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


def no_temporaries(folder: Path) -> list[str]:
    """Leftover temporary names (atomic_write / atomic_dir use a leading dot)."""
    return [k for k in snapshot(folder) if any(part.startswith(".") for part in Path(k).parts)]


@pytest.fixture()
def run(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny run, so a test may break it."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("build", "firmware"))
    return dst


@pytest.fixture(autouse=True)
def _data_env(monkeypatch: pytest.MonkeyPatch, mnist_dir: Path) -> None:
    monkeypatch.setenv("MNIST_EDGE_DATA", str(mnist_dir))


# --------------------------------------------------------------- 1. data loss
def test_generate_out_onto_run_folder_is_refused(run: Path) -> None:
    before = snapshot(run)
    r = run_cli("generate", "c", str(run), "--out", str(run), "--vectors", "2")
    assert_one_line_error(r, needle="run folder")
    assert snapshot(run) == before


def test_generate_out_dot_keeps_the_current_folder(run: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("mine\n")
    before = snapshot(cwd)
    r = run_cli("generate", "c", str(run), "--out", ".", "--vectors", "2", cwd=cwd)
    assert_one_line_error(r, needle="manifest")
    assert snapshot(cwd) == before


def test_generate_out_onto_user_folder_is_refused_even_with_force(run: Path,
                                                                  tmp_path: Path) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work\n")
    (user / "manifest.json").write_text('{"generator": "someone else"}\n')
    before = snapshot(user)
    for extra in ([], ["--force"]):
        r = run_cli("generate", "c", str(run), "--out", str(user), "--vectors", "2", *extra)
        assert_one_line_error(r, needle="manifest")
        assert snapshot(user) == before
    assert no_temporaries(tmp_path) == []


def test_generate_out_onto_a_file_is_refused(run: Path, tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("keep\n")
    for extra in ([], ["--force"]):
        r = run_cli("generate", "hls", str(run), "--out", str(target), "--vectors", "2", *extra)
        assert_one_line_error(r, needle="not a folder")
        assert target.read_text() == "keep\n"


def test_generate_out_onto_a_symlink_is_refused(run: Path, tmp_path: Path) -> None:
    # even a link to an earlier generated folder: replacing it would cut the link
    r = run_cli("generate", "c", str(run), "--out", str(tmp_path / "gen"), "--vectors", "2")
    assert r.returncode == 0, r.stderr
    (tmp_path / "link").symlink_to(tmp_path / "gen")
    before = snapshot(tmp_path)
    for extra in ([], ["--force"]):
        r = run_cli("generate", "c", str(run), "--out", str(tmp_path / "link"), "--vectors",
                    "2", *extra)
        assert_one_line_error(r, needle="symbolic link")
        assert snapshot(tmp_path) == before


def test_generate_replaces_own_output_only_with_force(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert run_cli("generate", "c", str(run), "--out", str(out), "--vectors", "2").returncode == 0
    before = snapshot(out)
    r = run_cli("generate", "c", str(run), "--out", str(out), "--vectors", "2")
    assert_one_line_error(r, needle="--force")
    assert snapshot(out) == before
    r = run_cli("generate", "c", str(run), "--out", str(out), "--vectors", "3", "--force")
    assert r.returncode == 0, r.stderr
    assert snapshot(out) != before and (out / "manifest.json").exists()
    assert no_temporaries(tmp_path) == []


def test_generate_default_output_is_replaced_in_place(run: Path) -> None:
    for vectors in ("2", "3"):
        r = run_cli("generate", "c", str(run), "--vectors", vectors)
        assert r.returncode == 0, r.stderr
    assert '"test_vectors": 3' in (run / "c" / "manifest.json").read_text()
    assert no_temporaries(run) == []


def test_generate_default_output_holding_user_files_is_kept(run: Path) -> None:
    (run / "c").mkdir()
    (run / "c" / "my_port.c").write_text("int main(void) { return 0; }\n")
    before = snapshot(run)
    r = run_cli("generate", "c", str(run), "--vectors", "2", "--force")
    assert_one_line_error(r, needle="manifest")
    assert snapshot(run) == before


def test_generate_into_an_empty_folder_is_allowed(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    r = run_cli("generate", "c", str(run), "--out", str(out), "--vectors", "2")
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.json").exists()


def test_atomic_dir_keeps_the_old_tree_when_the_build_fails(tmp_path: Path) -> None:
    from mnist_edge import paths

    out = tmp_path / "gen"
    with paths.atomic_dir(out) as tmp:
        paths.write_manifest(tmp, {"model": "a"})
        (tmp / "a.txt").write_text("a")
    with pytest.raises(RuntimeError), paths.atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("b")
        raise RuntimeError("build failed")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "manifest.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["gen"]


# ------------------------------------------------------- 2. writes that fail
def test_data_show_into_a_missing_folder_below_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    r = run_cli("data", "--show", "4", "--out", str(blocker / "sub" / "grid.png"))
    assert_one_line_error(r, needle="is not a folder")
    assert snapshot(tmp_path) == {"a_file": hashlib.sha256(b"x").hexdigest()}


def test_debug_variable_shows_the_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    r = run_cli("data", "--show", "4", "--out", str(blocker / "grid.png"),
                env={"MNIST_EDGE_DEBUG": "1"})
    assert r.returncode == 2 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("mnist-edge: error: ")


def test_unexpected_exception_is_one_line_exit_3(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    from mnist_edge import cli

    monkeypatch.delenv("MNIST_EDGE_DEBUG", raising=False)

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "_resolve", lambda handler: broken)
    assert cli.main(["report", "x"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error (ZeroDivisionError" in err[0]


def test_os_errors_reaching_the_top_are_one_line(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    import errno
    import json
    import pickle
    import zipfile

    from mnist_edge import cli, errors

    monkeypatch.delenv("MNIST_EDGE_DEBUG", raising=False)
    cases = [OSError(errno.ENOSPC, "No space left on device", "/x/report.json"),
             json.JSONDecodeError("Expecting value", "", 0), zipfile.BadZipFile("bad"),
             pickle.UnpicklingError("junk"), EOFError()]
    for exc in cases:
        def raiser(args, exc=exc):
            raise exc

        monkeypatch.setattr(cli, "_resolve", lambda handler, f=raiser: f)
        assert cli.main(["report", "x"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mnist-edge: error: "), err
    assert errors.one_line(cases[0])[0] == "/x/report.json: cannot access (No space left on device)"


def _without_override() -> list[str]:
    """A command prefix under which a read-only folder really refuses writes.

    Root ignores permission bits through CAP_DAC_OVERRIDE; setpriv drops it (and its
    kin) from the bounding set, so the child is root that obeys 0555 like anyone else.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: root ignores "
                    "read-only permissions unless CAP_DAC_OVERRIDE is dropped")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


@pytest.fixture()
def readonly_run(tiny_run: Path, tmp_path: Path):
    """A copy of the tiny run, every folder and file in it read-only."""
    prefix = _without_override()
    home = tmp_path / "home"
    home.mkdir()
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("build", "firmware"))
    for root, dirs, files in os.walk(run):
        for name in files:
            os.chmod(Path(root) / name, 0o444)
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    run.chmod(0o555)
    yield prefix, run, home
    for root, dirs, _ in os.walk(run):
        for name in dirs:
            os.chmod(Path(root) / name, 0o755)
    run.chmod(0o755)


@pytest.mark.parametrize("command", [
    ["generate", "c", "{run}", "--vectors", "2"],
    ["generate", "hls", "{run}", "--vectors", "2"],
    ["validate", "{run}", "--backend", "c", "--limit", "20"],
    ["evaluate", "{run}", "--limit", "20"],
    ["export", "onnx", "{run}"],
    ["report", "{run}"],
], ids=lambda c: "-".join(c[:2]))
def test_read_only_run_folder(readonly_run, mnist_dir: Path, command: list[str]) -> None:
    prefix, run, home = readonly_run
    before = snapshot(run)
    args = [a.format(run=run) for a in command]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home),
           "MPLCONFIGDIR": str(home), "MNIST_EDGE_DATA": str(mnist_dir)}
    env.pop("MNIST_EDGE_DEBUG", None)
    r = subprocess.run([*prefix, sys.executable, "-m", "mnist_edge.cli", *args],
                       capture_output=True, text=True, env=env, timeout=300, cwd=home)
    line = assert_one_line_error(r)
    assert "Permission denied" in line or "Read-only" in line, line
    assert snapshot(run) == before


# ------------------------------------------- 3. corrupt report.json / history.json
CORRUPT = {"truncated": '{"model": "tiny", "backends": {"c"', "list": '[1, 2, 3]\n'}


EVALUATE = ["evaluate", "{run}", "--limit", "30"]
VALIDATE = ["validate", "{run}", "--backend", "golden", "--limit", "30"]
REPORT = ["report", "{run}"]


@pytest.mark.parametrize(("command", "name", "how"), [
    (EVALUATE, "report.json", "truncated"), (VALIDATE, "report.json", "list"),
    (REPORT, "report.json", "list"), (REPORT, "history.json", "truncated"),
    (EVALUATE, "history.json", "list"),
], ids=lambda v: v[0] if isinstance(v, list) else v)
def test_corrupt_run_file_is_moved_aside(run: Path, command: list[str], name: str,
                                         how: str) -> None:
    (run / name).write_text(CORRUPT[how])
    r = run_cli(*[a.format(run=run) for a in command])
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnist-edge: warning: "), r.stderr
    aside = sorted(run.glob(f"{name}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == CORRUPT[how]
    assert aside[0].name in lines[0]
    if name == "report.json":
        assert "fresh one" in lines[0]
        import json

        assert isinstance(json.loads((run / name).read_text()), dict)


def _hammer(run_dir: str, tag: str, count: int) -> None:
    from mnist_edge.report import set_backend_figures, update_report

    for i in range(count):
        if i % 10 == 0:
            set_backend_figures(run_dir, f"{tag}-{i}", {"i": i})
        else:
            update_report(run_dir, {"entries": {f"{tag}-{i}": i}})


def test_concurrent_report_updates_keep_every_entry(tmp_path: Path) -> None:
    import json
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), tag, 300)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    report = json.loads((tmp_path / "report.json").read_text())
    want = {f"{t}-{i}" for t in "ab" for i in range(300)}
    got = set(report["entries"]) | set(report["backends"])
    assert got == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.json.lock"]


# ------------------------------------------------- 4. two commands on one run
def _validate_twice_at_once(run_dir: Path, backend: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MNIST_EDGE_DEBUG"}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "mnist_edge.cli", "validate", str(run_dir), "--backend",
           backend, "--limit", "40"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert err == "" and "exact logits 100.0000%" in out
    assert no_temporaries(run_dir) == []


@pytest.mark.parametrize("attempt", range(2))
def test_two_validates_of_one_backend_at_once(run: Path, attempt: int) -> None:
    # scripts: the same check 20 times in a row is in the issue-14 report (it passed)
    _validate_twice_at_once(run, "c")
    import json

    report = json.loads((run / "report.json").read_text())
    assert report["backends"]["c"]["images"] == 40
    assert (run / "build" / "c-float" / "runner").exists()


# ------------------------------------------- 5. arguments checked before any work
@pytest.mark.parametrize(("args", "needle"), [
    (["validate", "{run}", "--backend", ","], "no backend given"),
    (["validate", "{run}", "--backend", "c,tpu"], "unknown backend 'tpu'"),
    (["validate", "{run}", "--backend", "c", "--model-file", "x.onnx"], "onnxruntime backend"),
    (["validate", "{run}", "--backend", "c", "--limit", "0"], "at least 1"),
    (["generate", "c", "{run}", "--vectors", "0"], "at least 1"),
    (["generate", "c", "{run}", "--vectors", "-5"], "at least 1"),
    (["flash", "{run}", "--target", "qemu-m4", "--limit", "0"], "at least 1"),
    (["evaluate", "{run}", "--limit", "ten"], "not an integer"),
    (["report", "{run}/missing"], "no such run folder"),
    (["build", "--backends", ",", "--runs", "{run}/runs"], "--backends: no backend given"),
    (["build", "--backends", "c,tpu", "--runs", "{run}/runs"], "unknown backend 'tpu'"),
])
def test_bad_arguments_fail_before_any_work(run: Path, args: list[str], needle: str) -> None:
    before = snapshot(run)
    r = run_cli(*[a.format(run=run) for a in args])
    assert_one_line_error(r, needle=needle)
    assert snapshot(run) == before  # nothing ran: no build/, no report entry, no folder


SHOW_HEAVY = """
import sys
from mnist_edge import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "onnxruntime", "onnx") if m in sys.modules)
print("heavy:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["validate", "x"],
                                  ["validate", "x", "--backend", "c,tpu"],
                                  ["train", "--model", "nope"], ["generate", "c", "x",
                                                                 "--vectors", "0"],
                                  ["build", "--backends", ","]])
def test_help_and_argument_errors_do_not_import_torch(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-c", SHOW_HEAVY, *args], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "heavy:", r.stderr
    if args[-1] != "--help":
        assert r.stderr.count("mnist-edge: error: ") == 1 and "Traceback" not in r.stderr


def test_model_names_are_the_zoo() -> None:
    from mnist_edge import model_names, models

    assert tuple(models.ZOO) == model_names.MODEL_NAMES


def _default_signals() -> None:
    """The child's SIGINT and SIGTERM at their defaults: the CLI keeps an inherited
    SIG_IGN (as under nohup), and an earlier test in this worker may have left one."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("signum,delay", [("SIGINT", 0.3), ("SIGINT", 0.6), ("SIGINT", 1.0),
                                          ("SIGTERM", 0.3), ("SIGTERM", 1.0)])
def test_ctrl_c_early_prints_no_traceback(run: Path, signum: str, delay: float) -> None:
    """Ctrl-C (SIGINT) or SIGTERM during imports, parsing or work: one line, exit 130 or 143,
    no temporary folder left (Python's own start-up, the first ~0.1 s before any
    mnist-edge code runs, is outside the CLI's reach)."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for wait in (delay, delay / 2, delay / 4, 0.05):  # shorter when the command was done
        # three C builds, each run on all 10,000 test images
        p = subprocess.Popen([sys.executable, "-m", "mnist_edge.cli", "validate", str(run),
                              "--backend", "c,c-int,c-x86"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env,
                             preexec_fn=_default_signals)  # an earlier test may ignore them
        time.sleep(wait)
        running = p.poll() is None
        if running:
            p.send_signal(getattr(signal, signum))
        _, err = p.communicate(timeout=120)
        if running:
            break
    else:
        pytest.fail("the command finished within 0.05 s every time: nothing to interrupt")
    code, word = (130, "interrupted") if signum == "SIGINT" else (143, "terminated")
    assert p.returncode == code and err.strip() == f"mnist-edge: {word}", err
    assert no_temporaries(run) == []


# Each probe replaces the command's work with code that is interrupted where CPython mishandles it.
_INTERRUPTED_IN_EXEC = """
import os, signal
os.kill(os.getpid(), signal.SIGINT)
for _ in range(100_000):
    pass
"""
_INTERRUPTED_IN_WEAKREF_CALLBACK = """
import os, signal, time, weakref
class Owner:
    pass
def dropped(_):
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(100_000):
        pass
owner = Owner()
ref = weakref.ref(owner, dropped)
del owner
for _ in range(300):
    time.sleep(0.01)
"""


@pytest.mark.parametrize("work", [_INTERRUPTED_IN_EXEC, _INTERRUPTED_IN_WEAKREF_CALLBACK],
                         ids=["in-exec", "in-weakref-callback"])
def test_ctrl_c_where_python_loses_it(tmp_path: Path, work: str) -> None:
    """Two places where CPython mishandles Ctrl-C, both seen in the timing test above: in an
    `exec` of a string (dataclasses) CPython 3.11 ends the process by SIGINT although main()
    caught it; in a weakref callback (import locks) it drops the interrupt and the command
    runs on. Both must still give one line and exit 130."""
    (tmp_path / "probe.py").write_text(
        "import sys\nfrom mnist_edge import cli\n"
        f"cli._resolve = lambda handler: lambda args: exec({work!r}, {{}})\n"
        "sys.argv = ['mnist-edge', 'data']\ncli.run()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    p = subprocess.run([sys.executable, "-m", "probe"], capture_output=True, text=True,
                       env=env, timeout=60, preexec_fn=_default_signals)
    assert (p.returncode, p.stderr.strip()) == (130, "mnist-edge: interrupted"), p.stderr


# ---------------------------------------------------- 6. tampered model files
def _qgraph_doc(run_dir: Path) -> tuple[Path, dict]:
    import json

    path = next(run_dir.glob("*.qgraph.json"))
    return path, json.loads(path.read_text())


def rehash(doc: dict, npz_path: Path) -> dict:
    """What an attacker does: recompute the content hash so the tampered file passes it.

    Same recipe as QGraph.content_hash (canonical structure, then every array in op order),
    computed on the document itself so even a non-round-tripping edit gets a valid hash.
    """
    import numpy as np

    from mnist_edge import qgraph

    body = {k: v for k, v in doc.items() if k != "hash"}
    h = hashlib.sha256(qgraph.canonical_json(body).encode())
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            stored = {k: npz[k] for k in npz.files}
        for op in doc["ops"]:
            for key in sorted(op["arrays"]):
                arr = stored[f"{op['name']}.{key}"]
                h.update(f"{op['name']}.{key}:{arr.dtype}:{arr.shape}".encode())
                h.update(np.ascontiguousarray(arr).tobytes())
    except Exception:  # noqa: BLE001  (a broken document or npz: any hash will do)
        pass
    return {**body, "hash": h.hexdigest()}


def _write_doc(path: Path, doc: dict) -> None:
    import json

    path.write_text(json.dumps(doc, indent=1, sort_keys=True))


def test_rehash_reproduces_the_real_hash(tiny_run: Path) -> None:
    from mnist_edge import qgraph

    path, doc = _qgraph_doc(tiny_run)
    assert rehash(doc, qgraph.paths_for(path)[1])["hash"] == doc["hash"]
    assert qgraph.load(path).content_hash() == doc["hash"]


def _tamper(run: Path, edit) -> None:
    from mnist_edge import qgraph

    path, doc = _qgraph_doc(run)
    edit(doc)
    _write_doc(path, rehash(doc, qgraph.paths_for(path)[1]))


TAMPER = {
    "ops_as_object": lambda d: d.update(ops={o["name"]: o for o in d["ops"]}),
    "fractional_zero_point": lambda d: d["ops"][0]["output"].update(zero_point=-127.5),
    "fractional_shape": lambda d: d["ops"][0]["output"].update(shape=[8, 28.0, 28.5]),
    "string_scale": lambda d: d["ops"][0]["output"].update(scale="0.5"),
    "version_as_string": lambda d: d.update(version="1"),
    "input_as_list": lambda d: d.update(input=[1, 28, 28]),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_tampered_qgraph_with_recomputed_hash(run: Path, case: str) -> None:
    _tamper(run, TAMPER[case])
    before = snapshot(run)
    r = run_cli("analyze", str(run))
    line = assert_one_line_error(r)
    if case == "version_as_string":
        assert "schema version '1' is not an integer" in line
    assert snapshot(run) == before


# Cases whose rejection is the op registry's attribute validation.
ATTR_TAMPER = {
    "stride_zero": lambda d: d["ops"][1]["attrs"].update(stride=[0, 0]),
    "kernel_as_string": lambda d: d["ops"][0]["attrs"].update(kernel="3x3"),
    "padding_of_two": lambda d: d["ops"][0]["attrs"].update(padding=[1, 1]),
    "missing_kernel": lambda d: d["ops"][1]["attrs"].pop("kernel"),
}


@pytest.mark.parametrize("case", sorted(ATTR_TAMPER))
def test_tampered_attribute_is_rejected_on_load(run: Path, case: str) -> None:
    _tamper(run, ATTR_TAMPER[case])
    before = snapshot(run)
    line = assert_one_line_error(run_cli("analyze", str(run)))
    assert "attribute" in line and ("stride" in line or "kernel" in line or "padding" in line)
    assert snapshot(run) == before


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 garbage", os.urandom(200)],
                         ids=["empty", "bad-zip", "random"])
@pytest.mark.parametrize("which", ["qgraph", "fgraph"])
def test_broken_npz(run: Path, which: str, content: bytes) -> None:
    next(run.glob(f"*.{which}.npz")).write_bytes(content)
    before = snapshot(run)
    r = run_cli("evaluate", str(run), "--limit", "10")
    assert_one_line_error(r, needle="unreadable arrays")
    assert snapshot(run) == before


def _zip_flags(blob: bytes, flag: int | None = None, method: int | None = None) -> bytes:
    """Every local and central zip header with the encryption flag or compression method
    set: what hypothesis found to escape as NotImplementedError / RuntimeError."""
    out = bytearray(blob)
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = out.find(sig)
        while start >= 0:
            if flag is not None:
                out[start + flag_at] |= flag
            if method is not None:
                out[start + method_at:start + method_at + 2] = method.to_bytes(2, "little")
            start = out.find(sig, start + 4)
    return bytes(out)


@pytest.mark.parametrize("mutation", ["encrypted", "unknown-compression"])
def test_npz_with_unreadable_members(run: Path, mutation: str) -> None:
    path = next(run.glob("*.qgraph.npz"))
    blob = path.read_bytes()
    path.write_bytes(_zip_flags(blob, flag=1) if mutation == "encrypted"
                     else _zip_flags(blob, method=99))
    before = snapshot(run)
    assert_one_line_error(run_cli("analyze", str(run)), needle="unreadable arrays")
    assert snapshot(run) == before


@pytest.mark.parametrize("content", [b"", os.urandom(300), b"PK\x03\x04" + os.urandom(100)],
                         ids=["empty", "random", "bad-zip"])
def test_broken_checkpoint(run: Path, content: bytes) -> None:
    (run / "checkpoint.pt").write_bytes(content)
    before = snapshot(run)
    r = run_cli("quantize", str(run), "--calib-images", "50")
    assert_one_line_error(r, needle="checkpoint")
    assert snapshot(run) == before


# ------------------------------------------- 7. property-based mutations (hypothesis)
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-300, 300) | st.floats(-1e3, 1e3, allow_nan=False)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _mutate(doc, path, action, value):
    import copy

    doc = copy.deepcopy(doc)
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "numeric" and isinstance(parent[last], (int, float)) and \
            not isinstance(parent[last], bool):
        parent[last] = parent[last] + value if isinstance(value, (int, float)) else 0.5
    else:
        parent[last] = value
    return doc


@pytest.fixture(scope="module")
def pristine(tiny_run: Path):
    import json

    from mnist_edge import qgraph

    path = next(tiny_run.glob("*.qgraph.json"))
    return json.loads(path.read_text()), qgraph.paths_for(path)[1].read_bytes()


def _load_mutant(tmp: Path, doc, npz: bytes):
    """Write the mutant (rehashed) and load it: a valid model or one MnistEdgeError."""
    import json

    from mnist_edge import qgraph
    from mnist_edge.errors import MnistEdgeError

    json_path, npz_path = tmp / "m.qgraph.json", tmp / "m.qgraph.npz"
    npz_path.write_bytes(npz)
    json_path.write_text(json.dumps(rehash(doc, npz_path) if isinstance(doc, dict) else doc))
    try:
        graph = qgraph.load(json_path)
    except MnistEdgeError as exc:
        assert "\n" not in str(exc)
        return None
    from mnist_edge import analyze, golden

    analyze.summarize(graph)  # a model that loads must be usable
    golden.run_int8(graph, np_zeros_pixels())
    return graph


def np_zeros_pixels():
    import numpy as np

    return np.zeros((1, 28, 28), np.uint8)


@hypothesis.settings(max_examples=150, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_mutated_qgraph_json_is_an_error_or_a_model(pristine, tmp_path: Path, data) -> None:
    doc, npz = pristine
    paths = [p for p, _ in _paths(doc) if not (p and p[0] == "hash")]
    path = data.draw(st.sampled_from(paths), label="path")
    action = data.draw(st.sampled_from(["delete", "replace", "numeric"]) if path
                       else st.just("replace"), label="action")
    value = data.draw(JSON_VALUES, label="value")
    mutant = _mutate(doc, path, action, value)
    _load_mutant(tmp_path, mutant, npz)  # the op registry validates attributes too


@hypothesis.settings(max_examples=60, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_mutated_npz_is_an_error_or_a_model(pristine, tmp_path: Path, data) -> None:
    doc, npz = pristine
    how = data.draw(st.sampled_from(["truncate", "flip", "splice"]), label="how")
    blob = bytearray(npz)
    if how == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="at")]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    else:
        at = data.draw(st.integers(0, len(blob)), label="at")
        blob[at:at] = data.draw(st.binary(min_size=1, max_size=64), label="junk")
    _load_mutant(tmp_path, doc, bytes(blob))


# ------------------------------------------------- 8. fuzz images through backends
def test_fuzz_backends_10000_images(tiny_run: Path, mnist_dir: Path) -> None:
    """CI's share of scripts/fuzz_backends.py (the 1,000,000-image run is in BENCHMARKS.md)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import fuzz_backends
    finally:
        sys.path.pop(0)
    figures = fuzz_backends.fuzz(tiny_run, 10000, list(fuzz_backends.FUZZ_BACKENDS), seed=1,
                                 chunk=10000, data_dir=str(mnist_dir), quiet=True)
    for backend in fuzz_backends.FUZZ_BACKENDS:
        assert figures[backend]["images"] == 10000
        assert figures[backend]["mismatching_logits"] == 0, (backend, figures[backend])


def test_fuzz_families_are_not_mnist_like() -> None:
    import numpy as np

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import fuzz_backends
    finally:
        sys.path.pop(0)
    kinds = fuzz_backends.generators(None)
    rng = np.random.default_rng(0)
    for name, make in kinds.items():
        batch = make(rng, 16)
        assert batch.dtype == np.uint8 and batch.shape == (16, 28, 28), name
    assert {"constant", "checkerboard", "sparse_salt", "gradient", "inverted_mnist"} <= set(kinds)
    consts = kinds["constant"](rng, 64)
    assert {0, 255} <= set(np.unique(consts[:, 0, 0]).tolist())


@pytest.fixture()
def full_disk(tmp_path: Path):
    """A 64 KiB tmpfs (root with CAP_SYS_ADMIN only; skips elsewhere)."""
    mount = shutil.which("mount")
    point = tmp_path / "small"
    point.mkdir()
    if os.geteuid() != 0 or mount is None or subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)")
    yield point
    subprocess.run(["umount", str(point)], check=True)


def test_full_disk_is_one_line_and_leaves_nothing(run: Path, full_disk: Path) -> None:
    (full_disk / "keep.txt").write_text("mine\n")
    r = run_cli("generate", "c", str(run), "--out", str(full_disk / "c"), "--vectors", "20")
    assert_one_line_error(r, needle="No space left on device")
    assert snapshot(full_disk) == {"keep.txt": hashlib.sha256(b"mine\n").hexdigest()}
