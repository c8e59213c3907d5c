"""Mutations of real `.tflite` files for fuzzing the reader (test helper, also used by
scripts/tflite_fuzz.py): truncations, bit flips, and 32-bit words overwritten with
offsets and lengths that point outside the file or claim 2**31 elements."""

from __future__ import annotations

import signal
import struct
import time
from collections.abc import Iterator

import numpy as np

from mnist_edge.errors import MnistEdgeError
from mnist_edge.importers.tflite_reader import parse_tflite

HOSTILE_WORDS = (0x80000000, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFC, 0x40000000, 0, 1, 4, 8)


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random mutation of `data`: (a short description, the mutated bytes)."""
    kind = int(rng.integers(0, 4))
    buf = bytearray(data)
    if kind == 0:  # truncation, biased to the header and the tail
        cut = int(rng.choice([rng.integers(0, 64), rng.integers(0, len(data))]))
        return f"truncate@{cut}", bytes(buf[:cut])
    if kind == 1:  # a few bit flips
        flips = [int(rng.integers(0, len(buf) * 8)) for _ in range(int(rng.integers(1, 9)))]
        for bit in flips:
            buf[bit // 8] ^= 1 << (bit % 8)
        return f"bitflip{flips[:3]}", bytes(buf)
    # a 32-bit word overwritten: in the first kilobyte (root, vtables, vectors of tables)
    # half the time, anywhere else otherwise
    limit = min(len(buf), 1024) if rng.random() < 0.5 else len(buf)
    pos = int(rng.integers(0, max(limit - 4, 1))) & ~3
    if kind == 2:
        word = int(rng.choice(HOSTILE_WORDS))
    else:
        word = int(rng.integers(0, 1 << 32))
    struct.pack_into("<I", buf, pos, word)
    return f"word@{pos}={word:#x}", bytes(buf)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Timeout


def check_one(data: bytes, limit_s: int = 10) -> tuple[str, float]:
    """Parse `data`: 'ok' or 'refused' (a one-line MnistEdgeError); anything else raises."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit_s)
    t0 = time.time()
    try:
        parse_tflite(data, "fuzz.tflite")
        outcome = "ok"
    except MnistEdgeError as exc:
        if "\n" in str(exc):
            raise AssertionError(f"multi-line error: {exc!r}") from None
        outcome = "refused"
    except _Timeout:
        raise AssertionError(f"parse took over {limit_s} s") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return outcome, time.time() - t0


def fuzz(files: dict[str, bytes], n: int, seed: int = 0) -> Iterator[tuple[str, str, str, float]]:
    """(file, mutation, outcome, seconds) for `n` mutations spread over `files`."""
    rng = np.random.default_rng(seed)
    names = sorted(files)
    for i in range(n):
        name = names[i % len(names)]
        what, data = mutate(files[name], rng)
        try:
            outcome, secs = check_one(data)
        except Exception as exc:  # report which mutation broke the reader
            raise AssertionError(f"{name} {what}: {type(exc).__name__}: {exc}") from exc
        yield name, what, outcome, secs
