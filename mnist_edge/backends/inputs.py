"""Which graphs a backend can take: its arithmetic, and the inputs its interface reads."""

from __future__ import annotations

from ..errors import MnistEdgeError
from ..qgraph import QGraph


def require_pixel_image(graph: QGraph, backend: str) -> tuple[int, int]:
    """(H, W) of a graph whose input is one channel of uint8 pixels, the stream the HLS and
    RTL interfaces read today; any other input is refused by name, before any work."""
    shape = tuple(graph.input.shape)
    if graph.input_encoding != "uint8" or len(shape) != 3 or shape[0] != 1:
        dims = "x".join(map(str, shape))
        raise MnistEdgeError(f"the {backend} backend reads one channel of uint8 pixels (1xHxW); "
                             f"model {graph.name} takes {graph.input_encoding} {dims}: use the "
                             "C, WebAssembly or ONNX backends for it")
    return shape[1], shape[2]


def require_byte_image(graph: QGraph, backend: str) -> tuple[int, int, int]:
    """(C, H, W) of a graph whose input is an image of bytes, uint8 pixels or int8 values
    (the TFLite models' own zero point), streamed channel by channel; anything else is
    refused by name, before any work."""
    shape = tuple(graph.input.shape)
    if graph.input_encoding not in ("uint8", "int8") or len(shape) != 3:
        dims = "x".join(map(str, shape))
        raise MnistEdgeError(f"the {backend} backend reads an image of uint8 or int8 bytes "
                             f"(CxHxW); model {graph.name} takes {graph.input_encoding} {dims}: "
                             "use the C, WebAssembly or ONNX backends for it")
    return shape[0], shape[1], shape[2]


def require_arithmetic(graph: QGraph, backend: str, implemented: tuple[str, ...] = ("onnx",)
                       ) -> None:
    """Refuse, by name, a graph whose arithmetic the backend does not implement, so that no
    backend ever lowers a `tflite` graph with the `onnx` arithmetic (or the reverse)."""
    if graph.arithmetic not in implemented:
        raise MnistEdgeError(f"the {backend} backend does not implement the "
                             f"{graph.arithmetic} arithmetic yet")
