"""The constant arrays of the generated C, laid out for the kernels' inner loops.

* conv weights go from OIHW to OHWI (activations are HWC, so one kernel row of one
  output channel is a single contiguous run of kernel_w * in_c bytes);
* depthwise weights (tflite) go tap-major in blocks of four output channels,
  [block][ky][kx][4] (the last block narrower), each weight as an int16 (its byte, then
  its sign byte): each tap of a block is two words, the q15 pairs {w0, w1} and {w2, w3}
  that the DSP cores' 16 x 16 multiplies take as they are (no unpacking);
* a linear layer fed by a flatten gets its columns permuted from CHW to HWC order;
* a tflite linear layer or conv that `c_planner.is_pair_packed` accepts also carries the
  pair-packed layout (`pair_packed`; a conv's rows padded with zeros to whole words of
  taps), which Thumb-2 DSP builds compile instead (`ME_PAIR_PACKED`);
* the pixel conv (one input channel) gets int16 weights [cout][taps rounded up to
  even], one SMLAD operand per tap pair;
* biases absorb the input zero point, ``bias - z_x * sum(w)``, so the inner loop is
  a plain int8 dot product (the pixel conv reads ``p = q - z_x`` directly and keeps
  the bias as is);
* requantization constants are float32 M (float mode) or (m, shift) (integer mode),
  from `QGraph.multiplier` and `requant.decompose` only; in the tflite arithmetic, the
  Q31 multipliers and shifts of `QGraph.prepare` (TFLM's Prepare), laid out as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..qgraph import QGraph
from ..requant import decompose
from .c_planner import Step, is_depthwise, is_pair_packed

DATA_PREFIX = "mnist_edge_"


@dataclass
class CArray:
    """One `const` array: C type, symbol, values and a comment line; `packed`, when set,
    holds the values in another layout (rows padded with zeros to whole words: as many
    values or a few more), the initializer where ME_PAIR_PACKED is 1."""

    ctype: str
    name: str
    values: np.ndarray
    comment: str = ""
    packed: np.ndarray | None = None

    @property
    def length(self) -> int:
        """Elements the C array declares: the longer layout (the other is zero-filled)."""
        return max(self.values.size, 0 if self.packed is None else self.packed.size)

    @property
    def nbytes(self) -> int:
        return int(self.length * {"int8_t": 1, "int16_t": 2, "int32_t": 4,
                                  "float": 4}[self.ctype])


@dataclass
class LayerArrays:
    weights: CArray | None = None
    bias: CArray | None = None
    mult: CArray | None = None
    shift: CArray | None = None
    table: CArray | None = None

    def all(self) -> list[CArray]:
        found = [self.weights, self.bias, self.mult, self.shift, self.table]
        return [a for a in found if a is not None]


def c_identifier(name: str) -> str:
    """A lowercase C identifier for an op name (`features.0` -> `features_0`)."""
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", name).lower()
    return ident if ident and not ident[0].isdigit() else f"op_{ident}"


def data_symbol(op_name: str, prefix: str = DATA_PREFIX) -> str:
    """Prefix for an op's constants; kernels and types use another prefix (`me_` by default),
    so the two never clash."""
    return prefix + c_identifier(op_name)


def float_literal(value: float) -> str:
    """An exact C99 hexadecimal float32 literal (no decimal rounding anywhere)."""
    v = float(np.float32(value))
    if v == 0.0:
        return "0.0f"
    sign = "-" if v < 0 else ""
    mant, exp = float.hex(abs(v))[2:].split("p")
    head, _, frac = mant.partition(".")
    frac = frac.rstrip("0")
    return f"{sign}0x{head}{'.' + frac if frac else ''}p{int(exp)}f"


def requant_arrays(graph: QGraph, index: int, ident: str, mode: str) -> tuple[CArray,
                                                                             CArray | None]:
    if graph.arithmetic == "tflite":  # the mode does not apply: TFLM's integers, as prepared
        c = graph.prepare(index)
        return (CArray("int32_t", f"{ident}_mult", np.asarray(c["mult"], np.int64)),
                CArray("int8_t", f"{ident}_shift", np.asarray(c["shift"], np.int64)))
    mult = graph.multiplier(index)
    if mode == "float":
        return CArray("float", f"{ident}_mult", mult.astype(np.float32)), None
    m, shift = decompose(mult)
    if np.any(shift < -128) or np.any(shift > 127):
        raise ValueError(f"{ident}: requantization shift outside int8")
    return (CArray("int32_t", f"{ident}_mult", m.astype(np.int64)),
            CArray("int8_t", f"{ident}_shift", shift.astype(np.int64)))


def conv_weights_ohwi(weight: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1))


def depthwise_weights(weight: np.ndarray) -> np.ndarray:
    """[out_c][1][kh][kw] -> blocks of 4 output channels, each [taps][width] (tap-major),
    every weight two int8 bytes, little-endian int16: the weight, then 0 or -1 (its sign)."""
    flat = weight.reshape(weight.shape[0], -1).astype(np.int64)
    laid = np.concatenate([flat[o:o + 4].T.reshape(-1) for o in range(0, flat.shape[0], 4)])
    return np.stack([laid, np.where(laid < 0, -1, 0)], axis=1).reshape(-1)


def pixel_weights(weight: np.ndarray) -> np.ndarray:
    """[cout][taps rounded up to even] int16 for the one-channel pixel conv: each word is
    one SMLAD operand {w[2j], w[2j+1]}; the padding tap is 0."""
    flat = weight.reshape(weight.shape[0], -1).astype(np.int64)
    if flat.shape[1] % 2:
        flat = np.concatenate([flat, np.zeros((flat.shape[0], 1), np.int64)], axis=1)
    return flat


def pair_packed(rows: np.ndarray, block: int = 4) -> np.ndarray:
    """Int8 weights [R][k] (R % block == 0, k % 4 == 0) as words that each hold two rows r,
    r' at two taps, for 3 instructions per 4 MACs and no SXTB16 on the weights.

    Halfword j of a word is H_j = (w[r'][t_j] << 8) | (w[r][t_j] + 128): its low byte is
    unsigned (w + 128), its high byte the signed weight of r', so H_j = lo_u + 256 * hi
    exactly, any int16. With X the q15 pair (x[t_0], x[t_1]):

        A += SMLAD(W, X)                = sum((w[r] + 128) * x) + 256 * sum(w[r'] * x)
        W &= 0xFF00FF00;  B += SMLAD(W, X) = 256 * sum(w[r'] * x)

    so row r' = B >> 8 and row r = A - B - 128 * sum(x) (A may wrap: mod 2^32 is exact).
    B is exact while |sum(w[r'] * x)| < 2^23, which c_planner.pair_pack_bound_ok proves for
    every int8 x. Order: blocks of `block` rows (4, the fully connected kernel's: pairs
    (0, 1) and (2, 3); 2, the conv's: one pair; the first row of each pair the low byte),
    inside a block groups of 4 taps t..t+3; a group is the first pair's (t, t + 2) and
    (t + 1, t + 3), then the next pair's (the SXTB16 and SXTB16 ROR #8 of the input word
    x[t..t+3] are those q15 pairs)."""
    w = rows.astype(np.int64)
    r, k = w.shape
    if block not in (2, 4) or r % block or k % 4:
        raise ValueError(f"pair_packed: {r} x {k} weights are not blocks of {block} x 4")
    # [block][pair][lo, hi][group][tap], the taps of each group in word order
    blocks = w.reshape(r // block, block // 2, 2, k // 4, 4)[..., [0, 2, 1, 3]]
    lo, hi = blocks[:, :, 0] + 128, blocks[:, :, 1]  # [block][pair][group][tap]
    laid = np.stack([lo, hi], axis=-1).transpose(0, 2, 1, 3, 4).reshape(-1)
    return np.where(laid > 127, laid - 256, laid)


def linear_weights_hwc(weight: np.ndarray, flat_from: tuple[int, ...] | None) -> np.ndarray:
    if flat_from is None or len(flat_from) != 3:
        return weight
    c, h, w = flat_from
    return np.ascontiguousarray(weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1)
                                .reshape(weight.shape[0], -1))


def folded_bias(bias: np.ndarray, weight: np.ndarray, zero_point: int) -> np.ndarray:
    """bias - z_x * sum(w): the zero-point term of sum((x - z_x) * w), precomputed."""
    wsum = weight.reshape(weight.shape[0], -1).astype(np.int64).sum(axis=1)
    folded = bias.astype(np.int64) - int(zero_point) * wsum
    if np.any(np.abs(folded) >= 2**31):
        raise ValueError("folded bias overflows int32")
    return folded


def per_tensor(graph: QGraph, step: Step) -> bool:
    """A tflite fully connected layer whose channels share one multiplier and shift (TFLite
    quantizes FULLY_CONNECTED per tensor): its C keeps one pair, not one per channel
    (`requant_params.per_tensor`; every FC kernel requantizes through requantize_n)."""
    if graph.arithmetic != "tflite" or step.kind != "linear":
        return False
    c = graph.prepare(step.conv)
    mult, shift = np.asarray(c["mult"]).reshape(-1), np.asarray(c["shift"]).reshape(-1)
    return bool(np.all(mult == mult[0]) and np.all(shift == shift[0]))


def step_arrays(graph: QGraph, step: Step, mode: str, prefix: str = DATA_PREFIX) -> LayerArrays:
    """Every constant one step needs, under names derived from its ops."""
    out = LayerArrays()
    if step.conv is not None:
        i = step.conv
        op = graph.ops[i]
        ident = data_symbol(op.name, prefix)
        x = graph.input_of(i)
        if op.kind in ("conv2d", "linear"):
            w, b = op.arrays["weight"], op.arrays["bias"]
            if step.kind == "conv_u8":
                laid = pixel_weights(w)
            elif is_depthwise(graph, step):
                laid = depthwise_weights(w)
            elif op.kind == "conv2d":
                laid = conv_weights_ohwi(w)
            else:
                laid = linear_weights_hwc(w, step.flat_from)
            bias = b.astype(np.int64) if step.kind == "conv_u8" else folded_bias(b, w, x.zero_point)
            ctype = "int16_t" if step.kind == "conv_u8" else "int8_t"
            out.weights = CArray(ctype, f"{ident}_weights", laid.astype(np.int64))
            if is_pair_packed(graph, step):
                rows = laid.reshape(laid.shape[0], -1)  # a conv's: whole words, a pair a block
                out.weights.packed = (pair_packed(rows) if step.kind == "linear" else
                                      pair_packed(np.pad(rows, ((0, 0), (0, -rows.shape[1] % 4))),
                                                  block=2))
            out.bias = CArray("int32_t", f"{ident}_bias", bias)
        # In the tflite arithmetic only convolutions and fully connected layers take
        # per-channel arrays; the other ops' constants are scalars in their parameters.
        if graph.arithmetic != "tflite" or op.kind in ("conv2d", "linear"):
            out.mult, out.shift = requant_arrays(graph, i, ident, mode)
            if per_tensor(graph, step) and out.shift is not None:  # one pair serves all
                out.mult.values, out.shift.values = out.mult.values[:1], out.shift.values[:1]
    lut_index = step.lut if step.lut is not None else (
        step.ops[0] if step.kind == "lut" else None)
    if lut_index is not None:
        op = graph.ops[lut_index]
        out.table = CArray("int8_t", f"{data_symbol(op.name, prefix)}_table",
                           op.arrays["table"].astype(np.int64))
    return out


def format_values(arr: CArray, packed: bool = False) -> list[str]:
    """Rows of C initializers, a fixed number per line so diffs stay readable (`packed`:
    those of its alternative layout)."""
    flat = (arr.packed if packed and arr.packed is not None else arr.values).reshape(-1)
    if arr.ctype == "float":
        items = [float_literal(float(v)) for v in flat]
        per_line = 4
    else:
        width, per_line = {"int8_t": (4, 16), "int16_t": (4, 16), "int32_t": (11, 6)}[arr.ctype]
        items = [f"{int(v):>{width}}" for v in flat]
    return [", ".join(items[k:k + per_line]) for k in range(0, len(items), per_line)]
