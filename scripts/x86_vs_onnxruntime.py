#!/usr/bin/env python3
"""Batch-1 latency of the `c-x86` runner beside onnxruntime (and LiteRT), in one run.

Usage (from the repository root; the default model built with `mnist-edge build`, the
MLPerf Tiny models imported with `mnist-edge import ... --name NAME`):

    PYTHONPATH=$PWD python3 scripts/x86_vs_onnxruntime.py runs/edge runs/ad01_int8 \\
        runs/kws_ref_model runs/pretrainedResnet_quant runs/vww_96_int8 [--repeats 5]

Every figure is the one quantity `validate` reports (`validate.Latency`): single calls
timed one by one, batch 1, after warm-up, cycling through the same inputs (the MNIST test
images for an image model, `--inputs random:N`'s seeded inputs otherwise), the median
call. Each measurement runs alone in its own process, and the backends take turns, one
process each per repeat, so they share the machine's load; the table gives the median of
the processes' medians and their spread (lowest - highest). The backends:

- `c-x86`: the generated C with the host kernels (templates/c/host/runner.c, its own
  timer), built as `validate` builds it (-O2 -march=native), plus `-mavx2` (no VNNI) and
  SSE2-only builds of the same sources, which any x86-64 runs;
- onnxruntime on one thread (as `validate` times it) and with its default threads, on the
  ONNX that `validate --backend onnxruntime` runs: our QOperator export for an `onnx`
  graph, and for a `tflite` graph the exact integer decomposition
  (`backends/onnx_tflite.py`, int64 arithmetic; not what a user would deploy);
- LiteRT's optimized kernels on the run's own `.tflite` (imported runs only), one thread,
  for reference: its numbers are not always TFLite Micro's (docs/BENCHMARKS.md).

The c-x86 logits are checked against golden on the timed inputs first. Prints the load
average before and after, and one Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ISAS = {  # c-x86 builds: the flags beside X86_CFLAGS' -march=native
    "native": (),
    "avx2": ("-march=x86-64-v3",),
    "sse2": ("-march=x86-64",),
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def model_inputs(run: Path, n: int) -> tuple[np.ndarray, str]:
    """n inputs in the graph's encoding and where they come from."""
    from mnist_edge import inputs as input_data
    from mnist_edge import pipeline, qgraph
    from mnist_edge.probe_inputs import probe_batch

    graph = qgraph.load_run(run)
    if graph.input_encoding == "uint8" and tuple(graph.input.shape) == (1, 28, 28):
        images, _ = pipeline.test_set(None, n, graph)
        return input_data.graph_input(graph, images), f"the first {n} MNIST test images"
    return probe_batch(graph, n, 0), f"random:{n} (seed 0)"


def cc_flags(isa: str) -> tuple[str, ...]:
    from mnist_edge.targets import host_c

    flags = [f for f in host_c.X86_CFLAGS if not (isa != "native" and f == "-march=native")]
    return (*flags, *ISAS[isa])


def build_runner(run: Path, work: Path, isa: str) -> Path:
    from mnist_edge import qgraph
    from mnist_edge.backends.c import generate_c
    from mnist_edge.targets import host_c

    src = generate_c(qgraph.load_run(run), work / f"src-{isa}", "float")
    exe = work / f"runner-{isa}"
    host_c.compile_runner(src, exe, "gcc", cc_flags(isa))
    return exe


def isa_macros(isa: str) -> str:
    """The SIMD the compiler targets with these flags (its predefined macros)."""
    proc = subprocess.run(["gcc", *ISAS[isa], *(["-march=native"] if isa == "native" else []),
                           "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True, text=True)
    have = [m for m in ("AVX512VNNI", "AVXVNNI", "AVX512F", "AVX2", "SSE2")
            if f"#define __{m}__ " in proc.stdout]
    return "+".join(have)


def onnx_file(run: Path, work: Path) -> tuple[Path, str]:
    """The ONNX validate's onnxruntime backend runs, exported into `work`, and its format."""
    from mnist_edge import qgraph
    from mnist_edge.backends import onnx as onnx_export
    from mnist_edge.targets import onnxrt

    graph = qgraph.load_run(run)
    path = onnx_export.export_int8(graph, work / f"{run.name}.int8.onnx")
    meta = onnxrt.check_int8_model(path, graph)
    what = ("exact integer decomposition, int64 (backends/onnx_tflite.py)"
            if graph.arithmetic == "tflite" else f"QOperator export ({meta.get('format')})")
    return path, what


# ------------------------------------------------------------------ one process each
def worker(args: argparse.Namespace) -> None:
    """Time one backend in this process; print its Latency as JSON."""
    from mnist_edge import qgraph
    from mnist_edge.validate import Latency

    graph = qgraph.load_run(Path(args.run))
    x = np.load(args.inputs)
    if args.worker == "onnxruntime":
        from mnist_edge.targets import onnxrt

        threads = None if args.threads == 0 else args.threads
        lat = onnxrt.latency(onnxrt.session(Path(args.model), threads), graph, x, args.calls)
    else:  # litert
        from mnist_edge.importers.tflite_reader import read_tflite
        from mnist_edge.targets import litert, tflm

        path = tflm.tflite_source(Path(args.run))
        model = read_tflite(path)
        feed = tflm.to_tflite_input(graph, graph.input_to_int8(x),
                                    model.tensors[model.inputs[0]])
        it = litert.interpreter(path, "optimized")
        index = it.get_input_details()[0]["index"]
        times = []
        for i in range(args.calls + 20):  # 20 warm-up calls
            it.set_tensor(index, feed[i % len(feed):i % len(feed) + 1])
            start = time.perf_counter_ns()
            it.invoke()
            if i >= 20:
                times.append((time.perf_counter_ns() - start) / 1000.0)
        lat = Latency.of(times)
    print(json.dumps(lat.__dict__))


def in_process(cmd: list[str]) -> dict[str, float]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(run: Path, images: int, calls: int, repeats: int, work: Path,
            isas: list[str]) -> dict:
    from mnist_edge import golden, qgraph
    from mnist_edge.backends.c import c_inputs
    from mnist_edge.targets import host_c

    graph = qgraph.load_run(run)
    x, source = model_inputs(run, images)
    np.save(work / "inputs.npy", x)
    runners = {isa: build_runner(run, work, isa) for isa in isas}
    reference = golden.run_int8(graph, x)
    onnx_path, onnx_what = onnx_file(run, work)
    passes = max(1, calls // images)
    base = [sys.executable, __file__, "--worker", "", "--run", str(run), "--inputs",
            str(work / "inputs.npy"), "--calls", str(calls)]
    jobs: dict[str, list[str] | Path] = {f"c-x86 {isa}": exe for isa, exe in runners.items()}
    for threads, name in ((1, "onnxruntime 1 thread"), (0, "onnxruntime default threads")):
        cmd = list(base)
        cmd[3] = "onnxruntime"
        jobs[name] = [*cmd, "--model", str(onnx_path), "--threads", str(threads)]
    from mnist_edge.importers import is_tflite_run

    if is_tflite_run(run):
        cmd = list(base)
        cmd[3] = "litert"
        jobs["LiteRT optimized, 1 thread"] = cmd
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            if isinstance(job, Path):
                logits, lat = host_c.run_runner(job, c_inputs(graph, x), graph.output.size,
                                                images, passes)
                if not np.array_equal(logits, reference):
                    raise SystemExit(f"{run.name}: {name} differs from golden")
                samples[name].append(lat.median_us)
            else:
                samples[name].append(in_process(job)["median_us"])
    return {"model": run.name, "arithmetic": graph.arithmetic, "inputs": source,
            "onnx": onnx_what, "calls": passes * images,
            "figures": {name: (statistics.median(v), min(v), max(v))
                        for name, v in samples.items()}}


def table(results: list[dict], isas: list[str]) -> str:
    cols = [*(f"c-x86 {isa}" for isa in isas), "onnxruntime 1 thread",
            "onnxruntime default threads", "LiteRT optimized, 1 thread"]
    lines = ["| model | " + " | ".join(f"{c} (µs)" for c in cols)
             + " | c-x86 / onnxruntime 1 thread |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for r in results:
        f = r["figures"]
        cells = [(f"{f[c][0]:.1f} ({f[c][1]:.1f}–{f[c][2]:.1f})" if c in f else "–")
                 for c in cols]
        ratio = f[cols[0]][0] / f["onnxruntime 1 thread"][0]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {ratio:.2f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--images", type=int, default=100, help="inputs cycled through")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per process")
    ap.add_argument("--repeats", type=int, default=5, help="processes per backend")
    ap.add_argument("--isa", default="native,avx2,sse2",
                    help="c-x86 builds: native (validate's), avx2, sse2")
    ap.add_argument("--worker", choices=["onnxruntime", "litert"], help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if not args.runs:
        ap.error("give one or more run folders")
    isas = [s for s in args.isa.split(",") if s]
    if not isas or any(s not in ISAS for s in isas) or isas[0] != "native":
        ap.error(f"--isa: a list from {', '.join(ISAS)}, native first")
    import onnxruntime

    from mnist_edge.targets.litert import litert_version

    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="x86-vs-ort-") as tmp:
        for run in args.runs:
            work = Path(tmp) / run.name
            work.mkdir()
            results.append(measure(run, args.images, args.calls, args.repeats, work, isas))
            print(f"measured {run.name}", file=sys.stderr)
    after = os.getloadavg()
    print(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
          f"{cpu_name()}, {os.cpu_count()} CPUs; load average "
          f"(1/5/15 min) {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} before, "
          f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} after. onnxruntime "
          f"{onnxruntime.__version__}, LiteRT {litert_version()}, gcc -O2; c-x86 ISAs: "
          + ", ".join(f"{isa} = {isa_macros(isa)}" for isa in isas) + ".")
    print(f"Each figure: the median over {args.repeats} processes of each process's median "
          f"single call (lowest–highest process in brackets), µs per input, batch 1.\n")
    print(table(results, isas))
    print()
    for r in results:
        print(f"- {r['model']} ({r['arithmetic']} arithmetic): {r['calls']} calls per process "
              f"on {r['inputs']}; onnxruntime runs the {r['onnx']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
