"""A bounds-checked FlatBuffers table reader.

The Python `flatbuffers` runtime has no verifier: its generated accessors follow any
offset they find, so a hostile file can make them read garbage, raise IndexError deep
inside, or allocate a 2**31-element vector. Here every table, vtable, field, vector and
string is checked against the buffer before it is read, and any violation is a
`FlatBufferError` saying which field was bad. The reader reads only the fields asked for,
so a field that is never read needs no verification.
"""

from __future__ import annotations

import struct

import numpy as np


class FlatBufferError(ValueError):
    """The buffer is not a well-formed FlatBuffer where we looked."""


_SCALARS = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8, "f": 4, "d": 8}


class Buffer:
    """The whole file, with checked reads at absolute positions."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.size = len(self.data)

    def need(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise FlatBufferError(f"{what}: bytes {pos}..{pos + length} lie outside the "
                                  f"{self.size}-byte file")

    def scalar(self, pos: int, fmt: str, what: str):
        self.need(pos, _SCALARS[fmt], what)
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def root(self) -> Table:
        return self.table(self.scalar(0, "I", "root offset"), "root table")

    def table(self, pos: int, what: str) -> Table:
        return Table(self, pos, what)


class Table:
    """One table: its vtable is checked once, each field when it is read."""

    def __init__(self, buf: Buffer, pos: int, what: str) -> None:
        self.buf, self.pos, self.what = buf, pos, what
        vtable = pos - buf.scalar(pos, "i", f"{what} vtable offset")
        vt_size = buf.scalar(vtable, "H", f"{what} vtable size")
        self.table_size = buf.scalar(vtable + 2, "H", f"{what} table size")
        if vt_size < 4 or vt_size % 2:
            raise FlatBufferError(f"{what}: vtable size {vt_size} is invalid")
        buf.need(vtable, vt_size, f"{what} vtable")
        buf.need(pos, max(self.table_size, 4), f"{what} table")
        self.vtable, self.vt_size = vtable, vt_size

    def _field(self, slot: int, size: int) -> int:
        """Absolute position of field `slot`, or 0 when absent."""
        entry = 4 + 2 * slot
        if entry + 2 > self.vt_size:
            return 0
        off = self.buf.scalar(self.vtable + entry, "H", f"{self.what} vtable entry")
        if off == 0:
            return 0
        if off < 4 or off + size > self.table_size:
            raise FlatBufferError(f"{self.what}: field {slot} at offset {off} lies outside "
                                  f"its {self.table_size}-byte table")
        return self.pos + off

    def scalar(self, slot: int, fmt: str, default=0):
        at = self._field(slot, _SCALARS[fmt])
        if not at:
            return default
        return self.buf.scalar(at, fmt, f"{self.what} field {slot}")

    def _target(self, slot: int, what: str) -> int:
        at = self._field(slot, 4)
        if not at:
            return 0
        return at + self.buf.scalar(at, "I", what)

    def table(self, slot: int, what: str) -> Table | None:
        target = self._target(slot, what)
        return self.buf.table(target, what) if target else None

    def vector(self, slot: int, elem_size: int, what: str) -> tuple[int, int] | None:
        """(start of the elements, count) of a vector field, checked to fit, or None."""
        target = self._target(slot, what)
        if not target:
            return None
        count = self.buf.scalar(target, "I", f"{what} length")
        self.buf.need(target + 4, count * elem_size, f"{what} ({count} elements)")
        return target + 4, count

    def array(self, slot: int, dtype: str, what: str) -> np.ndarray | None:
        """A vector of scalars as a fresh NumPy array (little-endian `dtype`), or None."""
        dt = np.dtype(dtype).newbyteorder("<")
        vec = self.vector(slot, dt.itemsize, what)
        if vec is None:
            return None
        start, count = vec
        return np.frombuffer(self.buf.data, dt, count, start).astype(dt.newbyteorder("="))

    def tables(self, slot: int, what: str) -> list[Table]:
        """A vector of tables (each element a uoffset to its table)."""
        vec = self.vector(slot, 4, what)
        if vec is None:
            return []
        start, count = vec
        out = []
        for i in range(count):
            p = start + 4 * i
            out.append(self.buf.table(p + self.buf.scalar(p, "I", f"{what}[{i}]"),
                                      f"{what}[{i}]"))
        return out

    def string(self, slot: int, what: str) -> str | None:
        vec = self.vector(slot, 1, what)
        if vec is None:
            return None
        start, count = vec
        return self.buf.data[start:start + count].decode("utf-8", errors="replace")
