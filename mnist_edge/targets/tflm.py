"""Running a `.tflite` in TensorFlow Lite Micro's Python interpreter (`tflite-micro`).

TFLM is the reference of the `tflite` arithmetic: its reference kernels are what the
golden model reproduces. The interpreter runs one input at a time (batch 1, as on a chip).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MnistEdgeError


def tflm_interpreter(model: str | Path | bytes, preserve_all: bool = False):
    """A TFLM interpreter for a file or its bytes; `preserve_all` keeps every tensor
    readable after invoke (for op-by-op comparisons)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise MnistEdgeError("the tflite-micro package is not installed: "
                             "pip install tflite-micro") from None
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    config = (runtime.InterpreterConfig.kPreserveAllTensors if preserve_all
              else runtime.InterpreterConfig.kAllocationRecording)
    try:
        return runtime.Interpreter.from_bytes(data, intrepreter_config=config)
    except (RuntimeError, ValueError) as exc:
        raise MnistEdgeError(f"TFLite Micro cannot load the model ({exc})") from None


def run_tflm(model: str | Path | bytes, x: np.ndarray, interpreter=None) -> np.ndarray:
    """The first output for each input in `x` [N, ...] (each run as a batch of one)."""
    it = interpreter or tflm_interpreter(model)
    outs = []
    for i in range(len(x)):
        it.set_input(x[i:i + 1], 0)
        it.invoke()
        outs.append(np.array(it.get_output(0))[0])
    return np.stack(outs)
