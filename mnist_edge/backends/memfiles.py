"""Memory initialization files: `.mem` ($readmemh), `.coe` (Xilinx), `.mif` (Intel).

An FPGA flow that keeps weights in block RAM loads them from one of these three
formats. Every file holds one array as a column of fixed-width words, two's
complement when signed, in the array's row-major (C) order: address 0 is the
first element. The readers exist so a test can prove each file round-trips to
the QGraph bit for bit.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import MnistEdgeError
from ..qgraph import QGraph
from ..requant import decompose


def _words(values: np.ndarray, width: int, signed: bool) -> list[str]:
    """Each value as a two's-complement hex word of `width` bits."""
    flat = np.asarray(values).astype(np.int64).ravel()
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise MnistEdgeError(f"values {flat.min()}..{flat.max()} do not fit {width}-bit words")
    digits = (width + 3) // 4
    mask = (1 << width) - 1
    return [f"{int(v) & mask:0{digits}X}" for v in flat]


def requant_words(graph: QGraph, i: int, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """(m uint32, shift uint8) per output channel of op i: M = m * 2^-shift, m < 2^24.

    The hardware backends keep the shift in an 8-bit right-shift field, so multipliers
    must lie in 2^-231 < M < 1 (every quantized model's do).
    """
    m, shift = decompose(graph.multiplier(i))
    if np.any(shift < 0) or np.any(shift > 255):
        raise MnistEdgeError(f"op {graph.ops[i].name}: requantization multiplier out of the "
                             f"range the {backend} kernels support (needs 2^-231 < M < 1)")
    return m.astype(np.uint32), shift.astype(np.uint8)


def packed_mem_text(lanes: np.ndarray, width: int, comment: str) -> str:
    """$readmemh of wide words: row r of `lanes` [words, P] is one word, lane 0 in the low bits.

    Each lane is a signed `width`-bit field (two's complement); the word is written most
    significant lane first, as Verilog reads a hex literal.
    """
    lanes = np.asarray(lanes)
    flat = _words(lanes[:, ::-1], width, True)
    per = lanes.shape[1]
    rows = ["".join(flat[r * per : (r + 1) * per]) for r in range(lanes.shape[0])]
    return "\n".join([f"// {line}" for line in comment.splitlines()] + rows) + "\n"


def _from_words(words: list[int], width: int, signed: bool) -> np.ndarray:
    out = np.array(words, dtype=np.int64)
    if signed:
        out = np.where(out >= 1 << (width - 1), out - (1 << width), out)
    return out


def mem_text(values: np.ndarray, width: int, signed: bool, comment: str) -> str:
    """Verilog $readmemh: one hex word per line; `//` comments are allowed."""
    lines = [f"// {line}" for line in comment.splitlines()]
    return "\n".join(lines + _words(values, width, signed)) + "\n"


def coe_text(values: np.ndarray, width: int, signed: bool, comment: str) -> str:
    """Xilinx COE (Block Memory Generator): radix 16, comma-separated, ends with ';'."""
    lines = [f"; {line}" for line in comment.splitlines()]
    lines += ["memory_initialization_radix=16;", "memory_initialization_vector="]
    words = _words(values, width, signed)
    lines += [w + ("," if i + 1 < len(words) else ";") for i, w in enumerate(words)]
    return "\n".join(lines) + "\n"


def mif_text(values: np.ndarray, width: int, signed: bool, comment: str) -> str:
    """Intel (Altera) MIF: WIDTH, DEPTH, hex data at unsigned decimal addresses."""
    words = _words(values, width, signed)
    lines = [f"-- {line}" for line in comment.splitlines()]
    lines += [f"WIDTH={width};", f"DEPTH={len(words)};", "ADDRESS_RADIX=UNS;",
              "DATA_RADIX=HEX;", "CONTENT BEGIN"]
    lines += [f"\t{i} : {w};" for i, w in enumerate(words)]
    lines.append("END;")
    return "\n".join(lines) + "\n"


def _read(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise MnistEdgeError(f"{path}: cannot read memory file ({exc.strerror})") from None


def read_mem(path: str | Path, width: int, signed: bool) -> np.ndarray:
    """Values of a $readmemh file (comments and `@address` jumps are honoured)."""
    words: dict[int, int] = {}
    addr = 0
    text = re.sub(r"/\*.*?\*/", " ", _read(Path(path)), flags=re.S)
    for line in text.splitlines():
        for token in line.split("//", 1)[0].split():
            if token.startswith("@"):
                addr = int(token[1:], 16)
                continue
            words[addr] = int(token.replace("_", ""), 16)
            addr += 1
    if sorted(words) != list(range(len(words))):
        raise MnistEdgeError(f"{path}: addresses are not contiguous from 0")
    return _from_words([words[a] for a in range(len(words))], width, signed)


def read_coe(path: str | Path, width: int, signed: bool) -> np.ndarray:
    """Values of a Xilinx .coe file."""
    text = "\n".join(line for line in _read(Path(path)).splitlines()
                     if not line.lstrip().startswith(";"))
    fields = dict(re.findall(r"(memory_initialization_\w+)\s*=\s*([^;]*);", text))
    radix = int(fields.get("memory_initialization_radix", "0") or 0)
    vector = fields.get("memory_initialization_vector")
    if radix not in (2, 10, 16) or vector is None:
        raise MnistEdgeError(f"{path}: not a .coe file (radix and vector required)")
    tokens = [t for t in re.split(r"[,\s]+", vector) if t]
    return _from_words([int(t, radix) for t in tokens], width, signed)


def read_mif(path: str | Path, width: int, signed: bool) -> np.ndarray:
    """Values of an Intel .mif file; its WIDTH must equal `width`."""
    text = re.sub(r"--[^\n]*", "", _read(Path(path)))
    header = dict((k.upper(), v.strip().upper())
                  for k, v in re.findall(r"(\w+)\s*=\s*([^;]+);", text.split("CONTENT")[0]))
    if int(header.get("WIDTH", -1)) != width:
        raise MnistEdgeError(f"{path}: WIDTH={header.get('WIDTH')}, expected {width}")
    radix = {"HEX": 16, "UNS": 10, "DEC": 10, "BIN": 2, "OCT": 8}[header.get("DATA_RADIX", "HEX")]
    depth = int(header["DEPTH"])
    body = text.split("BEGIN", 1)[1].rsplit("END", 1)[0]
    words: dict[int, int] = {}
    for addr, value in re.findall(r"(\w+)\s*:\s*(\w+)\s*;", body):
        words[int(addr)] = int(value, radix)
    if sorted(words) != list(range(depth)):
        raise MnistEdgeError(f"{path}: content does not cover addresses 0..{depth - 1}")
    return _from_words([words[a] for a in range(depth)], width, signed)


WRITERS = {".mem": mem_text, ".coe": coe_text, ".mif": mif_text}
READERS = {".mem": read_mem, ".coe": read_coe, ".mif": read_mif}
