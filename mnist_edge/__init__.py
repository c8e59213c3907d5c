"""mnist-edge: small neural networks to bit-exact int8 on microcontrollers and FPGAs.

    import mnist_edge as me
    m = me.train("edge").quantize()
    m.validate("c", "qemu-m4", limit=100)

See `mnist_edge.api` for every entry point; the CLI (`mnist-edge`) calls the same ones.
"""

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
from .errors import MnistEdgeError

__version__ = "0.1.0"

__all__ = [
    "Analysis", "Bench", "Evaluation", "MnistEdgeError", "Model", "Prediction", "Report",
    "Validation", "__version__", "from_keras", "from_onnx", "from_tflite", "from_torch",
    "load", "train",
]
