"""`mnist-edge`: one thin entry point; it parses arguments and calls the Python API."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable

from . import __version__
from .errors import one_line


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is so that every `finally` and atomic write cleans
    up on the way out, as for Ctrl-C."""


def _interrupted_early(signum, frame) -> None:
    """Ctrl-C or SIGTERM before main() takes over (imports, parsing): nothing is written yet,
    so leave at once. Raising here could be lost: a signal handled inside an import lock's
    weakref callback only prints "Exception ignored" and the command runs on."""
    code = _usage_interrupted(signum == signal.SIGTERM)
    sys.stderr.flush()
    os._exit(code)


def _terminate(signum, frame) -> None:
    raise Terminated()


def _usage_interrupted(terminated: bool = False) -> int:
    print(f"mnist-edge: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    return 143 if terminated else 130


def _resend_lost_interrupt(unraisable) -> None:
    """An interrupt raised inside a weakref callback or `__del__` is printed and dropped by
    Python; send the signal again a moment later, once that callback has returned."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)
        return
    import threading

    signum = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
    resend = threading.Timer(0.01, os.kill, (os.getpid(), signum))
    resend.daemon = True
    resend.start()


def _forget_handled_interrupt() -> None:
    """CPython 3.11 marks a KeyboardInterrupt that left an `exec` of a string (dataclasses
    build their methods that way) as unhandled, and then ends the process by SIGINT instead
    of our exit code even though main() caught it. A successful string `exec` clears the mark
    (`run_eval_code_obj` in pythonrun.c)."""
    exec("")


# Each command names "module:function"; modules load lazily so `--help` stays fast.
Handler = str


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors (argparse prints usage + message)."""

    def error(self, message: str):  # type: ignore[override]
        raise SystemExit(_usage_error(f"{message} (see `{self.prog} --help`)"))


def _usage_error(message: str) -> int:
    print(f"mnist-edge: error: {message}", file=sys.stderr)
    return 2


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a count of images, vectors, epochs...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (runs/<name>) holding the QGraph")


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="the data: a folder with the MNIST IDX files (default: "
                   "$MNIST_EDGE_DATA, the cache, then download), an .npz with x (inputs in the "
                   "model's layout, uint8 pixels or float features) and optional y (labels), "
                   "or an image folder class_name/*.png|jpg (resized, PIL bilinear)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mnist-edge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mnist-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("data", "mnist_edge.data:data_command", "check the MNIST files, show samples")
    from . import data

    data.cli_args(p)

    p = command("import", "mnist_edge.commands:import_command",
                "import a float ONNX model (PyTorch, Keras), a Keras .keras/.h5 file or an int8 "
                ".tflite into runs/<name>")
    p.add_argument("model", metavar="MODEL", help="the float .onnx file; a Keras .keras or "
                   "legacy .h5 file (built-in layers only: a Lambda or custom object is "
                   "refused, never run; loaded by Keras 3 on the torch backend and exported to "
                   "ONNX); or an int8 .tflite (taken as it is: a QGraph in the tflite "
                   "arithmetic, no calibration)")
    p.add_argument("--name", help="run name (default: the file name without its extension)")
    p.add_argument("--runs", default="runs", help="folder holding the run folders")
    _add_data(p)
    _add_import_args(p)

    p = command("train", "mnist_edge.commands:train_command", "train a zoo model (float)")
    _add_train_args(p)

    p = command("quantize", "mnist_edge.commands:quantize_command",
                "fold BatchNorm, calibrate, quantize to an int8 QGraph")
    _add_run(p)
    _add_data(p)
    _add_quant_args(p)
    p.add_argument("--arithmetic", choices=["onnx", "tflite"], default="onnx",
                   help="the QGraph's integer contract: onnx (onnxruntime's) or tflite "
                   "(TFLite Micro's, quantized as TFLite's converter does; then "
                   "`export tflite`)")

    p = command("analyze", "mnist_edge.commands:analyze_command",
                "per-layer parameters, MACs, flash and RAM")
    _add_run(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = command("evaluate", "mnist_edge.commands:evaluate_command",
                "float and int8 (golden) accuracy on the test set")
    _add_run(p)
    _add_data(p)
    p.add_argument("--limit", type=positive_int, help="only the first N test images")

    p = command("export", "mnist_edge.commands:export_command",
                "export ONNX models, or an int8 .tflite (tflite-arithmetic QGraph)")
    p.add_argument("target", choices=["onnx", "tflite"])
    _add_run(p)
    p.add_argument("--format", choices=["qoperator", "qdq"],
                   help="onnx: int8 ONNX flavour (default qoperator); qdq also writes "
                   "model.int8.qdq.onnx")
    p.add_argument("--activations", choices=["uint8", "int8"],
                   help="onnx: activation type in the int8 ONNX (default uint8, which runs "
                   "faster on x86)")
    p.add_argument("-o", "--out", help="tflite: the file to write (default: "
                   "RUN/model.int8.tflite)")

    p = command("generate", "mnist_edge.commands:generate_command",
                "generate C (MCU), HLS C++ (FPGA), RTL or a WebAssembly page from the QGraph")
    p.add_argument("target", choices=["c", "hls", "rtl", "web"])
    _add_run(p)
    p.add_argument("--out", help="output folder (default: <run>/c, <run>/fpga/..., <run>/web)")
    p.add_argument("--requant", choices=["float", "int"], default="float",
                   help="C requantization: float32 (FPU) or integer-only (a tflite graph is "
                   "always TFLM's integer arithmetic: the option does not apply)")
    p.add_argument("--vectors", type=positive_int, default=20,
                   help="test inputs in test_vectors (at least 1: the self-test runs them; "
                   "the web page embeds them): the first of --data, else MNIST for a 1x28x28 "
                   "model, seeded random inputs for any other")
    _add_data(p)
    p.add_argument("--force", action="store_true",
                   help="replace an --out folder holding an earlier mnist-edge output "
                   "(a folder without mnist-edge's manifest.json is never replaced)")
    _add_fpga(p, required=False)
    p.add_argument("--prefix", help="C: put every exported symbol, macro and file name under "
                   "this prefix (default mnist_edge), so that two models link together")

    p = command("validate", "mnist_edge.commands:validate_command",
                "run a backend on the test set and compare with golden bit for bit")
    _add_run(p)
    _add_data(p)
    p.add_argument("--backend", action="append", required=True,
                   help="tflm, litert (LiteRT's optimized kernels), litert-ref (its reference "
                   "kernels), onnxruntime, c, c-x86, c-int, hls, wasm, qemu-m4, qemu-m3, qemu-m7, "
                   "qemu-m0, qemu-m33, qemu-m55, qemu-rv32imc, qemu-rv32imfc, unicorn-m0 (a "
                   "Cortex-M0 with 4 MB + 4 MB, in unicorn's M0 model), rtl, rtl-uart, "
                   "rtl-netlist "
                   "(repeatable)")
    p.add_argument("--limit", type=positive_int, help="only the first N test images")
    p.add_argument("--inputs", default="mnist", help="mnist (the test images) or random:N "
                   "(N seeded random and structured inputs: all -128, all 127, ramps, "
                   "checkerboards; for models without a data set here, e.g. a .tflite)")
    p.add_argument("--seed", type=int, default=0, help="seed of --inputs random:N")
    p.add_argument("--model-file", help="ONNX file to validate instead of <run>/model.int8.onnx")
    _add_fpga(p, required=False)

    p = command("synth", "mnist_edge.targets.fpga_synth:synth_command",
                "RTL through yosys + nextpnr to a bitstream: resources, Fmax, latency")
    _add_run(p)
    _add_fpga(p, required=True)
    p.add_argument("--out", help="output folder (default: <run>/fpga/synth-<fpga>)")
    p.add_argument("--cycles", type=int, help="cycles per image for the latency (default: "
                   "measured by `validate --backend rtl`, else simulated on 3 images)")
    p.add_argument("--seeds", help="nextpnr seeds, comma-separated (default: 1,2,3)")
    p.add_argument("--jobs", type=int, default=1,
                   help="place-and-route runs at once, one per seed (default: 1)")

    p = command("flash", "mnist_edge.targets.firmware:flash_command",
                "build firmware and run it in QEMU or flash a real board")
    _add_run(p)
    _add_data(p)
    p.add_argument("--target", help="emulated target: qemu-m4, qemu-m3, qemu-m7, qemu-m0, "
                   "qemu-m33, qemu-m55, qemu-rv32imc, qemu-rv32imfc, unicorn-m0")
    p.add_argument("--board", help="real board: nucleo-f411re, nrf52840dk")
    p.add_argument("--probe", choices=["pyocd", "openocd"], default="pyocd")
    p.add_argument("--dry-run", action="store_true", help="print the commands, keep the images")
    p.add_argument("--limit", type=positive_int, default=20, help="test images to run in QEMU")

    p = command("bench", "mnist_edge.commands:bench_command",
                "exact instruction counts, flash and RAM for a Cortex-M or RISC-V core")
    _add_run(p)
    _add_data(p)
    p.add_argument("--mcu", choices=["cortex-m4", "cortex-m3", "cortex-m7", "cortex-m0",
                                     "cortex-m33", "cortex-m55", "cortex-m55-nomve", "rv32imc",
                                     "rv32imfc"], default="cortex-m4",
                   help="cortex-m55 runs the Helium (MVE) kernels, cortex-m55-nomve the same core "
                   "with MVE off (the scalar DSP kernels); both are counted in QEMU")
    p.add_argument("--size", action="store_true", help="build with -Os instead of -O2")

    p = command("report", "mnist_edge.commands:report_command",
                "write report.md / report.html from report.json")
    _add_run(p)

    p = command("demo", "mnist_edge.demo.app:demo_command",
                "draw a digit in the browser: every backend's int8 logits side by side")
    _add_run(p)
    _add_data(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--backends", help="comma-separated backends to offer (default: all that "
                   "this machine can run)")

    p = command("build", "mnist_edge.commands:build_command",
                "everything: data, train, quantize, evaluate, export, generate, validate")
    _add_train_args(p)
    _add_quant_args(p)
    p.add_argument("--from", dest="from_file", metavar="MODEL",
                   help="import this float model (.onnx, or Keras .keras/.h5) instead of "
                        "training a zoo model")
    _add_import_args(p)
    p.add_argument("--backends", default="onnxruntime,c,c-int",
                   help="backends validated at the end (comma-separated)")
    return parser


def _add_fpga(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--fpga", choices=["ice40-up5k", "ecp5-25k", "ecp5-85k"], required=required,
                   help="RTL target device (default for generate/validate: ecp5-25k)")
    p.add_argument("--lanes", type=int, help="RTL: parallel MAC lanes (default: per device, "
                   "16 on the UP5K: even, at most 16, two per SB_MAC16; 32 on the ECP5-25F, "
                   "64 on the 85F)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .model_names import DEFAULT_MODEL, MODEL_NAMES

    p.add_argument("--model", default=DEFAULT_MODEL, choices=MODEL_NAMES)
    p.add_argument("--name", help="run name (default: the model name)")
    p.add_argument("--runs", default="runs", help="folder holding the run folders")
    _add_data(p)
    p.add_argument("--epochs", type=positive_int, help="maximum epochs (default: per model)")
    p.add_argument("--batch-size", type=positive_int, help="default: per model (128)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: per model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (default: "
                   "per model)")
    p.add_argument("--no-augment", action="store_true", help="disable shift/rotate augmentation")
    p.add_argument("--max-shift", type=float, metavar="PIXELS",
                   help="augmentation: largest random shift (default: per model)")
    p.add_argument("--max-degrees", type=float, metavar="DEGREES",
                   help="augmentation: largest random rotation (default: per model)")
    p.add_argument("--max-scale", type=float, metavar="FRACTION",
                   help="augmentation: largest random zoom, e.g. 0.1 = 0.9x to 1.1x "
                   "(default: per model; 0 = none)")
    p.add_argument("--ema", type=float, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999) and "
                   "validate and save it instead of the last step's (default: per model; 0 = off)")
    p.add_argument("--label-smoothing", type=float, metavar="EPS",
                   help="cross-entropy label smoothing (default: per model; 0 = off)")
    p.add_argument("--weight-decay", type=float, metavar="WD",
                   help="decoupled weight decay, AdamW (default: per model; 0 = plain Adam)")
    p.add_argument("--teacher", metavar="RUN", help="distil from this run's float model "
                   "('none' to train on labels only; default: per model)")
    p.add_argument("--train-limit", type=positive_int,
                   help="train on only the first N images (tests)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: all cores)")


def _add_import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--normalize", metavar="MEAN,STD",
                   help="the model expects (pixel/255 - MEAN)/STD, e.g. 0.1307,0.3081, or per "
                   "channel M1,M2,M3/S1,S2,S3")
    p.add_argument("--layout", choices=["auto", "nchw", "nhwc"], default="auto",
                   help="input layout of an image model (auto: from its first node, else NHWC "
                   "when only the last dim is 1 or 3)")
    p.add_argument("--input", choices=["pixels", "features"], default="pixels",
                   help="what the model reads: uint8 pixels (it sees pixel/255) or float "
                   "features (quantized with a calibrated scale and zero point)")


def _add_quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", choices=["minmax", "percentile"], default="percentile")
    p.add_argument("--calib-images", type=positive_int, default=2000)
    p.add_argument("--qat-epochs", type=int, help="quantization-aware fine-tuning epochs "
                   "(default: per model; 0 = post-training quantization only)")


def _resolve(handler: Handler) -> Callable[[argparse.Namespace], int]:
    module, func = handler.split(":")
    return getattr(importlib.import_module(module), func)


def _fail(exc: BaseException) -> int:
    import os

    if os.environ.get("MNIST_EDGE_DEBUG") == "1":
        import traceback

        traceback.print_exception(exc)
    message, code = one_line(exc)
    print(f"mnist-edge: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Parse, run the handler; every failure is one line on stderr (exit 2, bugs exit 3)."""
    try:
        args = build_parser().parse_args(argv)
        # From here Ctrl-C is a KeyboardInterrupt again, so every `finally` and atomic
        # write cleans up on the way out.
        if signal.getsignal(signal.SIGINT) is _interrupted_early:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if signal.getsignal(signal.SIGTERM) is _interrupted_early:
            signal.signal(signal.SIGTERM, _terminate)
        return int(_resolve(args.handler)(args) or 0)
    except KeyboardInterrupt as exc:
        return _usage_interrupted(isinstance(exc, Terminated))
    except Exception as exc:  # the one error path: no traceback reaches a user
        return _fail(exc)


def run() -> None:
    """The program (`mnist-edge`, `python -m mnist_edge.cli`): main() with the signal handling
    a process needs and a library caller of main() must not get."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when ignored
        signal.signal(signal.SIGINT, _interrupted_early)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupted_early)
    sys.unraisablehook = _resend_lost_interrupt
    code = main()
    if code in (130, 143):
        _forget_handled_interrupt()
    sys.exit(code)


if __name__ == "__main__":
    run()
