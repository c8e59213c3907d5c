"""Per-op constants of the `tflite` arithmetic, computed once from the file's scales.

TFLite Micro derives these in each kernel's Prepare (CalculateOpDataConv,
CalculateOpDataAdd, CalculateSoftmaxParams, ...) and never at Eval; the kernels in
`tflite_kernels` take them as arguments. The float steps (double vs float32 products,
round-half-away) are spelled out because they decide the last bit of the multipliers.
"""

from __future__ import annotations

import math

import numpy as np

from ..requant import quantize_multiplier

INT8_MIN, INT8_MAX = -128, 127


def _round_away(x: float) -> float:
    """TfLiteRound (std::round): half away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = INT8_MIN, qmax: int = INT8_MAX) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: the fused activation as an int8 clamp.

    Each bound is zero_point + round(float32(f) / float32(scale)), the division in float32.
    """
    s = np.float32(scale)

    def q(f: float) -> int:
        return int(zero_point) + int(_round_away(float(np.float32(f) / s)))

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"fused activation {activation} has no quantized range")


def conv_multipliers(input_scale: float, filter_scales: np.ndarray, output_scale: float,
                     channels: int) -> tuple[np.ndarray, np.ndarray]:
    """PopulateConvolutionQuantizationParams (CONV_2D, DEPTHWISE_CONV_2D, per-channel FC).

    effective = double(s_in) * double(s_w[c]) / double(s_out), each scale a float32; a
    single filter scale is broadcast to every channel.
    """
    fs = np.asarray(filter_scales, dtype=np.float32).ravel()
    pairs = [quantize_multiplier(float(np.float32(input_scale)) * float(fs[c if fs.size > 1
                                                                         else 0])
                                 / float(np.float32(output_scale)))
             for c in range(channels)]
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))


def fc_multiplier(input_scale: float, filter_scale: float, output_scale: float
                  ) -> tuple[int, int]:
    """Per-tensor FULLY_CONNECTED (GetQuantizedConvolutionMultipler with a bias):
    double(s_in) * double(s_w) / double(s_out). Some TFLM versions take the product in
    float32 first; the installed TFLM does not (the MLPerf AD model's last layer
    differs by 1 LSB on ~3% of inputs between the two)."""
    return quantize_multiplier(float(np.float32(input_scale)) * float(np.float32(filter_scale))
                               / float(np.float32(output_scale)))


def window_padding(padding: str, size: int, k: int, stride: int, dilation: int = 1
                   ) -> tuple[int, int]:
    """ComputePaddingHeightWidth for one axis: (leading padding, output size)."""
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        out = (size + stride - 1) // stride
    else:
        out = (size + stride - eff) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, out


def add_sub_params(s1: float, s2: float, s_out: float, left_shift: int = 20) -> dict:
    """CalculateOpDataAdd / CalculateOpDataSub for int8: each input rescaled to twice the
    larger input scale after a left shift of 20, then the sum to the output scale."""
    twice_max = 2.0 * float(max(np.float32(s1), np.float32(s2)))
    m1 = quantize_multiplier(float(np.float32(s1)) / twice_max)
    m2 = quantize_multiplier(float(np.float32(s2)) / twice_max)
    mo = quantize_multiplier(twice_max / ((1 << left_shift) * float(np.float32(s_out))))
    return {"left_shift": left_shift, "input1_multiplier": m1[0], "input1_shift": m1[1],
            "input2_multiplier": m2[0], "input2_shift": m2[1],
            "output_multiplier": mo[0], "output_shift": mo[1]}


def mul_params(s1: float, s2: float, s_out: float) -> tuple[int, int]:
    """CalculateOpDataMul: double(s1) * double(s2) / double(s_out)."""
    return quantize_multiplier(float(np.float32(s1)) * float(np.float32(s2))
                               / float(np.float32(s_out)))


SOFTMAX_SCALED_DIFF_BITS = 5


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """CalculateSoftmaxParams (int8 -> int8): (input_multiplier, input_left_shift, diff_min).

    PreprocessSoftmaxScaling caps beta * s_in * 2**26 at 2**31 - 1 (default build);
    diff_min is minus CalculateInputRadius(5, left_shift), a floor in double.
    """
    real = min(float(np.float32(beta)) * float(np.float32(input_scale))
               * float(1 << (31 - SOFTMAX_SCALED_DIFF_BITS)), float((1 << 31) - 1))
    m, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise ValueError("softmax input multiplier below one is not supported by TFLM")
    radius = math.floor(1.0 * ((1 << SOFTMAX_SCALED_DIFF_BITS) - 1)
                        * (1 << (31 - SOFTMAX_SCALED_DIFF_BITS)) / (1 << left_shift))
    return m, left_shift, -radius


def sigmoid_tanh_params(input_scale: float) -> tuple[int, int, int]:
    """LOGISTIC / TANH int8 Prepare: (multiplier, left shift, input range radius).

    The real multiplier s_in * 2**27 (Q4.27 input) is split with a bare frexp and a
    round half away from zero (not QuantizeMultiplier); the radius is
    CalculateInputRadius(4, left_shift, 31)."""
    q, left_shift = math.frexp(float(np.float32(input_scale)) * float(1 << 27))
    m = int(_round_away(q * float(1 << 31)))
    radius = math.floor(1.0 * 15 * (1 << 27) / 2.0 ** left_shift)
    return m, left_shift, radius


def relu_params(input_scale: float, output_scale: float) -> tuple[int, int]:
    """CalculateReluOpData: s_in / s_out (float32 scales, the ratio in double)."""
    return quantize_multiplier(float(np.float32(input_scale)) / float(np.float32(output_scale)))


def quantize_value(f: float, scale: float, zero_point: int) -> int:
    """FloatToQuantizedType<int8>: zero_point + round(f / scale) in float32, saturated."""
    q = zero_point + int(_round_away(float(np.float32(f) / np.float32(scale))))
    return max(INT8_MIN, min(INT8_MAX, q))


def leaky_relu_params(input_scale: float, output_scale: float, alpha: float
                      ) -> tuple[int, int, int, int]:
    """CalculateOpDataLeakyRelu: (m_identity, shift_identity, m_alpha, shift_alpha), both
    ratios computed in float32 (s_in * alpha / s_out and s_in / s_out) before widening."""
    s_in, s_out, a = np.float32(input_scale), np.float32(output_scale), np.float32(alpha)
    mi, si = quantize_multiplier(float(np.float32(s_in / s_out)))
    ma, sa = quantize_multiplier(float(np.float32(np.float32(s_in * a) / s_out)))
    return mi, si, ma, sa


def mean_params(input_scale: float, input_zp: int, output_scale: float, output_zp: int,
                count: int) -> dict:
    """PrepareMeanOrSum and QuantizedMeanOrSum's constants for int8 MEAN over `count`
    elements: QuantizeMultiplier(double(s_in) / double(s_out)), into which Eval folds
    1/count: fold = min(floor(log2(count)), 32, 31 + shift), the mantissa becomes
    (m << fold) / count in int64 (truncating), the shift drops by fold.

    The installed TFLM (tflite-micro 0.dev20261023) takes this path for every int8 MEAN,
    equal quantization in and out included; older sources of reduce_common.cc sent equal
    quantization to reference_ops::Mean (the raw sum divided by count, truncating), which
    differs from TFLM here on 3 to 14 % of outputs (tests/test_tflite_ops.py).
    """
    m, shift = quantize_multiplier(float(np.float32(input_scale))
                                   / float(np.float32(output_scale)))
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    return {"count": int(count), "mult": int((m << fold) // count), "shift": int(shift - fold),
            "input_zp": int(input_zp), "output_zp": int(output_zp)}


def hard_swish_params(input_scale: float, output_scale: float) -> dict:
    """HardSwishPrepare (int8): the hi-res input scale s_in / 128 and the 'reluish' scale
    3 / 32768, both float32; each multiplier QuantizeMultiplier'd in double from a float32
    ratio, then rounded to an int16 mantissa (DownScaleInt32ToInt16Multiplier)."""
    hires = np.float32(1.0 / 128.0) * np.float32(input_scale)
    reluish = np.float32(3.0) / np.float32(32768.0)
    out_m, out_e = quantize_multiplier(float(np.float32(hires / np.float32(output_scale))))
    rel_m, rel_e = quantize_multiplier(float(np.float32(hires / reluish)))
    if out_e > 0:
        raise ValueError("HARD_SWISH needs s_in / (128 s_out) below one (TFLM's Prepare "
                         "requires output_multiplier_exponent <= 0)")
    return {"output_multiplier": _int16_multiplier(out_m), "output_exponent": out_e,
            "reluish_multiplier": _int16_multiplier(rel_m), "reluish_exponent": rel_e}


def _int16_multiplier(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier: (m + 2^15) >> 16, saturating at INT16_MAX."""
    if m >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16


def requantize_params(input_scale: float, output_scale: float) -> tuple[int, int]:
    """QUANTIZE int8 -> int8 (quantize.cc Prepare): QuantizeMultiplier of
    double(s_in) / double(s_out)."""
    return quantize_multiplier(float(np.float32(input_scale)) / float(np.float32(output_scale)))
