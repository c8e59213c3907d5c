"""Helpers the test modules share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from test_int_requant import near_half_wide_cases

# The MLPerf Tiny int8 models in ../shared (the `mlperf_runs` fixture imports them).
MLPERF = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mlperf-tiny"
MODELS = {"ad": "ad01_int8", "kws": "kws_ref_model", "resnet": "pretrainedResnet_quant",
          "vww": "vww_96_int8"}


def mlperf_run(mlperf_runs: dict[str, Path], key: str) -> Path:
    """The imported run of MLPerf model `key`, or a skip that says the file is absent."""
    if key not in mlperf_runs:
        reason = f"{MLPERF / MODELS[key]}.tflite is absent: MLPerf model {key} not tested"
        print(reason)
        pytest.skip(reason)
    return mlperf_runs[key]


def need(tool: str) -> str:
    """The tool's path, or a skip that says which tool is missing and how to get it."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found: install with scripts/setup.sh")
    return path


def requant_cases(seed: int = 5, per_mult: int = 400,
                  wide: int = 3000) -> list[tuple[np.float32, int, np.ndarray]]:
    """(M, z_y, accumulators) groups that corner a C requantization: ties and near ties
    for every multiplier, powers of two, the int32 limits, beyond 2^24 included (where
    float32(acc) itself rounds), random magnitudes; then wide near-half cases."""
    rng = np.random.default_rng(seed)
    p = np.int64(1) << np.arange(31)
    half_steps = np.array([(1 << k) + (1 << (k - 24)) * j for k in range(24, 31)
                           for j in (1, 2, 3, 5)], np.int64)
    special = np.concatenate([[0, (1 << 24) - 1, 2**31 - 1], p, p - 1, p + 1, half_steps,
                              half_steps + 1, half_steps - 1])
    special = np.unique(np.concatenate([special, -special, [-(2**31)]]))
    special = special[(special >= -(2**31)) & (special < 2**31)]
    mults = np.concatenate([np.float32(2.0) ** -np.arange(-4, 60, dtype=np.float32),
                            np.exp(rng.uniform(np.log(1e-9), np.log(50), 60)).astype(np.float32)])
    groups = []
    for mult in mults:
        mult = np.float32(mult)
        k = np.arange(-40, 40)
        ties = np.clip(np.rint((k + 0.5) / float(mult)), -(1 << 24) + 1, (1 << 24) - 1)
        mag = np.exp(rng.uniform(0, np.log((1 << 24) - 1), per_mult)).astype(np.int64)
        acc = np.concatenate([special, ties.astype(np.int64), ties.astype(np.int64) + 1,
                              np.where(rng.random(per_mult) < 0.5, -mag, mag),
                              rng.integers(-(2**31), 2**31, per_mult // 2)])
        groups.append((mult, int(rng.integers(-128, 128)), acc))
    for a, mult in zip(*near_half_wide_cases(wide), strict=True):
        groups.append((np.float32(mult), 0, np.array([a], np.int64)))
    return groups


def build_verilator_tb(folder: Path, top: str, sources: list[str], *flags: str) -> Path:
    """Build `top` with folder/tb.cpp in Verilator: the testbench binary."""
    import subprocess

    from mnist_edge.targets.verilator import make_flags

    cache = make_flags()
    subprocess.run([need("verilator"), "--cc", "--exe", "--build", "-O2", *flags,
                    *(["-MAKEFLAGS", cache] if cache else []), "--top-module", top, *sources,
                    "tb.cpp", "-o", "tb"],
                   cwd=folder, check=True, capture_output=True)
    return folder / "obj_dir" / "tb"


def run_verilator_tb(folder: Path, top: str, sources: list[str], cases, *flags: str):
    """Build `top` with folder/tb.cpp in Verilator and feed it one case per line on stdin:
    its one output per case, as int64."""
    import subprocess

    import numpy as np

    tb = build_verilator_tb(folder, top, sources, *flags)
    text = "\n".join(" ".join(str(int(v)) for v in row) for row in cases) + "\n"
    proc = subprocess.run([str(tb)], input=text, capture_output=True, text=True, check=True)
    hw = np.array(proc.stdout.split(), dtype=np.int64)
    assert hw.size == len(cases)
    return hw
