"""The float check: the imported graph against onnxruntime running the original file."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MnistEdgeError
from ..fgraph import FloatGraph, float_input, run_float

TOLERANCE = 1e-4  # max |logit difference| relative to the logit range of the original


def model_input(x: np.ndarray, info: dict[str, Any], normalize: tuple[Any, Any] | None
                ) -> np.ndarray:
    """What `run_float` takes ([N, *input_shape]: pixels in 0..1 or features) -> what the
    original file's input expects (its layout, its own shape, --normalize applied)."""
    x = x.astype(np.float32)
    if normalize is not None:  # floats, or one per channel of the [N,C,H,W] batch
        shape = (-1,) + (1,) * (x.ndim - 2)
        mean, std = (np.asarray(v, np.float32).reshape(shape) if np.ndim(v) else np.float32(v)
                     for v in normalize)
        x = ((x - mean) / std).astype(np.float32)
    if info["layout"] == "nhwc":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x.reshape(len(x), *info["onnx_shape"]))


def run_original(model, info: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, final output) from onnxruntime; logits are the pre-softmax tensor if dropped."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    names = [model.graph.output[0].name]
    if info.get("presoftmax"):
        model.graph.output.append(onnx.helper.make_tensor_value_info(
            info["presoftmax"], onnx.TensorProto.FLOAT, None))
        names.append(info["presoftmax"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise MnistEdgeError(f"onnxruntime cannot load the model ({str(exc).splitlines()[0]})"
                             ) from None
    static = info.get("batch")  # a file exported with a fixed batch size runs in such batches
    step = static or 250
    finals, logits = [], []
    for i in range(0, len(x), step):
        chunk = x[i:i + step]
        n = len(chunk)
        if static and n < static:
            chunk = np.concatenate([chunk, np.zeros((static - n, *chunk.shape[1:]), chunk.dtype)])
        outs = sess.run(names, {info["input_name"]: chunk})
        finals.append(outs[0][:n])
        logits.append(outs[-1][:n])
    return np.concatenate(logits), np.concatenate(finals)


def float_check(model, graph: FloatGraph, info: dict[str, Any], inputs: np.ndarray,
                normalize: tuple[Any, Any] | None) -> dict[str, Any]:
    """Refuse the import when the float graph does not reproduce the original's logits on
    `inputs` (raw data: uint8 pixels or float features, [N, *input_shape] or as MNIST
    gives one-channel images, [N,H,W])."""
    x = float_input(graph, np.asarray(inputs).reshape(len(inputs), *graph.input_shape))
    ref, final = run_original(model, info, model_input(x, info, normalize))
    if ref.ndim != 2 or ref.shape[0] != len(x):
        raise MnistEdgeError(f"onnxruntime output has shape {list(ref.shape)}; expected "
                             "[N, K]")
    ours = run_float(graph, x)
    if ours.shape != ref.shape:
        raise MnistEdgeError(f"imported graph gives {list(ours.shape)}, onnxruntime "
                             f"{list(ref.shape)}")
    diff = float(np.abs(ours.astype(np.float64) - ref).max())
    span = float(ref.max() - ref.min())
    figures = {"images": int(len(x)), "max_abs_logit_diff": diff, "logit_range": span,
               "relative_diff": diff / span if span > 0 else float("inf") if diff else 0.0,
               "tolerance": TOLERANCE,
               "argmax_agreement": float(np.mean(np.argmax(ours, 1) == np.argmax(final, 1)))}
    if not np.isfinite(diff) or diff > TOLERANCE * span:
        raise MnistEdgeError(f"the imported float graph differs from onnxruntime by up to "
                             f"{diff:.3g} (logit range {span:.3g}, relative "
                             f"{figures['relative_diff']:.2e} > {TOLERANCE:g}) on {len(x)} "
                             "inputs; refusing a silently wrong import")
    return figures
