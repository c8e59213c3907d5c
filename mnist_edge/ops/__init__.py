"""The op registry: `REGISTRY[kind]` is the one definition of each QGraph op kind."""

from . import conv, elementwise, layout, pool, softmax  # noqa: F401  (each registers its kinds)
from .registry import REGISTRY, InvalidOp, OpSpec, TfliteSemantics, spec_of

OP_KINDS = tuple(REGISTRY)
# The kinds defined in each arithmetic; a backend that implements one lowers all of its kinds.
ONNX_KINDS = tuple(k for k, s in REGISTRY.items() if "onnx" in s.arithmetics)
TFLITE_KINDS = tuple(k for k, s in REGISTRY.items() if "tflite" in s.arithmetics)

__all__ = ["ONNX_KINDS", "OP_KINDS", "REGISTRY", "TFLITE_KINDS", "InvalidOp", "OpSpec",
           "TfliteSemantics", "spec_of"]
