"""Torch model -> folded float graph: BatchNorm folded into the layer before it, Dropout gone."""

from __future__ import annotations

import numpy as np
from torch import nn

from ..errors import MnistEdgeError
from ..fgraph import FloatGraph, FOp

ACTIVATION_MODULES = {nn.ReLU: "relu", nn.SELU: "selu", nn.GELU: "gelu", nn.Tanh: "tanh",
                      nn.Sigmoid: "sigmoid"}


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(a) for a in v]


def _conv_op(name: str, m: nn.Conv2d) -> FOp:
    if m.padding_mode != "zeros" or isinstance(m.padding, str) or _pair(m.dilation) != [1, 1]:
        raise MnistEdgeError(f"layer {name}: only zero padding given as numbers, no dilation")
    ph, pw = _pair(m.padding)
    weight = m.weight.detach().numpy().astype(np.float64)
    bias = (m.bias.detach().numpy().astype(np.float64) if m.bias is not None
            else np.zeros(weight.shape[0]))
    return FOp(name, "conv2d", {"kernel": _pair(m.kernel_size), "stride": _pair(m.stride),
                                "padding": [ph, pw, ph, pw], "groups": int(m.groups)},
               {"weight": weight, "bias": bias})


def _pool_op(name: str, m: nn.Module, kind: str) -> FOp:
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    if any(_pair(m.padding)) or getattr(m, "ceil_mode", False):
        raise MnistEdgeError(f"layer {name}: pooling with padding or ceil_mode is not supported")
    return FOp(name, kind, {"kernel": k, "stride": s})


def _fold_bn(op: FOp, bn: nn.Module, name: str) -> None:
    if op.kind not in ("conv2d", "linear"):
        raise MnistEdgeError(f"layer {name}: BatchNorm must follow a Conv2d or Linear layer")
    gamma = bn.weight.detach().numpy().astype(np.float64)
    beta = bn.bias.detach().numpy().astype(np.float64)
    mean = bn.running_mean.numpy().astype(np.float64)
    var = bn.running_var.numpy().astype(np.float64)
    k = gamma / np.sqrt(var + bn.eps)
    shape = (-1,) + (1,) * (op.arrays["weight"].ndim - 1)
    op.arrays["weight"] = op.arrays["weight"] * k.reshape(shape)
    op.arrays["bias"] = (op.arrays["bias"] - mean) * k + beta


def fold_model(model: nn.Module, name: str) -> FloatGraph:
    """Walk an nn.Sequential; refuse any layer the QGraph cannot express, by name."""
    if not isinstance(model, nn.Sequential):
        raise MnistEdgeError("only nn.Sequential models can be folded")
    ops: list[FOp] = []
    for idx, m in enumerate(model):
        lname = f"{type(m).__name__.lower()}{idx}"
        if isinstance(m, nn.Conv2d):
            ops.append(_conv_op(f"conv{idx}", m))
        elif isinstance(m, nn.Linear):
            bias = (m.bias.detach().numpy() if m.bias is not None
                    else np.zeros(m.out_features)).astype(np.float64)
            ops.append(FOp(f"fc{idx}", "linear", {},
                           {"weight": m.weight.detach().numpy().astype(np.float64),
                            "bias": bias}))
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            if not ops:
                raise MnistEdgeError(f"layer {lname}: BatchNorm cannot be the first layer")
            _fold_bn(ops[-1], m, lname)
        elif type(m) in ACTIVATION_MODULES:
            if isinstance(m, nn.GELU) and m.approximate != "none":
                raise MnistEdgeError(f"layer {lname}: only the exact (erf) GELU is supported")
            ops.append(FOp(f"{ACTIVATION_MODULES[type(m)]}{idx}", ACTIVATION_MODULES[type(m)]))
        elif isinstance(m, nn.MaxPool2d):
            if _pair(m.dilation) != [1, 1]:
                raise MnistEdgeError(f"layer {lname}: dilated max pooling is not supported")
            ops.append(_pool_op(f"maxpool{idx}", m, "maxpool2d"))
        elif isinstance(m, nn.AvgPool2d):
            ops.append(_pool_op(f"avgpool{idx}", m, "avgpool2d"))
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            if _pair(m.output_size) != [1, 1]:
                raise MnistEdgeError(f"layer {lname}: only AdaptiveAvgPool2d(1) is supported")
            ops.append(FOp(f"gap{idx}", "global_avgpool"))
        elif isinstance(m, nn.Flatten):
            ops.append(FOp(f"flatten{idx}", "flatten"))
        elif isinstance(m, nn.Dropout | nn.Identity):
            continue
        else:
            raise MnistEdgeError(f"layer {idx} ({type(m).__name__}) is not supported; "
                                 "supported: Conv2d, Linear, BatchNorm, ReLU, SELU, GELU, Tanh, "
                                 "Sigmoid, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, "
                                 "Dropout")
    for op in ops:
        for key, arr in op.arrays.items():
            if not np.all(np.isfinite(arr)):
                raise MnistEdgeError(f"layer {op.name}: {key} contains NaN or infinity")
            op.arrays[key] = arr.astype(np.float32)
    return FloatGraph(name, ops)
