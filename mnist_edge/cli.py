"""`mnist-edge`: one thin entry point. Parses arguments and calls the modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from . import __version__
from .errors import MnistEdgeError

# Each command names "module:function"; modules load lazily so `--help` stays fast.
Handler = str


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (runs/<name>) holding the QGraph")


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="folder with the MNIST IDX files (else $MNIST_EDGE_DATA, "
                   "the cache, then download)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-edge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mnist-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("data", "mnist_edge.data:data_command", "check the MNIST files, show samples")
    from . import data

    data.cli_args(p)

    p = command("train", "mnist_edge.train:train_command", "train a zoo model (float)")
    _add_train_args(p)

    p = command("quantize", "mnist_edge.quantize:quantize_command",
                "fold BatchNorm, calibrate, quantize to an int8 QGraph")
    _add_run(p)
    _add_data(p)
    _add_quant_args(p)

    p = command("analyze", "mnist_edge.analyze:analyze_command",
                "per-layer parameters, MACs, flash and RAM")
    _add_run(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = command("evaluate", "mnist_edge.pipeline:evaluate_command",
                "float and int8 (golden) accuracy on the test set")
    _add_run(p)
    _add_data(p)
    p.add_argument("--limit", type=int, help="only the first N test images")

    p = command("export", "mnist_edge.backends.onnx:export_command", "export ONNX models")
    p.add_argument("target", choices=["onnx"])
    _add_run(p)
    p.add_argument("--format", choices=["qoperator", "qdq"], default="qoperator",
                   help="int8 ONNX flavour; qdq also writes model.int8.qdq.onnx")
    p.add_argument("--activations", choices=["uint8", "int8"], default="uint8",
                   help="activation type in the int8 ONNX (uint8 runs faster on x86)")

    p = command("generate", "mnist_edge.pipeline:generate_command",
                "generate C (MCU), HLS C++ (FPGA) or RTL from the QGraph")
    p.add_argument("target", choices=["c", "hls", "rtl"])
    _add_run(p)
    p.add_argument("--out", help="output folder (default: <run>/c or <run>/fpga/...)")
    p.add_argument("--requant", choices=["float", "int"], default="float",
                   help="C requantization: float32 (FPU) or integer-only")
    p.add_argument("--vectors", type=int, default=20, help="test images in test_vectors")
    p.add_argument("--prefix", help="C: put every exported symbol, macro and file name under "
                   "this prefix (default mnist_edge), so that two models link together")

    p = command("validate", "mnist_edge.pipeline:validate_command",
                "run a backend on the test set and compare with golden bit for bit")
    _add_run(p)
    _add_data(p)
    p.add_argument("--backend", action="append", required=True,
                   help="onnxruntime, c, c-x86, c-int, hls, qemu-m4, qemu-m3, qemu-m7, qemu-m0, "
                   "qemu-m33, qemu-rv32imc, qemu-rv32imfc (repeatable)")
    p.add_argument("--limit", type=int, help="only the first N test images")
    p.add_argument("--model-file", help="ONNX file to validate instead of <run>/model.int8.onnx")

    p = command("flash", "mnist_edge.targets.firmware:flash_command",
                "build firmware and run it in QEMU or flash a real board")
    _add_run(p)
    _add_data(p)
    p.add_argument("--target", help="emulated target: qemu-m4, qemu-m3, qemu-m7, qemu-m0, "
                   "qemu-m33, qemu-rv32imc, qemu-rv32imfc")
    p.add_argument("--board", help="real board: nucleo-f411re, nrf52840dk")
    p.add_argument("--probe", choices=["pyocd", "openocd"], default="pyocd")
    p.add_argument("--dry-run", action="store_true", help="print the commands, keep the images")
    p.add_argument("--limit", type=int, default=20, help="test images to run in QEMU")

    p = command("bench", "mnist_edge.targets.mcu_bench:bench_command",
                "exact instruction counts, flash and RAM for a Cortex-M or RISC-V core")
    _add_run(p)
    _add_data(p)
    p.add_argument("--mcu", choices=["cortex-m4", "cortex-m3", "cortex-m7", "cortex-m0",
                                     "cortex-m33", "rv32imc", "rv32imfc"], default="cortex-m4")
    p.add_argument("--size", action="store_true", help="build with -Os instead of -O2")

    p = command("report", "mnist_edge.pipeline:report_command",
                "write report.md / report.html from report.json")
    _add_run(p)

    p = command("build", "mnist_edge.pipeline:build_command",
                "everything: data, train, quantize, evaluate, export, generate, validate")
    _add_train_args(p)
    _add_quant_args(p)
    p.add_argument("--backends", default="onnxruntime,c,c-int",
                   help="backends validated at the end (comma-separated)")
    return parser


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .models import DEFAULT_MODEL, MODEL_NAMES

    p.add_argument("--model", default=DEFAULT_MODEL, choices=MODEL_NAMES)
    p.add_argument("--name", help="run name (default: the model name)")
    p.add_argument("--runs", default="runs", help="folder holding the run folders")
    _add_data(p)
    p.add_argument("--epochs", type=int, help="maximum epochs (default: per model)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, help="peak learning rate (default: per model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=4, help="early-stopping patience (epochs)")
    p.add_argument("--no-augment", action="store_true", help="disable shift/rotate augmentation")
    p.add_argument("--teacher", metavar="RUN", help="distil from this run's float model "
                   "('none' to train on labels only; default: per model)")
    p.add_argument("--train-limit", type=int, help="train on only the first N images (tests)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")


def _add_quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", choices=["minmax", "percentile"], default="percentile")
    p.add_argument("--calib-images", type=int, default=2000)
    p.add_argument("--qat-epochs", type=int, help="quantization-aware fine-tuning epochs "
                   "(default: per model; 0 = post-training quantization only)")


def _resolve(handler: Handler) -> Callable[[argparse.Namespace], int]:
    module, func = handler.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_resolve(args.handler)(args) or 0)
    except MnistEdgeError as exc:
        print(f"mnist-edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mnist-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
