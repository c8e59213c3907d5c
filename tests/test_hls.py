"""HLS backend: generated C++ is bit-exact, clean, deterministic; memory files round-trip."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import need

from mnist_edge import golden
from mnist_edge.backends import memfiles
from mnist_edge.backends.hls import build_layers, generate_hls, latency_model
from mnist_edge.errors import MnistEdgeError
from mnist_edge.qgraph import QOp
from mnist_edge.requant import decompose, requantize_int
from mnist_edge.targets import hls_csim
from mnist_edge.testing import random_dag_qgraph, random_pixels, random_qgraph

CASES = [(0, "mixed"), (1, "dense"), (2, "mixed"), (3, "dense")]
STRICT = ["-std=c++14", "-Wall", "-Wextra", "-Werror", "-pedantic"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[tuple[int, str], Path]:
    root = tmp_path_factory.mktemp("hls")
    return {(seed, layout): generate_hls(random_qgraph(seed, layout), root / f"{layout}{seed}",
                                         random_pixels(12, seed + 100))
            for seed, layout in CASES}


def expected_arrays(seed: int, layout: str) -> dict[str, np.ndarray]:
    """What each memory file must hold, computed from the QGraph directly."""
    graph = random_qgraph(seed, layout)
    out = {}
    for i, (layer, op) in enumerate(zip(_layers_by_op(graph), graph.ops, strict=True)):
        if layer is None:
            continue
        for key in ("weight", "bias", "table"):
            if key in op.arrays:
                out[f"{layer}_{key}"] = op.arrays[key].ravel()
        if op.kind in ("conv2d", "linear", "avgpool2d", "global_avgpool"):
            m, shift = decompose(graph.multiplier(i))
            out[f"{layer}_mult"], out[f"{layer}_shift"] = m, shift
    return out


def _layers_by_op(graph):
    return [layer.name if layer.kind != "flatten" else None for layer in build_layers(graph)]


def strip_comments(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    code = re.sub(r"//[^\n]*", "", code)
    return re.sub(r'"(\\.|[^"\\])*"', '""', code)


# ---------------------------------------------------------------- memory files
@pytest.mark.parametrize("case", CASES)
def test_memory_files_round_trip(generated, case):
    out = generated[case]
    manifest = json.loads((out / "manifest.json").read_text())
    expected = expected_arrays(*case)
    assert sorted(a["name"] for a in manifest["arrays"]) == sorted(expected)
    for entry in manifest["arrays"]:
        want = expected[entry["name"]].astype(np.int64)
        assert entry["depth"] == want.size
        for fmt, reader in (("mem", memfiles.read_mem), ("coe", memfiles.read_coe),
                            ("mif", memfiles.read_mif)):
            got = reader(out / entry["files"][fmt], entry["width"], entry["signed"])
            np.testing.assert_array_equal(got, want, err_msg=f"{entry['name']}.{fmt}")


def test_memory_formats_by_hand(tmp_path):
    values = np.array([-128, -1, 0, 1, 127], np.int8)
    for ext, writer in memfiles.WRITERS.items():
        path = tmp_path / f"v{ext}"
        path.write_text(writer(values, 8, True, "five values"))
        np.testing.assert_array_equal(memfiles.READERS[ext](path, 8, True), values)
    assert (tmp_path / "v.mem").read_text().split("\n")[1:6] == ["80", "FF", "00", "01", "7F"]
    assert "DEPTH=5;" in (tmp_path / "v.mif").read_text()
    assert (tmp_path / "v.coe").read_text().rstrip().endswith("7F;")
    with pytest.raises(MnistEdgeError, match="WIDTH"):
        memfiles.read_mif(tmp_path / "v.mif", 16, True)
    with pytest.raises(MnistEdgeError, match="do not fit"):
        memfiles.mem_text(np.array([300]), 8, False, "")


# ---------------------------------------------------------------- C++ sources
def test_sources_compile_strict_and_testbench_passes(generated, tmp_path):
    cxx = need("g++")
    for case, out in generated.items():
        exe = tmp_path / f"tb_{case[1]}{case[0]}"
        subprocess.run([cxx, *STRICT, "-O1", "mnist_edge_hls.cpp", "tb_mnist_edge.cpp", "-o",
                        str(exe)], cwd=out, check=True)
        proc = subprocess.run([str(exe), "test_vectors"], cwd=out, capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        assert "0 of 120 logits differ" in proc.stdout


def test_synthesis_view_has_the_pragmas(generated):
    """With __SYNTHESIS__ defined (as Vitis HLS does) the directives become #pragma HLS."""
    cxx = need("g++")
    out = generated[(0, "mixed")]
    pre = subprocess.run([cxx, "-std=c++14", "-E", "-D__SYNTHESIS__", "mnist_edge_hls.cpp"],
                         cwd=out, check=True, capture_output=True, text=True).stdout
    for pragma in ("#pragma HLS PIPELINE II=1", "#pragma HLS INTERFACE axis port=pixels",
                   "#pragma HLS INTERFACE axis port=logits",
                   "#pragma HLS INTERFACE s_axilite port=return", "#pragma HLS UNROLL"):
        assert pragma in pre, pragma
    subprocess.run([cxx, *STRICT, "-Wno-unknown-pragmas", "-D__SYNTHESIS__", "-fsyntax-only",
                    "mnist_edge_hls.cpp"], cwd=out, check=True)


def test_no_float_no_heap_no_recursion(generated):
    out = generated[(0, "mixed")]
    code = {p.name: strip_comments(p.read_text())
            for p in out.iterdir() if p.name.startswith("mnist_edge_")}
    assert set(code) == {"mnist_edge_hls.cpp", "mnist_edge_hls.h", "mnist_edge_kernels.h",
                         "mnist_edge_params.h"}
    for name, text in code.items():
        for banned in ("float", "double", "new", "malloc", "calloc", "realloc", "free",
                       "delete", "goto", "setjmp"):
            assert not re.search(rf"\b{banned}\b", text), f"{banned} in {name}"
        assert not re.search(r"\d\.\d|\d[eE][-+]?\d", text), f"float literal in {name}"
    # No function calls itself: find every definition and scan its body.
    joined = "\n".join(code.values())
    defs = list(re.finditer(r"\b([A-Za-z_]\w*)\s*\((?:[^;{}()]|\([^()]*\))*\)\s*\{", joined))
    names = {m.group(1) for m in defs} - {"if", "for", "while", "switch"}
    assert {"mnist_edge_top", "conv2d", "requantize", "linear", "lut"} <= names
    for m in defs:
        if m.group(1) not in names:
            continue
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(joined[i], 0)
            i += 1
        body = joined[m.end():i]
        assert not re.search(rf"\b{m.group(1)}\s*(<[^;]*?>)?\s*\(", body), m.group(1)


def test_requantize_matches_contract_exhaustive_edges(tmp_path):
    """The C++ requantize() against requant.requantize_int on edge and random cases."""
    cxx = need("g++")
    rng = np.random.default_rng(7)
    edges = np.array([0, 1, -1, 2, -2, 3, (1 << 23) - 1, 1 << 23, (1 << 24) - 1,
                      -((1 << 24) - 1), 12345, -12345], np.int64)
    big = np.array([1 << 24, (1 << 24) + 1, (1 << 24) + 3, (1 << 25) + 2, (1 << 25) + 6,
                    2**31 - 1, -(2**31), -(1 << 24) - 1], np.int64)  # float32(acc) rounds
    acc = np.concatenate([edges, big, rng.integers(-(1 << 24) + 1, 1 << 24, 20000),
                          rng.integers(-(2**31), 2**31, 5000), rng.integers(-300, 300, 20000)])
    cases = []
    for mult in np.concatenate([[1.0, 0.5, 0.75, 2.0 ** -20, 1.5 ** -9, 3.0, 0.0, 1e-13],
                                np.exp(rng.uniform(-18, 2, 40))]).astype(np.float32):
        m, shift = decompose(np.array([mult]))
        zp = int(rng.integers(-128, 128))
        want = requantize_int(acc, m[0], shift[0], zp)
        cases.append((int(m[0]), int(shift[0]), zp, want))
    (tmp_path / "acc.txt").write_text(" ".join(str(int(a)) for a in acc))
    src = tmp_path / "rq.cpp"
    src.write_text(
        '#include <stdio.h>\n#include "mnist_edge_kernels.h"\n'
        "int main(int argc, char **argv) {\n"
        "    (void)argc;\n"
        "    unsigned m; int shift, zp; long acc;\n"
        "    sscanf(argv[1], \"%u\", &m); sscanf(argv[2], \"%d\", &shift);\n"
        "    sscanf(argv[3], \"%d\", &zp);\n"
        "    FILE *f = fopen(argv[4], \"r\");\n"
        "    while (fscanf(f, \"%ld\", &acc) == 1)\n"
        "        printf(\"%d\\n\", mnist_edge::requantize(int32_t(acc), m, uint8_t(shift), zp));\n"
        "    fclose(f);\n    return 0;\n}\n")
    kernels = generate_hls(random_qgraph(0, "dense"), tmp_path / "gen") / "mnist_edge_kernels.h"
    shutil.copy(kernels, tmp_path)
    subprocess.run([cxx, *STRICT, "-O2", str(src), "-o", str(tmp_path / "rq")], check=True)
    for m, shift, zp, want in cases:
        out = subprocess.run([str(tmp_path / "rq"), str(m), str(shift), str(zp),
                              str(tmp_path / "acc.txt")], capture_output=True, text=True,
                             check=True).stdout
        got = np.array(out.split(), dtype=np.int64)
        np.testing.assert_array_equal(got, want, err_msg=f"m={m} shift={shift} zp={zp}")


# ---------------------------------------------------------------- C simulation
@pytest.mark.parametrize("case", CASES)
def test_csim_backend_matches_golden(tmp_path, case):
    need("g++")
    graph = random_qgraph(*case)
    pixels = random_pixels(64, seed=case[0] + 7)
    result = hls_csim.run(tmp_path, graph, pixels, {})
    np.testing.assert_array_equal(result.logits, golden.run_int8(graph, pixels))
    assert (tmp_path / "build" / "hls" / "manifest.json").exists()
    assert result.extra["hls_estimated_cycles"] == latency_model(graph)["total_cycles"]
    limited = hls_csim.run(tmp_path, graph, pixels, {"limit": 5})
    assert limited.logits.shape == (5, graph.output.size)


@pytest.mark.parametrize("seed", [0, 1])
def test_csim_graph_with_add_and_concat_matches_golden(tmp_path, seed):
    need("g++")
    graph = random_dag_qgraph(seed)
    pixels = random_pixels(64, seed=seed + 3)
    result = hls_csim.run(tmp_path, graph, pixels, {})
    np.testing.assert_array_equal(result.logits, golden.run_int8(graph, pixels))
    code = (tmp_path / "build" / "hls" / "mnist_edge_hls.cpp").read_text()
    assert "add<" in code and "concat_" in code


def test_csim_split_over_processes(tmp_path):
    need("g++")
    graph = random_qgraph(2, "dense")
    exe = hls_csim.compile_csim(generate_hls(graph, tmp_path / "gen"), tmp_path / "csim")
    pixels = random_pixels(700, seed=11)
    logits = hls_csim.run_csim(exe, pixels, graph.output.size, jobs=3)
    np.testing.assert_array_equal(logits, golden.run_int8(graph, pixels))
    with pytest.raises(MnistEdgeError, match="C-simulation failed"):
        hls_csim.run_csim(tmp_path / "gen" / "README.md", pixels[:3], graph.output.size)


@pytest.mark.parametrize("parallel", [1, 3, 8])
def test_csim_any_lane_count_matches_golden(tmp_path, parallel):
    need("g++")
    graph = random_qgraph(4, "dense" if parallel == 3 else "mixed")
    pixels = random_pixels(32, seed=parallel)
    result = hls_csim.run(tmp_path, graph, pixels, {"parallel": parallel})
    np.testing.assert_array_equal(result.logits, golden.run_int8(graph, pixels))
    lanes = [layer.lanes for layer in build_layers(graph, parallel)]
    assert max(lanes) == min(parallel, 6 if parallel != 3 else 3)
    code = (tmp_path / "build" / "hls" / "mnist_edge_hls.cpp").read_text()
    assert ("ARRAY_PARTITION" in code) == (parallel > 1)


# ---------------------------------------------------------------- generation
def test_generation_is_deterministic(tmp_path):
    graph = random_qgraph(5, "mixed")
    pixels = random_pixels(7, seed=3)
    a = generate_hls(graph, tmp_path / "a", pixels)
    b = generate_hls(graph, tmp_path / "deeper" / "b", pixels)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 20
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        if rel.suffix != ".bin":
            assert str(tmp_path) not in (a / rel).read_text(), rel


def test_regeneration_replaces_folder(tmp_path):
    out = generate_hls(random_qgraph(0, "dense"), tmp_path / "hls")
    (out / "stale.txt").write_text("left over")
    generate_hls(random_qgraph(0, "dense"), out)
    assert not (out / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unsupported_op_is_named(tmp_path):
    graph = random_qgraph(0, "dense")
    graph.ops.insert(1, QOp("weird", "softmax", graph.ops[0].output, {}, {}))
    with pytest.raises(MnistEdgeError, match="softmax"):
        generate_hls(graph, tmp_path / "hls")
    assert not (tmp_path / "hls").exists()


def test_latency_model_and_readme(generated):
    graph = random_qgraph(1, "dense")
    serial = {r["layer"]: r for r in latency_model(graph, parallel=1)["layers"]}
    # dense: conv2d0 3x5x5 over 1x28x28 -> 3x24x24: 1728 outputs of 25 MACs (depth 4, rq 5).
    assert serial["conv2d0"]["cycles"] == 3 * 24 * 24 * (25 + 4 - 1 + 5 + 1)
    assert serial["linear5"]["cycles"] == 10 * (12 + 4 - 1 + 5 + 1)  # 12 -> 10
    model = latency_model(graph)
    rows = {r["layer"]: r for r in model["layers"]}
    # Default: 3 lanes for 3 channels (576 pixels), 2 lanes for 10 outputs (5 rounds).
    assert rows["conv2d0"]["lanes"] == 3 and rows["linear5"]["lanes"] == 2
    assert rows["conv2d0"]["cycles"] == 24 * 24 * (25 + 4 - 1 + (3 + 5 - 1) + 1)
    assert rows["linear5"]["cycles"] == 5 * (12 + 4 - 1 + (2 + 5 - 1) + 1)
    assert rows["flatten2"]["cycles"] == 0
    assert rows["read_pixels"]["cycles"] == 784 + 2 - 1
    assert model["total_cycles"] == sum(r["cycles"] for r in model["layers"])
    readme = (generated[(1, "dense")] / "README.md").read_text()
    assert f"**{model['total_cycles']}**" in readme
    for needle in ("AXI4-Stream", "AXI4-Lite", "vitis_hls -f run_hls.tcl", "xc7z020clg400-1",
                   "not available", "$readmemh", ".coe", ".mif", "row-major"):
        assert needle in readme, needle
    tcl = (generated[(1, "dense")] / "run_hls.tcl").read_text()
    assert "set part xc7z020clg400-1" in tcl and "csynth_design" in tcl
    assert "csim_design" in tcl



def test_committed_default_model_csim(tmp_path, mnist_dir):
    """The committed default model (generated/edge) on 2,000 MNIST test images, logit for logit.

    The full 10,000-image runs of edge and gapnet are `mnist-edge validate RUN --backend hls`
    (figures in docs/BENCHMARKS.md).
    """
    need("g++")
    from mnist_edge.data import load_mnist
    from mnist_edge.paths import REPO_ROOT
    from mnist_edge.qgraph import load_run

    for f in (REPO_ROOT / "generated" / "edge").glob("*.qgraph.*"):
        shutil.copy(f, tmp_path / f.name)
    images = load_mnist("test", mnist_dir)[0][:2000]
    graph = load_run(tmp_path)
    result = hls_csim.run(tmp_path, graph, images, {})
    np.testing.assert_array_equal(result.logits, golden.run_int8(graph, images))
