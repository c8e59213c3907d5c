"""The HLS C++ in the tflite arithmetic: C-simulated with g++, bit-exact with golden (hence
with TFLM, which golden equals on these models: tests/test_tflite_*).

* the four MLPerf Tiny models (../shared/models/mlperf-tiny), a few structured and random
  inputs each through `validate --backend hls`; the full runs (10,000 inputs per model)
  are `mnist-edge validate RUN --backend hls --inputs random:10000` (docs/BENCHMARKS.md);
* every single-op fixture the C backend is tested on (test_c_tflite.CASES), plus the
  dilated convolution the C backend refuses, less test_tflite_ops' fixtures (MEAN, PAD,
  RESHAPE, broadcasting ADD/SUB/MUL...), which test_tflite_ops.py runs through
  `validate --backend hls` itself;
* the C++ requantization against `requant.py` on the int32 limits, every shift, exact ties;
* the generated tree compiles with -pedantic, is deterministic, and what TFLM's own C++
  leaves undefined is refused by name, before anything is written.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import MODELS, mlperf_run, need
from test_c_tflite import CASES, _import, _inputs, _requant_cases
from test_tflite_fixtures import CASES as FIXTURES
from test_tflite_ops import CASES as OP_CASES

from mnist_edge import golden, qgraph
from mnist_edge.backends.hls import build_layers, generate_hls
from mnist_edge.errors import MnistEdgeError
from mnist_edge.requant import multiply_by_quantized_multiplier, requantize_tflite
from mnist_edge.targets import hls_csim
from mnist_edge.validate import validate_backend

STRICT = ["-std=c++14", "-Wall", "-Wextra", "-Werror", "-pedantic"]
HLS_CASES = {**{k: v for k, v in CASES.items() if k not in OP_CASES},
             "conv_dilated": FIXTURES["conv_dilated"]}


@pytest.mark.parametrize("key", sorted(MODELS))
def test_mlperf_hls_csim_exact(mlperf_runs, key: str) -> None:
    need("g++")
    run_dir = mlperf_run(mlperf_runs, key)
    graph = qgraph.load_run(run_dir)
    f = validate_backend(run_dir, "hls", _inputs(graph, 12, seed=2), None)
    assert f["exact_logit_fraction"] == 1.0 and f["images"] == 12, f


def test_mlperf_testbench_strict(mlperf_runs, tmp_path: Path) -> None:
    """The generated testbench under -pedantic and UBSan: the golden test vectors pass."""
    cxx = need("g++")
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "resnet"))
    out = generate_hls(graph, tmp_path / "hls", _inputs(graph, 6, seed=4))
    exe = tmp_path / "tb"
    subprocess.run([cxx, *STRICT, "-O1", "-fsanitize=undefined", "-fno-sanitize-recover=all",
                    "mnist_edge_hls.cpp", "tb_mnist_edge.cpp", "-o", str(exe)], cwd=out,
                   check=True)
    proc = subprocess.run([str(exe), "test_vectors"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "0 of 60 logits differ" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    port = manifest["interface"]["input"]
    assert port["signed"] and port["count"] == 3 * 32 * 32 and port["order"].startswith("HWC")
    code = (out / "mnist_edge_hls.cpp").read_text()
    assert "read_input(input, x0);" in code and "add<" in code and "softmax<" in code
    assert "tflite arithmetic" in (out / "README.md").read_text()


@pytest.mark.parametrize("case", sorted(HLS_CASES))
def test_single_op_kernel_exact(case: str, tmp_path: Path) -> None:
    need("g++")
    graph = qgraph.load_run(_import(tmp_path, case, HLS_CASES[case]()))
    assert graph.arithmetic == "tflite"
    x = _inputs(graph, 40, seed=len(case))
    got = hls_csim.run(tmp_path, graph, x, {}).logits
    want = golden.run_int8(graph, x)
    bad = np.flatnonzero(np.any(got != want, axis=1))
    assert not len(bad), (f"{case}: {len(bad)}/{len(x)} inputs differ; first {bad[0]}: HLS "
                          f"{got[bad[0]][:12]} golden {want[bad[0]][:12]}")


@pytest.mark.parametrize("case", ["add_broadcast_channel", "mul_broadcast_both",
                                  "padv2_value_then_conv"])
def test_later_kernels_strict_and_synthesizable(case: str, tmp_path: Path) -> None:
    """MEAN, both broadcasts and PAD under -pedantic and UBSan (the testbench's golden
    vectors pass) and in the synthesis view (-D__SYNTHESIS__)."""
    cxx = need("g++")
    graph = qgraph.load_run(_import(tmp_path, case, OP_CASES[case]()))
    out = generate_hls(graph, tmp_path / "hls", _inputs(graph, 8, seed=3))
    code = (out / "mnist_edge_hls.cpp").read_text()
    assert "broadcast<" in code or "pad<" in code
    exe = tmp_path / "tb"
    subprocess.run([cxx, *STRICT, "-O1", "-fsanitize=undefined", "-fno-sanitize-recover=all",
                    "mnist_edge_hls.cpp", "tb_mnist_edge.cpp", "-o", str(exe)], cwd=out,
                   check=True)
    proc = subprocess.run([str(exe), "test_vectors"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 0 and f"0 of {8 * graph.output.size} logits differ" in \
        proc.stdout, proc.stdout + proc.stderr
    subprocess.run([cxx, *STRICT, "-Wno-unknown-pragmas", "-D__SYNTHESIS__", "-fsyntax-only",
                    "mnist_edge_hls.cpp"], cwd=out, check=True)


HARNESS = r"""
#include <stdio.h>
#include "mnist_edge_kernels.h"

int main(void) {
    long long x, m, shift, zp, lo, hi;
    while (scanf("%lld %lld %lld %lld %lld %lld", &x, &m, &shift, &zp, &lo, &hi) == 6) {
        printf("%ld %d\n",
               (long)mnist_edge::mul_by_quantized_multiplier(int32_t(x), int32_t(m), int(shift)),
               int(mnist_edge::requantize(int32_t(x), int32_t(m), int8_t(shift), int32_t(zp),
                                          int32_t(lo), int32_t(hi))));
    }
    return 0;
}
"""


def test_hls_requantization_matches_requant_py(tmp_path: Path) -> None:
    """mul_by_quantized_multiplier == requant.multiply_by_quantized_multiplier and the output
    stage == requantize_tflite on every case (about 60,000), under UBSan."""
    cxx = need("g++")
    graph = qgraph.load_run(_import(tmp_path, "conv_same_s1", HLS_CASES["conv_same_s1"]()))
    src = generate_hls(graph, tmp_path / "hls")
    (src / "harness.cpp").write_text(HARNESS)
    exe = src / "harness"
    subprocess.run([cxx, *STRICT, "-O1", "-fsanitize=undefined", "-fno-sanitize-recover=all",
                    "harness.cpp", "-o", str(exe)], cwd=src, check=True)
    cases = _requant_cases()
    text = "\n".join(" ".join(str(int(v)) for v in row) for row in cases) + "\n"
    run = subprocess.run([str(exe)], input=text, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    got = np.array(run.stdout.split(), np.int64).reshape(-1, 2)
    x, m, shift, zp, lo, hi = cases.T
    np.testing.assert_array_equal(got[:, 0], multiply_by_quantized_multiplier(x, m, shift))
    want8 = np.array([requantize_tflite(np.array([a]), b, c, int(d), (int(e), int(f)))[0]
                      for a, b, c, d, e, f in cases[:20000]])
    np.testing.assert_array_equal(got[:20000, 1], want8)


def test_generation_is_deterministic(mlperf_runs, tmp_path: Path) -> None:
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "kws"))
    x = _inputs(graph, 4)
    a, b = generate_hls(graph, tmp_path / "a", x), generate_hls(graph, tmp_path / "b", x)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_undefined_in_tflm_is_refused_by_name(tmp_path: Path) -> None:
    """A softmax over 512 values (TFLM's final shift passes 31), a padded pool whose
    window lies wholly in the padding (a division by zero) and a MEAN whose requantization
    shift passes 30 (TFLM's left shift by 31 or more) are refused, nothing written."""
    import copy

    from test_c_tflite import _fc_softmax

    graph = qgraph.load_run(_import(tmp_path, "sm", _fc_softmax(600)))
    with pytest.raises(MnistEdgeError, match=r"softmax.*HLS backend does not implement a "
                                             r"softmax over 512 values"):
        generate_hls(graph, tmp_path / "hls")
    assert not (tmp_path / "hls").exists()
    pool = qgraph.load_run(_import(tmp_path, "mp", HLS_CASES["max_pool_same"]()))
    bad = copy.deepcopy(pool)
    op = bad.ops[0]
    op.attrs["padding"] = [3, 3, 0, 0]  # the first window: rows and columns -3..-1 only
    with pytest.raises(MnistEdgeError, match=r"pool window entirely in the padding"):
        build_layers(bad)
    mean = qgraph.load_run(_import(tmp_path, "mean", OP_CASES["mean_rescaled"]()))
    build_layers(mean)  # as imported: lowered
    for op in mean.ops:  # the mean and the flatten after it: M = 2^40, shift 41 - fold 5
        op.output.scale = mean.input.scale * 2.0 ** -40
    with pytest.raises(MnistEdgeError, match=r"op mean_0 \(mean\): the HLS backend does not "
                                             r"implement a MEAN .* shift outside -31..30"):
        generate_hls(mean, tmp_path / "hls")
    assert not (tmp_path / "hls").exists()


def test_synthesis_view_and_no_float(mlperf_runs, tmp_path: Path) -> None:
    """With __SYNTHESIS__ (as Vitis HLS compiles) the tflite kernels still compile, with
    their directives; no float, double or heap anywhere in the sources."""
    import re

    from test_hls import strip_comments

    cxx = need("g++")
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "resnet"))
    out = generate_hls(graph, tmp_path / "hls", _inputs(graph, 2))
    pre = subprocess.run([cxx, "-std=c++14", "-E", "-D__SYNTHESIS__", "mnist_edge_hls.cpp"],
                         cwd=out, check=True, capture_output=True, text=True).stdout
    assert "#pragma HLS INTERFACE axis port=input" in pre and "#pragma HLS UNROLL" in pre
    subprocess.run([cxx, *STRICT, "-Wno-unknown-pragmas", "-D__SYNTHESIS__", "-fsyntax-only",
                    "mnist_edge_hls.cpp"], cwd=out, check=True)
    for name in ("mnist_edge_hls.cpp", "mnist_edge_kernels.h", "mnist_edge_params.h"):
        code = strip_comments((out / name).read_text())
        for banned in ("float", "double", "new", "malloc", "free", "delete"):
            assert not re.search(rf"\b{banned}\b", code), (banned, name)
