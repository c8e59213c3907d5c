"""TensorFlow Lite Micro's reference int8 kernels, in NumPy, bit for bit.

One pure function per op: int8 arrays (NHWC, batch first, as TFLite stores them) and the
op's precomputed constants in (see `tflite_prepare`), an int8 array out. Each follows the
loop of tensorflow/lite/kernels/internal/reference/integer_ops/<op>.h (or reference/<op>.h)
in tflite-micro, vectorized over the batch; accumulators are exact integers (sums of int8
products stay far below 2**53, so a float64 matmul is exact and then cast) wrapped to
int32 where TFLM's C++ would wrap. Requantization comes from `mnist_edge.requant`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..requant import (
    _wrap32,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_greater_than_one,
    multiply_by_quantized_multiplier_smaller_than_one,
    requantize_tflite,
)
from . import gemmlowp as g

INT8_MIN, INT8_MAX = -128, 127


def _clamp8(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(v, lo, hi).astype(np.int8)


def _windows(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int],
             dilation: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """A (N, OH, OW, KH, KW, C) view of the windows of an already padded NHWC array."""
    n, _, _, c = x.shape
    s0, s1, s2, s3 = x.strides
    shape = (n, out_hw[0], out_hw[1], kh, kw, c)
    strides = (s0, s1 * stride[0], s2 * stride[1], s1 * dilation[0], s2 * dilation[1], s3)
    return as_strided(x, shape, strides, writeable=False)


def _pad_hw(x: np.ndarray, pad: tuple[int, int], k: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int], out_hw: tuple[int, int], value) -> np.ndarray:
    """Pad H and W so every window of the output fits (TFLM instead skips outside taps)."""
    need_h = (out_hw[0] - 1) * stride[0] + (k[0] - 1) * dilation[0] + 1
    need_w = (out_hw[1] - 1) * stride[1] + (k[1] - 1) * dilation[1] + 1
    bottom = max(need_h - pad[0] - x.shape[1], 0)
    right = max(need_w - pad[1] - x.shape[2], 0)
    return np.pad(x, ((0, 0), (pad[0], bottom), (pad[1], right), (0, 0)),
                  constant_values=value)


_requant = requantize_tflite


def conv_2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, input_zp: int,
            output_zp: int, mult: np.ndarray, shift: np.ndarray, stride: tuple[int, int],
            dilation: tuple[int, int], pad: tuple[int, int], out_hw: tuple[int, int],
            act: tuple[int, int]) -> np.ndarray:
    """CONV_2D (ConvPerChannel). x [N,H,W,C] int8, w [O,KH,KW,C] int8, bias [O] int32 or
    None; mult/shift [O] from `conv_multipliers`; pad = leading (top, left) padding."""
    xs = x.astype(np.float64) - input_zp  # out-of-image taps become exact zeros
    xp = _pad_hw(xs, pad, w.shape[1:3], stride, dilation, out_hw, 0.0)
    win = _windows(xp, w.shape[1], w.shape[2], stride, dilation, out_hw)
    n, oh, ow = win.shape[:3]
    cols = win.reshape(n * oh * ow, -1)
    acc = (cols @ w.reshape(w.shape[0], -1).astype(np.float64).T).astype(np.int64)
    if bias is not None:
        acc = _wrap32(acc) + bias.astype(np.int64)
    return _requant(acc, mult, shift, output_zp, act).reshape(n, oh, ow, w.shape[0])


def depthwise_conv_2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *,
                      depth_multiplier: int, input_zp: int, output_zp: int, mult: np.ndarray,
                      shift: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int],
                      pad: tuple[int, int], out_hw: tuple[int, int], act: tuple[int, int]
                      ) -> np.ndarray:
    """DEPTHWISE_CONV_2D (DepthwiseConvPerChannel). w [1,KH,KW,C*M]; output channel
    c*M + m reads input channel c, for any depth multiplier M."""
    xs = x.astype(np.float64) - input_zp
    kh, kw, oc = w.shape[1:]
    xp = _pad_hw(xs, pad, (kh, kw), stride, dilation, out_hw, 0.0)
    win = _windows(xp, kh, kw, stride, dilation, out_hw)
    n, oh, ow = win.shape[:3]
    taps = win.reshape(n * oh * ow, kh * kw, -1)
    if depth_multiplier > 1:
        taps = np.repeat(taps, depth_multiplier, axis=2)
    acc = np.einsum("ptc,tc->pc", taps, w.reshape(kh * kw, oc).astype(np.float64))
    acc = acc.astype(np.int64)
    if bias is not None:
        acc = _wrap32(acc) + bias.astype(np.int64)
    return _requant(acc, mult, shift, output_zp, act).reshape(n, oh, ow, oc)


def fully_connected(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, input_zp: int,
                    filter_zp: int, output_zp: int, mult: np.ndarray, shift: np.ndarray,
                    act: tuple[int, int]) -> np.ndarray:
    """FULLY_CONNECTED. x [..., D] (rows of D), w [U, D]; returns [rows, U] (the caller
    reshapes for keep_num_dims). Per-tensor: one mult/shift and the filter zero point is
    applied (TFLM keeps it for backward compatibility); per-channel: [U] arrays and the
    filter zero point is taken as 0, as TFLM's FullyConnectedPerChannel does."""
    units, depth = w.shape
    rows = x.reshape(-1, depth).astype(np.float64) - input_zp
    per_channel = np.size(mult) > 1
    wf = w.astype(np.float64) - (0 if per_channel else filter_zp)
    acc = (rows @ wf.T).astype(np.int64)
    if bias is not None:
        acc = _wrap32(acc) + bias.astype(np.int64)
    return _requant(acc, mult, shift, output_zp, act)


def _add_sub(a: np.ndarray, b: np.ndarray, p: dict, sign: int) -> np.ndarray:
    mbqm = multiply_by_quantized_multiplier_smaller_than_one
    va = (a.astype(np.int64) + p["input1_offset"]) << p["left_shift"]
    vb = (b.astype(np.int64) + p["input2_offset"]) << p["left_shift"]
    sa = mbqm(va, p["input1_multiplier"], p["input1_shift"])
    sb = mbqm(vb, p["input2_multiplier"], p["input2_shift"])
    raw = _wrap32(sa + sign * sb)
    out = mbqm(raw, p["output_multiplier"], p["output_shift"]) + p["output_offset"]
    return _clamp8(out, *p["act"])


def add(a: np.ndarray, b: np.ndarray, p: dict) -> np.ndarray:
    """ADD (AddFunc), broadcasting like NumPy. `p`: `add_sub_params` plus input1_offset,
    input2_offset (minus the zero points), output_offset and act (the clamp)."""
    return _add_sub(a, b, p, 1)


def sub(a: np.ndarray, b: np.ndarray, p: dict) -> np.ndarray:
    """SUB (SubFunc): ADD's arithmetic with the second rescaled input subtracted."""
    return _add_sub(a, b, p, -1)


def _pool_windows(x: np.ndarray, filt: tuple[int, int], stride: tuple[int, int],
                  pad: tuple[int, int], out_hw: tuple[int, int], value) -> np.ndarray:
    xp = _pad_hw(x, pad, filt, stride, (1, 1), out_hw, value)
    return _windows(xp, filt[0], filt[1], stride, (1, 1), out_hw)


def average_pool_2d(x: np.ndarray, *, filt: tuple[int, int], stride: tuple[int, int],
                    pad: tuple[int, int], out_hw: tuple[int, int], act: tuple[int, int]
                    ) -> np.ndarray:
    """AVERAGE_POOL_2D: the sum of the in-image taps divided by their count, rounded half
    away from zero with C's truncating division; no rescale (scales in = out)."""
    win = _pool_windows(x.astype(np.int64), filt, stride, pad, out_hw, 0)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=np.int64)
    count = _pool_windows(ones, filt, stride, pad, out_hw, 0).sum(axis=(3, 4))
    acc = win.sum(axis=(3, 4))
    half = count // 2
    q = np.where(acc > 0, (acc + half) // count, -((half - acc) // count))
    return _clamp8(q, *act)


def max_pool_2d(x: np.ndarray, *, filt: tuple[int, int], stride: tuple[int, int],
                pad: tuple[int, int], out_hw: tuple[int, int], act: tuple[int, int]
                ) -> np.ndarray:
    """MAX_POOL_2D over the in-image taps, then the activation clamp."""
    win = _pool_windows(x.astype(np.int16), filt, stride, pad, out_hw, -129)
    return _clamp8(win.max(axis=(3, 4)), *act)


def softmax(x: np.ndarray, *, input_multiplier: int, input_left_shift: int, diff_min: int
            ) -> np.ndarray:
    """SOFTMAX int8 -> int8 (output scale 1/256, zero point -128) over the last axis, as
    reference_ops::Softmax: exp of the scaled difference to the row max in Q5.26, the sum
    in Q12.19, gemmlowp's reciprocal, then a rounding shift; differences below diff_min
    give -128. Constants from `tflite_prepare.softmax_params`."""
    xi = x.astype(np.int64)
    diff = xi - xi.max(axis=-1, keepdims=True)
    keep, exp, terms = softmax_exp(diff, input_multiplier, input_left_shift, diff_min)
    sum_of_exps = _wrap32(terms.sum(axis=-1, keepdims=True))
    shifted_scale, bits_over_unit = g.get_reciprocal(sum_of_exps, 12)
    exponent = bits_over_unit + 31 - 8
    out = g.rounding_divide_by_pot(g.mul(shifted_scale, exp), exponent) + INT8_MIN
    return np.where(keep, np.clip(out, INT8_MIN, INT8_MAX), INT8_MIN).astype(np.int8)


def softmax_exp(diff: np.ndarray, input_multiplier: int, input_left_shift: int,
                diff_min: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOFTMAX's per-element part, a function of diff = x - max alone (the RTL tabulates
    it): whether diff counts (>= diff_min), exp(scaled diff) in Q0.31, its Q12.19 term."""
    keep = diff >= diff_min
    scaled = multiply_by_quantized_multiplier_greater_than_one(
        np.where(keep, diff, 0), input_multiplier, input_left_shift)
    exp = g.exp_on_negative_values(scaled, 5)
    return keep, exp, np.where(keep, g.rescale(exp, 0, 12), 0)


def reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """RESHAPE / SQUEEZE: a copy of the bytes with the new shape (leading batch kept)."""
    return x.reshape((x.shape[0], *shape[1:])) if shape else x.reshape(x.shape[0])


def _lut_fixed_point(x: np.ndarray, input_zp: int, radius: int, mult: int, left_shift: int,
                     fn, out_shift: int, out_offset: int) -> np.ndarray:
    """The int8 LOGISTIC / TANH loop: saturate beyond the input radius, else rescale to
    Q4.27, evaluate gemmlowp's function in Q0.31 and shift down to int8."""
    v = x.astype(np.int64) - input_zp
    q4 = multiply_by_quantized_multiplier(np.clip(v, -radius, radius), mult, left_shift)
    out = g.rounding_divide_by_pot(fn(q4, 4), out_shift) + out_offset
    out = np.clip(out, INT8_MIN, INT8_MAX)
    return np.where(v <= -radius, INT8_MIN, np.where(v >= radius, INT8_MAX, out)
                    ).astype(np.int8)


def logistic(x: np.ndarray, *, input_zp: int, input_range_radius: int, input_multiplier: int,
             input_left_shift: int) -> np.ndarray:
    """LOGISTIC int8 (output scale 1/256, zero point -128): gemmlowp::logistic on Q4.27,
    the result's Q0.31 divided by 2**23 with rounding, minus 128."""
    return _lut_fixed_point(x, input_zp, input_range_radius, input_multiplier,
                            input_left_shift, g.logistic, 23, INT8_MIN)


def tanh(x: np.ndarray, *, input_zp: int, input_range_radius: int, input_multiplier: int,
         input_left_shift: int) -> np.ndarray:
    """TANH int8 (output scale 1/128, zero point 0): gemmlowp::tanh on Q4.27, divided
    by 2**24 with rounding."""
    return _lut_fixed_point(x, input_zp, input_range_radius, input_multiplier,
                            input_left_shift, g.tanh, 24, 0)


def relu(x: np.ndarray, *, input_zp: int, output_zp: int, mult: int, shift: int,
         act: tuple[int, int]) -> np.ndarray:
    """RELU / RELU_N1_TO_1 int8 (ReluQuantized): rescale (x - z_in) to the output scale,
    add z_out, clamp to the activation range of the output."""
    out = multiply_by_quantized_multiplier(x.astype(np.int64) - input_zp, mult, shift)
    return _clamp8(out + output_zp, *act)


def relu6(x: np.ndarray, *, zero: int, six: int) -> np.ndarray:
    """RELU6 int8 (Relu6Quantized): a plain clamp to [q(0), q(6)] in the input's own
    quantization (TFLM requires the output's to be the same)."""
    return _clamp8(x, zero, six)


def mul(a: np.ndarray, b: np.ndarray, *, input1_zp: int, input2_zp: int, output_zp: int,
        mult: int, shift: int, act: tuple[int, int]) -> np.ndarray:
    """MUL int8 (MulElementwise), broadcasting: (a - z1) * (b - z2) rescaled once."""
    prod = _wrap32((a.astype(np.int64) - input1_zp) * (b.astype(np.int64) - input2_zp))
    return _clamp8(multiply_by_quantized_multiplier(prod, mult, shift) + output_zp, *act)


def concatenation(xs: list[np.ndarray], axis: int) -> np.ndarray:
    """CONCATENATION int8: a byte copy along `axis` (TFLM requires equal quantization of
    every input and the output, so no requantization happens)."""
    return np.concatenate(xs, axis=axis)


def pad(x: np.ndarray, paddings: np.ndarray, value: int) -> np.ndarray:
    """PAD / PADV2 int8: `paddings` [rank, 2] (before, after); PAD fills with the output
    zero point, PADV2 with its constant-value input."""
    return np.pad(x, [(int(a), int(b)) for a, b in paddings], constant_values=value)


def quantize(x: np.ndarray, *, scale: float, zero_point: int) -> np.ndarray:
    """QUANTIZE float32 -> int8 (AffineQuantize): round(x / scale) in float32, half away
    from zero, plus the zero point, saturated."""
    q = np.asarray(x, dtype=np.float32) / np.float32(scale)
    r = np.sign(q) * np.floor(np.abs(q) + np.float32(0.5))
    return np.clip(r.astype(np.int64) + zero_point, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(x: np.ndarray, *, scale: float, zero_point: int) -> np.ndarray:
    """DEQUANTIZE int8 -> float32: scale * (q - zero_point), computed in float32."""
    return (np.float32(scale) * (x.astype(np.int64) - zero_point).astype(np.float32)
            ).astype(np.float32)


def leaky_relu(x: np.ndarray, *, input_zp: int, output_zp: int, mult_identity: int,
               shift_identity: int, mult_alpha: int, shift_alpha: int) -> np.ndarray:
    """LEAKY_RELU int8 (QuantizeLeakyRelu): (x - z_in) >= 0 rescaled by s_in/s_out, below
    zero by s_in*alpha/s_out (a negative alpha gives a negative Q31 multiplier)."""
    v = x.astype(np.int64) - input_zp
    pos = multiply_by_quantized_multiplier(v, mult_identity, shift_identity)
    neg = multiply_by_quantized_multiplier(v, mult_alpha, shift_alpha)
    return _clamp8(np.where(v >= 0, pos, neg) + output_zp, INT8_MIN, INT8_MAX)


def mean_hw(x: np.ndarray, *, count: int, mult: int, shift: int, input_zp: int,
            output_zp: int) -> np.ndarray:
    """MEAN int8 over H and W of an NHWC array (keep_dims: [N,1,1,C]), as
    reference_ops::QuantizedMeanOrSum: the int32 sum minus z_in * count, through
    MultiplyByQuantizedMultiplier with 1/count folded into (mult, shift), plus z_out,
    saturated. Constants from `tflite_prepare.mean_params`."""
    total = _wrap32(x.astype(np.int64).sum(axis=(1, 2), keepdims=True))
    shifted = _wrap32(total - input_zp * count)
    out = multiply_by_quantized_multiplier(shifted, mult, shift) + output_zp
    return _clamp8(out, INT8_MIN, INT8_MAX)


def _srdhm16(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16 values."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    num = ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14))
    return num >> 15 if num >= 0 else -((-num) >> 15)


def _sdhm16(a: int, b: int) -> int:
    """TFLM's SaturatingDoublingHighMul (int16): like SQDMULH, truncating toward zero."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    return ab >> 15 if ab >= 0 else -((-ab) >> 15)


def _sat_left_shift16(v: int, amount: int) -> int:
    return max(-(1 << 15), min((1 << 15) - 1, v * (1 << amount)))


def _rdbpot(x: int, exponent: int) -> int:
    return int(g.rounding_divide_by_pot(np.int64(x), exponent))


def hard_swish(x: np.ndarray, *, input_zp: int, output_zp: int, output_multiplier: int,
               output_exponent: int, reluish_multiplier: int, reluish_exponent: int
               ) -> np.ndarray:
    """HARD_SWISH int8 (reference_ops::HardSwish<int8_t>), value by value in int16
    fixed point: the input on a 2^7 finer scale, its value on the output scale
    (rounding doubling high multiply), the 'reluish' factor in [0, 1] (saturating shifts
    around a rounding doubling high multiply), their product with a truncating doubling
    high multiply, a rounding right shift, z_out, saturation. Constants from
    `tflite_prepare.hard_swish_params`; 256 distinct inputs, so a loop is cheap."""
    table = {}
    for q in range(-128, 128):
        hires = (q - input_zp) * (1 << 7)
        preshift = _srdhm16(hires, output_multiplier)
        reluish = hires
        if reluish_exponent > 0:
            reluish = _sat_left_shift16(reluish, reluish_exponent - 1)
        reluish = _srdhm16(reluish, reluish_multiplier)
        if reluish_exponent > 0:
            reluish = _sat_left_shift16(reluish, 1)
        if reluish_exponent < 0:
            reluish = _rdbpot(reluish, -reluish_exponent)
        reluish = (reluish + (1 << 15)) >> 1
        out = _rdbpot(_sdhm16(reluish, preshift), -output_exponent) + output_zp
        table[q] = max(INT8_MIN, min(INT8_MAX, out))
    lut = np.array([table[q] for q in range(-128, 128)], dtype=np.int8)
    return lut[x.astype(np.int16) + 128]


def requantize(x: np.ndarray, *, input_zp: int, output_zp: int, mult: int, shift: int
               ) -> np.ndarray:
    """QUANTIZE int8 -> int8 (reference_ops::Requantize): (x - z_in) through
    MultiplyByQuantizedMultiplier, plus z_out, saturated."""
    out = multiply_by_quantized_multiplier(x.astype(np.int64) - input_zp, mult, shift)
    return _clamp8(out + output_zp, INT8_MIN, INT8_MAX)
