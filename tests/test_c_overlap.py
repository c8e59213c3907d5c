"""Steps that write their output over their own input (backends/overlap.py): the drift and
band arithmetic by hand, the MLPerf Tiny arenas under their targets and under the
live-activation floor, and the C band driver exact at band heights that leave a remainder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import mlperf_run, need

from mnist_edge import golden, qgraph
from mnist_edge.backends import c as c_backend
from mnist_edge.backends import overlap
from mnist_edge.backends.c import generate_c
from mnist_edge.backends.c_planner import ArenaPlan, _layout, lifetimes, plan_arena
from mnist_edge.backends.overlap import Rows, band_plan, overlap_drift, ring_drift
from mnist_edge.targets import host_c
from mnist_edge.testing import random_inputs

sys.path.insert(0, str(Path(__file__).parent))
from test_c_backend import random_graph  # noqa: E402
from test_c_tflite import SANITIZE, _selftest  # noqa: E402

EDGE = Path(__file__).resolve().parents[1] / "generated" / "edge"
# 0.75 x microTVM + CMSIS-NN's activation workspace (issue 26; mlperf-tiny/README.md)
TARGETS = {"resnet": 49_584, "kws": 12_924, "vww": 48_600, "ad": 870}


def _rows(c_in: int, c_out: int, k: int = 1, stride: int = 1, pad: int = 0,
          h: int = 25, w: int = 5) -> Rows:
    out_h = (h + 2 * pad - k) // stride + 1
    out_w = (w + 2 * pad - k) // stride + 1
    return Rows(in_h=h, in_row=w * c_in, out_h=out_h, out_w=out_w, out_c=c_out,
                conv_per_out=1, pool_h=1, stride_h=stride, pad_top=pad, kernel_h=k)


def test_band_arithmetic_by_hand() -> None:
    # KWS's pointwise conv, 64 -> 64 channels on 25 x 5: one row a band, truly in place
    pw = band_plan(_rows(64, 64), 1)
    assert (pw.drift, pw.lines, pw.copy_bytes) == (0, 320, 25 * 320)
    # its depthwise 3x3 (pad 1): a band of 4 rows reads 6 input rows, moves 2 of them on
    dw = band_plan(_rows(64, 64, k=3, pad=1), 4)
    assert (dw.drift, dw.lines) == (0, 6 * 320)
    # a pointwise conv that doubles the channels: its output must start lower down, by
    # (oy + 1) rows of output minus the oy + 1 input rows not yet copied, at the worst oy
    grow = band_plan(_rows(8, 16, h=48, w=48), 1)
    assert grow.drift == max((oy + 1) * 48 * 16 - (oy + 1) * 48 * 8 for oy in range(47))
    # no band: a block of max(4, out_w) = 5 pixels may still read the row above its last
    assert overlap_drift(_rows(64, 64)) == 576  # (5r + 4) * 64 - (r - 1) * 320, at 5r + 3
    # the depthwise kernel's ring holds the rows it reads: its 3x3 (pad 1) runs truly in
    # place, stride 2 too; with a channel multiplier of 2, output row oy must stay below
    # input row oy + 2 (the first not yet copied), the last row the worst
    assert ring_drift(_rows(64, 64, k=3, pad=1)) == 0
    assert ring_drift(_rows(16, 16, k=3, stride=2, h=48, w=48)) == 0
    assert ring_drift(_rows(8, 16, k=3, pad=1, h=48, w=48)) == max(
        (oy + 1) * 48 * 16 - min(48, oy + 2) * 48 * 8 for oy in range(48))


def test_random_layouts_exercise_every_way() -> None:
    """test_c_backend's host-runner cases (exact on c, c-x86, c-int) keep covering an
    elementwise op in place and a conv straight over its input."""
    assert any(s.kind == "add" and s.overlaps for s in plan_arena(random_graph(0, "dag")).steps)
    assert any(s.overlaps and not s.band
               for s in plan_arena(random_graph(1, "features")).steps)


def _forced_bands(height: int):
    """plan_arena with every conv that can run in bands of `height` rows doing so, whether
    or not the arena gains: the driver's every path, exercised on purpose."""
    def plan(graph: qgraph.QGraph, fuse: bool = True, in_place: bool = True) -> ArenaPlan:
        p = plan_arena(graph, fuse, in_place=False)
        last = [z for _, z in lifetimes(p.steps, p.buffers)]
        for k, s in enumerate(p.steps):
            for mode in overlap.step_modes(graph, p.steps, p.buffers, k, last):
                if mode.band == height:
                    mode.apply(s)
        p.arena_bytes = _layout(p.steps, p.buffers)
        return p
    return plan


@pytest.mark.parametrize("height", [1, 2])
def test_band_driver_exact_in_the_onnx_arithmetic(monkeypatch, tmp_path: Path,
                                                  height: int) -> None:
    """edge's padded 3x3 convs with their fused 2x2 max pools (the last one's window drops
    the 7th row) in bands of 1 and 2 pooled rows (a shorter last band), and a random
    chain's unpadded conv: c, c-x86 and c-int equal golden."""
    need("gcc")
    monkeypatch.setattr(overlap, "BAND_UNIT_PIXELS", 1)
    monkeypatch.setattr(c_backend, "plan_arena", _forced_bands(height))
    for graph in (qgraph.load_run(EDGE), random_graph(0, "mixed")):
        _band_exact(graph, tmp_path / graph.name, height)
    edge = qgraph.load_run(EDGE)  # and its self-test under ASan + UBSan, in bands
    _selftest(generate_c(edge, tmp_path / "sanitized", "int", random_inputs(edge, 4, 2)),
              SANITIZE)


def _band_exact(graph: qgraph.QGraph, tmp_path: Path, height: int) -> None:
    banded = [s for s in c_backend.plan_arena(graph).steps if s.band]
    assert banded and all(s.band == height for s in banded)
    pixels = random_inputs(graph, 40, 1)
    reference = golden.run_int8(graph, pixels)
    for run in (host_c.run_float, host_c.run_x86, host_c.run_int):
        result = run(tmp_path, graph, pixels, {"timing_images": 1, "repeats": 1})
        assert np.array_equal(result.logits, reference), run.__name__


@pytest.mark.parametrize("key", sorted(TARGETS))
def test_mlperf_arena_targets(mlperf_runs, key: str) -> None:
    plan = plan_arena(qgraph.load_run(mlperf_run(mlperf_runs, key)))
    assert plan.arena_bytes <= TARGETS[key]
    if key in ("kws", "vww"):  # below the largest input + output: only overlap gets there
        assert plan.arena_bytes < plan.floor_bytes
        assert plan_arena(qgraph.load_run(mlperf_run(mlperf_runs, key)),
                          in_place=False).arena_bytes > TARGETS[key]


def test_pair_packed_bands_hold_whole_passes(mlperf_runs) -> None:
    """KWS's pointwise convs (pair-packed, 5 pixels a row): 4-row bands (whole blocks of 4
    pixels) on the builds that do not pair-pack, 3-row bands (whole passes of 3) on those
    that do (ME_PACKED_BAND); the line buffer and the drift are the larger of the two, so
    both are safe."""
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "kws"))
    banded = [s for s in plan_arena(graph).steps if s.band]
    assert banded and all((s.band, s.packed_band) == (4, 3) for s in banded)
    for s in banded:
        rows = overlap.conv_rows(graph, s)
        four, three = overlap.band_plan(rows, 4), overlap.band_plan(rows, 3)
        assert s.lines == max(four.lines, three.lines)
        assert s.overlaps[s.src] == max(four.drift, three.drift)


@pytest.mark.parametrize("heights", [(3,), (4,)])
def test_band_driver_exact_with_a_remainder(mlperf_runs, monkeypatch, tmp_path: Path,
                                            heights: tuple[int, ...]) -> None:
    """KWS's 25 rows in bands of 3 or 4 (the last band shorter), in the host C: its
    pointwise convs (3 rows of 5 pixels: not whole blocks of 4, allowed here on purpose;
    its depthwise convs run in place from their own ring, never in bands)."""
    need("gcc")
    monkeypatch.setattr(overlap, "BAND_UNIT_PIXELS", 1)
    monkeypatch.setattr(overlap, "BAND_HEIGHTS", heights)
    graph = qgraph.load_run(mlperf_run(mlperf_runs, "kws"))
    plan = plan_arena(graph)
    assert {s.band for s in plan.steps if s.band} == set(heights)
    pixels = random_inputs(graph, 6, 11)
    result = host_c.run_int(tmp_path, graph, pixels, {"timing_images": 1, "repeats": 1})
    assert np.array_equal(result.logits, golden.run_int8(graph, pixels))


def test_weight_stages_only_fill_room(mlperf_runs, monkeypatch) -> None:
    """The weight stages never grow an MLPerf model's arena, and each holds whole units:
    all of a depthwise conv's weights and biases (or its biases alone), whole pairs of a
    pair-packed conv's."""
    from mnist_edge.backends import c_planner

    plans = {key: plan_arena(qgraph.load_run(mlperf_run(mlperf_runs, key))) for key in TARGETS}
    monkeypatch.setattr(c_planner, "_grow_stages", lambda graph, steps, bufs, arena: arena)
    for key, plan in plans.items():
        graph = qgraph.load_run(mlperf_run(mlperf_runs, key))
        assert plan.arena_bytes == plan_arena(graph).arena_bytes, key
        for s in plan.steps:
            unit, units = c_planner.stage_unit(graph, s)
            if c_planner.is_depthwise(graph, s):  # all, the biases alone, or nothing
                assert s.stage in (0, unit, c_planner.depthwise_bias_stage(graph, s))
            else:
                assert s.stage == 0 or (s.stage % unit == 0 and s.stage <= unit * units)
    assert sum(s.stage > 0 for s in plans["vww"].steps) >= 20


def test_layout_keeps_its_smallest_order(mlperf_runs) -> None:
    """The overlapping layout tries three orders and keeps the smallest arena: on every
    MLPerf plan, no order alone does better. IC's 64-channel Winograd layer with two rows
    of tiles a pass fits its 43,588 B arena only in the third order (largest size times
    lifetime first: 58,452 B largest first, 46,708 B first written first)."""
    from mnist_edge.backends import c_planner

    for key in TARGETS:
        plan = plan_arena(qgraph.load_run(mlperf_run(mlperf_runs, key)))
        if any(s.overlaps for s in plan.steps):
            best = c_planner._layout(plan.steps, plan.buffers)
            assert best == plan.arena_bytes, key
            for by in ("size", "time", "area"):
                assert c_planner._layout_in_order(plan.steps, plan.buffers, by) >= best, key
    plan = plan_arena(qgraph.load_run(mlperf_run(mlperf_runs, "resnet")))
    winograd = [s for s in plan.steps if s.winograd_rows]
    assert [s.winograd_rows for s in winograd] == [1, 1, 1, 2]
    assert plan.arena_bytes == 43_588
    sizes = {by: c_planner._layout_in_order(plan.steps, plan.buffers, by)
             for by in ("size", "time", "area")}
    assert sizes["area"] == 43_588 < min(sizes["size"], sizes["time"]), sizes


@pytest.mark.parametrize("room, min_pairs", [(0, 32), (8192, 32), (2048, 8)])
def test_staged_weights_exact_in_bands(mlperf_runs, monkeypatch, tmp_path: Path, room: int,
                                       min_pairs: int) -> None:
    """KWS with `room` more arena bytes for the weight stages (c_planner._grow_stages): its
    banded pointwise convs staged whole (a band after the first finds them staged) or in
    chunks of whole pairs (every band copies each chunk again), its depthwise convs whole;
    with none, as planned, nothing.
    Exact on the host (the C pass, DSP emulated, ASan + UBSan; with -DMNIST_EDGE_NO_STAGE
    too) and in QEMU on a Cortex-M4 (the Thumb-2 loop's chunks)."""
    from mnist_edge.backends import c_planner
    from mnist_edge.backends.c import c_inputs
    from mnist_edge.backends.c_planner import stage_unit
    from mnist_edge.validate import validate_backend

    need("gcc")
    grow = c_planner._grow_stages
    monkeypatch.setattr(c_planner, "_grow_stages",
                        lambda graph, steps, bufs, arena: grow(graph, steps, bufs, arena + room))
    monkeypatch.setattr(c_planner, "STAGE_MIN_PAIRS", min_pairs)
    run_dir = tmp_path / "kws"  # its own firmware: the shared run's builds keep their plan
    shutil.copytree(mlperf_run(mlperf_runs, "kws"), run_dir,
                    ignore=shutil.ignore_patterns("firmware"))
    graph = qgraph.load_run(run_dir)
    staged = {k: (s.stage, stage_unit(graph, s)) for k, s in enumerate(plan_arena(graph).steps)
              if s.stage}
    banded = [k for k, s in enumerate(plan_arena(graph).steps) if s.band]
    whole = {k for k, (stage, (unit, units)) in staged.items() if stage >= unit * units}
    assert banded
    if room:
        assert set(banded) <= set(staged)
        assert (set(banded) <= whole) == (room == 8192)
        assert {1, 3, 5, 7} <= whole  # the depthwise convs
    else:  # nothing: the depthwise convs' planes take the room their biases had (and the
        # DSP cores' channel-major path reads each bias once a channel, not once a pixel)
        steps = plan_arena(graph).steps
        assert not staged
        assert all(c_planner.depthwise_planes_bytes(graph, steps[k]) for k in (1, 3, 5, 7))
    x = random_inputs(graph, 6, 17)
    src = generate_c(graph, tmp_path / "c", "int", x[:2])
    for flags in ((), ("-DMNIST_EDGE_NO_STAGE",)):  # the stages, then the weights in flash
        exe = tmp_path / f"runner{len(flags)}"
        host_c.compile_runner(src, exe, cflags=("-std=c99", *SANITIZE,
                                                "-DMNIST_EDGE_DSP_EMULATION", *flags))
        got, _ = host_c.run_runner(exe, c_inputs(graph, x), graph.output.size)
        np.testing.assert_array_equal(got, golden.run_int8(graph, x))
    need("arm-none-eabi-gcc")
    need("qemu-system-arm")
    f = validate_backend(run_dir, "qemu-m4", x[:4], None)
    assert f["exact_logit_fraction"] == 1.0
