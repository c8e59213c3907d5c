"""The op registry: `REGISTRY[kind]` is the one definition of each QGraph op kind."""

from . import conv, elementwise, layout, pool  # noqa: F401  (each module registers its kinds)
from .registry import REGISTRY, InvalidOp, OpSpec, spec_of

OP_KINDS = tuple(REGISTRY)

__all__ = ["OP_KINDS", "REGISTRY", "InvalidOp", "OpSpec", "spec_of"]
