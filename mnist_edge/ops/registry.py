"""The op registry: one entry per QGraph op kind, the only place an op is defined.

An entry holds the kind's attributes (with defaults and the checks that make a
hostile file a one-line error), the arrays it carries, shape inference, extra
invariants, the worst-case accumulator bound and the golden semantics in each
arithmetic the kind exists in: `onnx` (`golden`, today's contract) and `tflite`
(`tflite`: TFLM's Prepare, which derives the op's constants once, and its Eval). The
QGraph validates from it, golden executes from it, and every backend keeps a lowering
table keyed by the same kinds (tests/test_op_registry.py fails when one is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MnistEdgeError

if TYPE_CHECKING:
    from ..qgraph import QOp, QTensor

REQUIRED = object()


class InvalidOp(MnistEdgeError):
    """An op breaks its kind's rules; the QGraph prefixes the op's name and kind."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(v: Any, count: int, least: int) -> bool:
    return (isinstance(v, list | tuple) and len(v) == count
            and all(_is_int(e) and e >= least for e in v))


@dataclass(frozen=True)
class Attr:
    """One attribute: a predicate on its JSON value, what it must be (for errors), a default."""

    check: Callable[[Any], bool]
    what: str
    default: Any = REQUIRED


PAIR = Attr(lambda v: _ints(v, 2, 1), "two integers >= 1")
PADDING = Attr(lambda v: _ints(v, 4, 0), "four integers >= 0 (top, left, bottom, right)",
               [0, 0, 0, 0])
STRIDE = Attr(PAIR.check, PAIR.what, [1, 1])
GROUPS = Attr(lambda v: _is_int(v) and v >= 1, "an integer >= 1", 1)
ACTIVATION = Attr(lambda v: isinstance(v, str) and 0 < len(v) <= 64, "an activation name", None)
PARAMS = Attr(lambda v: isinstance(v, dict) and all(
    isinstance(k, str) and isinstance(x, int | float) and not isinstance(x, bool)
    and np.isfinite(x) for k, x in v.items()), "a mapping of names to finite numbers", None)

DILATION = Attr(PAIR.check, PAIR.what, [1, 1])

Inputs = list["QTensor"]
Constants = dict[str, Any]


@dataclass(frozen=True)
class TfliteSemantics:
    """An op kind in the `tflite` arithmetic, split as TFLM splits a kernel.

    `prepare` derives every per-op constant (Q31 multipliers and shifts, clamp ranges,
    offsets) from the scales once, as TFLM's Prepare does (CalculateOpDataConv...), and is
    what every backend lays out; `golden` is the Eval over batched CxHxW int8 tensors;
    `check` adds the invariants TFLM's Prepare enforces for this kind.
    """

    prepare: Callable[[QOp, Inputs], Constants]
    golden: Callable[[QOp, list[np.ndarray], Inputs, Constants], np.ndarray]
    check: Callable[[QOp, Inputs], None] | None = None


def no_constants(op: QOp, ins: Inputs) -> Constants:
    """The prepare step of a kind whose Eval needs no derived constant."""
    return {}


def same_golden(golden: Callable[[QOp, list[np.ndarray], Inputs], np.ndarray]
                ) -> Callable[[QOp, list[np.ndarray], Inputs, Constants], np.ndarray]:
    """The tflite Eval of a kind that computes the same in both arithmetics (tables,
    moves, max)."""
    return lambda op, xs, ins, constants: golden(op, xs, ins)


@dataclass(frozen=True)
class OpSpec:
    """Everything the toolchain knows about one op kind."""

    kind: str
    summary: str
    arity: int  # number of inputs; 0 means two or more
    infer_shape: Callable[[QOp, Inputs], tuple[int, ...]]
    golden: Callable[[QOp, list[np.ndarray], Inputs], np.ndarray] | None  # None: not in onnx
    attrs: dict[str, Attr] = field(default_factory=dict)
    arrays: dict[str, str] = field(default_factory=dict)  # name -> dtype
    check: Callable[[QOp, Inputs], None] | None = None
    acc_bound: Callable[[QOp, Inputs], int] = lambda op, ins: 0
    multiplier: Callable[[QOp, Inputs], np.ndarray] | None = None
    keeps_quant: bool = False  # output scale and zero point must equal the input's
    onnx_check: Callable[[QOp, Inputs], None] | None = None  # invariants of onnx only
    tflite: TfliteSemantics | None = None  # None: the kind has no tflite arithmetic

    @property
    def arithmetics(self) -> tuple[str, ...]:
        """The arithmetics this kind is defined in."""
        return tuple(a for a, there in (("onnx", self.golden is not None),
                                        ("tflite", self.tflite is not None)) if there)

    def attr(self, op: QOp, name: str) -> Any:
        """The attribute's value, or its default when the op leaves it out."""
        if name in op.attrs:
            return op.attrs[name]
        default = self.attrs[name].default
        return None if default is REQUIRED else default

    def with_defaults(self, attrs: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in self.attrs.items() if v.default not in (REQUIRED, None)}
        out = {k: list(v.default) if isinstance(v.default, list) else v.default
               for k, v in out.items()}
        out.update(attrs)
        return out

    def check_attrs(self, op: QOp) -> None:
        unknown = sorted(set(op.attrs) - set(self.attrs))
        if unknown:
            raise InvalidOp(f"unknown attribute(s) {', '.join(unknown)}; "
                            f"{self.kind} takes: {', '.join(sorted(self.attrs)) or 'none'}")
        for name, spec in self.attrs.items():
            if name not in op.attrs:
                if spec.default is REQUIRED:
                    raise InvalidOp(f"attribute {name!r} is missing ({spec.what})")
                continue
            if not spec.check(op.attrs[name]):
                raise InvalidOp(f"attribute {name!r} is {op.attrs[name]!r}, must be {spec.what}")


REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    if spec.kind in REGISTRY:
        raise RuntimeError(f"op kind {spec.kind!r} registered twice")
    REGISTRY[spec.kind] = spec
    return spec


def spec_of(kind: str) -> OpSpec:
    try:
        return REGISTRY[kind]
    except (KeyError, TypeError):
        raise InvalidOp(f"unsupported op kind {kind!r}; supported: "
                        f"{', '.join(REGISTRY)}") from None


def centred_range(t: QTensor) -> tuple[int, int]:
    """[lo, hi] of q - z over every int8 q; lo <= 0 <= hi for a valid zero point."""
    return -128 - t.zero_point, 127 - t.zero_point
