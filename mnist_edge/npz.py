"""Reading .npz files from untrusted hands: never unpickled, every failure one line.

A model's arrays and a user's data set arrive as .npz, a zip of .npy files; a damaged or
hostile one can fail in the zip layer (bad headers, an encrypted member, an unknown
compression method), in zlib, or in numpy's header parser (which uses `ast`). All of
these become one MnistEdgeError naming the file.
"""

from __future__ import annotations

import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import MnistEdgeError

# What reading a damaged .npz raises: the zip layer (NotImplementedError: an unknown
# compression method; RuntimeError: an encrypted member), zlib, numpy's header parser.
NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, SyntaxError, tokenize.TokenError,
              zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def read_npz(path: str | Path, what: str = "arrays") -> dict[str, np.ndarray]:
    """Every array of the file, loaded with allow_pickle=False."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise MnistEdgeError(f"{path}: no such file") from None
    except NPZ_ERRORS as exc:
        why = str(exc) or type(exc).__name__
        if isinstance(exc, ValueError) and "pickle" in why:
            why = "holds Python objects (pickles are refused)"
        raise MnistEdgeError(f"{path}: unreadable {what} ({why})") from None
