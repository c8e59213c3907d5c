"""Cortex-M firmware: QEMU runs are bit-exact, boards build with their memory maps, the
instruction counter counts what the core executes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import need

from mnist_edge import cli, golden, qgraph
from mnist_edge.errors import MnistEdgeError
from mnist_edge.targets import firmware, mcu_bench, qemu
from mnist_edge.targets.boards import BOARDS, TARGETS
from mnist_edge.testing import random_pixels, random_qgraph
from mnist_edge.validate import validate_backend

IMAGES = 24  # at least 20 per target, as the issue asks


def need_arm() -> None:
    need("arm-none-eabi-gcc")
    need("arm-none-eabi-objcopy")


def qgraph_only_run(tmp_path: Path, seed: int, layout: str) -> tuple[Path, qgraph.QGraph]:
    """A run folder holding nothing but a QGraph: what the backends must accept."""
    graph = random_qgraph(seed, layout)
    run_dir = tmp_path / f"{layout}{seed}"
    run_dir.mkdir()
    qgraph.save(graph, run_dir / graph.name)
    return run_dir, graph


@pytest.mark.parametrize("target,layout", [("qemu-m4", "mixed"), ("qemu-m3", "dense"),
                                           ("qemu-m7", "mixed"), ("qemu-m3", "mixed")])
def test_qemu_backend_is_bit_exact(tmp_path: Path, target: str, layout: str) -> None:
    need_arm()
    need("qemu-system-arm")
    run_dir, _ = qgraph_only_run(tmp_path, 5, layout)
    pixels = random_pixels(IMAGES, 11)
    labels = np.zeros(IMAGES, dtype=np.uint8)
    figures = validate_backend(run_dir, target, pixels, labels)
    assert figures["images"] == IMAGES
    assert figures["exact_logit_fraction"] == 1.0, figures.get("first_mismatch")
    assert figures["requant"] == ("int" if target == "qemu-m3" else "float")
    report = json.loads((run_dir / "report.json").read_text())
    assert report["backends"][target]["exact_logit_fraction"] == 1.0
    assert (run_dir / "firmware" / target / "build" / "firmware.elf").exists()


def test_qemu_m4_runs_integer_requant_too(tmp_path: Path) -> None:
    need_arm()
    need("qemu-system-arm")
    graph = random_qgraph(2, "dense")
    fw = firmware.build_firmware(graph, TARGETS["qemu-m4"], tmp_path / "fw", requant="int")
    pixels = random_pixels(20, 3)
    logits, _ = qemu.run_firmware(fw, pixels)
    np.testing.assert_array_equal(logits, golden.run_int8(graph, pixels))


def test_hung_firmware_is_stopped_with_a_clear_error(tmp_path: Path) -> None:
    need_arm()
    need("qemu-system-arm")
    fw = firmware.build_firmware(random_qgraph(0, "mixed"), TARGETS["qemu-m3"], tmp_path / "fw")
    # 2,000 images cannot finish in 0.2 s: the run is stopped like a hung firmware would be.
    with pytest.raises(MnistEdgeError, match="did not finish 2000 images within"):
        qemu.run_firmware(fw, random_pixels(2000, 0), timeout=0.2)


def test_m3_refuses_float_requant(tmp_path: Path) -> None:
    need_arm()
    with pytest.raises(MnistEdgeError, match="no FPU"):
        firmware.build_firmware(random_qgraph(0, "mixed"), TARGETS["qemu-m3"], tmp_path / "fw",
                                requant="float")


def test_firmware_folder_is_deterministic(tmp_path: Path) -> None:
    need_arm()
    graph = random_qgraph(1, "mixed")
    a = firmware.build_firmware(graph, TARGETS["qemu-m4"], tmp_path / "a")
    b = firmware.build_firmware(graph, TARGETS["qemu-m4"], tmp_path / "b")
    files = sorted(p.relative_to(a.folder) for p in a.folder.rglob("*")
                   if p.is_file() and p.suffix != ".map")
    assert files == sorted(p.relative_to(b.folder) for p in b.folder.rglob("*")
                           if p.is_file() and p.suffix != ".map")
    for rel in files:
        assert (a.folder / rel).read_bytes() == (b.folder / rel).read_bytes(), rel
    for rel in files:
        if rel.suffix in (".c", ".h", ".ld", ".md", "") and rel.parts[0] != "build":
            assert str(tmp_path) not in (a.folder / rel).read_text(), rel


def test_makefile_rebuilds_the_same_image(tmp_path: Path) -> None:
    need_arm()
    need("make")
    fw = firmware.build_firmware(random_qgraph(3, "dense"), TARGETS["qemu-m7"], tmp_path / "fw")
    python_bin = fw.bin.read_bytes()
    subprocess.run(["make", "-s", "clean"], cwd=fw.folder, check=True, capture_output=True)
    subprocess.run(["make", "-s"], cwd=fw.folder, check=True, capture_output=True)
    assert fw.bin.read_bytes() == python_bin


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_dry_run_builds_with_the_memory_map(tmp_path: Path, board: str, capsys,
                                                  mnist_dir: Path) -> None:
    need_arm()
    run_dir, _ = qgraph_only_run(tmp_path, 4, "mixed")
    code = cli.main(["flash", str(run_dir), "--board", board, "--dry-run",
                     "--data", str(mnist_dir)])
    assert code == 0
    out = capsys.readouterr().out
    assert "flash command: pyocd flash --target" in out
    folder = run_dir / "firmware" / board
    for suffix in ("elf", "hex", "bin"):
        assert (folder / "build" / f"firmware.{suffix}").stat().st_size > 0
    spec = BOARDS[board]
    from elftools.elf.elffile import ELFFile

    with open(folder / "build" / "firmware.elf", "rb") as f:
        elf = ELFFile(f)
        text = elf.get_section_by_name(".text")
        assert text["sh_addr"] == spec.flash_origin
        symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
    assert spec.ram_origin <= symbols["__stack_top__"] <= spec.ram_origin + spec.ram_size
    readme = (folder / "README.md").read_text()
    assert "115200" in readme and "PASS" in readme


def test_flash_without_tool_or_probe_fails_in_one_line(tmp_path: Path, capsys,
                                                       mnist_dir: Path) -> None:
    need_arm()
    run_dir, _ = qgraph_only_run(tmp_path, 4, "dense")
    for probe in ("pyocd", "openocd"):
        code = cli.main(["flash", str(run_dir), "--board", "nucleo-f411re", "--probe", probe,
                         "--data", str(mnist_dir)])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert err.startswith("mnist-edge: error:") and "\n" not in err
        assert probe.lower() in err.lower()


def test_flash_needs_exactly_one_of_target_or_board(tmp_path: Path, capsys) -> None:
    run_dir, _ = qgraph_only_run(tmp_path, 4, "dense")
    assert cli.main(["flash", str(run_dir)]) == 2
    assert "exactly one of --target" in capsys.readouterr().err


def test_thumb_instruction_lengths() -> None:
    # movs r0,#1 (16) ; smlad r0,r0,r1,r3 (32) ; bx lr (16) ; vmul.f32 (32)
    code = bytes.fromhex("0120" "20fb0130" "7047" "20ee270a")
    assert mcu_bench.thumb_instruction_count(code) == 4
    assert mcu_bench.thumb_instruction_count(bytes.fromhex("00bf" * 7)) == 7


def test_instruction_lengths_match_objdump(tmp_path: Path) -> None:
    need_arm()
    need("arm-none-eabi-objdump")
    fw = firmware.build_firmware(random_qgraph(0, "mixed"), TARGETS["qemu-m4"], tmp_path / "fw")
    _, symbols = mcu_bench._elf_image(fw.elf)
    dump = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn",
                           "--disassemble=me_argmax_s8", str(fw.elf)],
                          capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in dump.splitlines() if ln.startswith(" ") and ":\t" in ln]
    sym = symbols["me_argmax_s8"]
    segments, _ = mcu_bench._elf_image(fw.elf)
    base, image = segments[0]
    start = (sym.addr & ~1) - base
    code = image[start:start + sym.size]
    assert mcu_bench.thumb_instruction_count(code) == len(lines)


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m3"])
def test_bench_counts_every_layer(tmp_path: Path, core: str) -> None:
    need_arm()
    pytest.importorskip("unicorn")
    pytest.importorskip("elftools")
    run_dir, graph = qgraph_only_run(tmp_path, 6, "mixed")
    f = mcu_bench.bench(run_dir, graph, core, pixels=random_pixels(1, 9)[0])
    # bench() itself checks the emulated logits against golden; here: the bookkeeping.
    assert f["instructions"] == f["predict_glue_instructions"] + sum(
        r["instructions"] for r in f["layers"])
    assert [r["function"] for r in f["layers"]][0] == "me_conv2d_u8_1ch"
    assert f["layers"][-1]["layer"] == "argmax"
    assert all(r["instructions"] > 0 for r in f["layers"])
    assert f["macs"] > 0 and f["instructions"] > f["macs"]
    stack = TARGETS[mcu_bench.BENCH_TARGET[core]].stack_bytes
    assert f["arena_bytes"] > 0 and 0 < f["stack_bytes"] < stack
    assert f["weight_bytes"] >= sum(op.arrays["weight"].size for op in graph.ops
                                    if "weight" in op.arrays)
    assert 0 < f["inference_code_bytes"] <= f["elf_text_bytes"]
    # flash by kind: the int8 weights (the first conv's int16 pixel weights twice over),
    # int32 biases, requantization constants; together what weights.o holds
    assert f["flash_weight_bytes"] >= sum(op.arrays["weight"].size for op in graph.ops
                                          if "weight" in op.arrays)
    assert f["flash_bias_bytes"] == 4 * sum(op.arrays["bias"].size for op in graph.ops
                                            if "bias" in op.arrays)
    assert f["flash_requant_bytes"] > 0
    assert (f["flash_weight_bytes"] + f["flash_bias_bytes"] + f["flash_requant_bytes"]
            <= f["weight_bytes"])
    table = mcu_bench.format_table(graph.name, core, f)
    assert "| **total** |" in table


def test_bench_command_writes_report(tmp_path: Path, capsys) -> None:
    need_arm()
    pytest.importorskip("unicorn")
    run_dir, _ = qgraph_only_run(tmp_path, 7, "dense")
    assert cli.main(["bench", str(run_dir), "--mcu", "cortex-m7", "--size"]) == 0
    assert "instr/MAC" in capsys.readouterr().out
    report = json.loads((run_dir / "report.json").read_text())
    assert report["mcu_bench"]["cortex-m7-Os"]["opt"] == "-Os"
