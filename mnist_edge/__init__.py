"""mnist-edge: small neural networks to bit-exact int8 on microcontrollers and FPGAs.

    import mnist_edge as me
    m = me.train("edge").quantize()
    m.validate("c", "qemu-m4", limit=100)

See `mnist_edge.api` for every entry point; the CLI (`mnist-edge`) calls the same ones.
"""

from typing import TYPE_CHECKING

from .errors import MnistEdgeError

if TYPE_CHECKING:
    from .api import (
        Analysis,
        Bench,
        Evaluation,
        Model,
        Prediction,
        Report,
        Validation,
        from_keras,
        from_onnx,
        from_tflite,
        from_torch,
        load,
        train,
    )

__version__ = "0.1.0"

__all__ = [
    "Analysis", "Bench", "Evaluation", "MnistEdgeError", "Model", "Prediction", "Report",
    "Validation", "__version__", "from_keras", "from_onnx", "from_tflite", "from_torch",
    "load", "train",
]


def __getattr__(name: str):
    """The API on first use: `python -m mnist_edge.cli` then installs its Ctrl-C handler
    before NumPy and the rest load, and `mnist-edge --help` starts at once."""
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mnist_edge' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Tab completion in a notebook lists the API before its first use."""
    return sorted({*globals(), *__all__})
