"""Where the RTL engine keeps each activation tensor: a bank (A or B) and an offset in it.

The engine has two single-port activation RAMs; a layer reads one and writes the other
(mnist_edge_engine.v.j2). A chain simply ping-pongs. A graph with branches (a residual
add, a concat) keeps several tensors live at once, so each bank holds several tensors,
placed by lifetime: a tensor lives from the first layer that writes it to the last layer
that reads it, and tensors of one bank whose lifetimes overlap get disjoint addresses
(first fit, largest first, as the C planner's DAG layout). The graph input is pinned at
address 0 of bank A (the pixel stream writes there) and the output at address 0 of its
bank (the logits are read from there).

Banks are chosen in layer order: a layer's output goes to the bank its inputs are not
in. When a layer's inputs sit in different banks (an add of a two-conv branch and a
one-conv shortcut), or its output already lives in the bank its input is in (the second
half of a concat), one input is first copied to the other bank by a one-value pass
layer, made by the caller's `copy` function; the copy is reused by every later reader.
A chain needs no copy and gets every tensor at address 0: its descriptors are those of
the plain ping-pong.

With `same_bank` (RAMs with a read and a write port, mnist_edge_act_ram_dp.v) a layer may
write the RAM it reads. Its output then goes where the next layer that reads it beside
other tensors finds them (a residual branch's last conv writes beside the shortcut it
will be added to); otherwise to the other RAM, as before. A tensor written in parts
(a concat's inputs, conv groups) may share its RAM with the parts' inputs. So a residual
add needs no copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..errors import MnistEdgeError

INPUT = "input"


class PlannedLayer(Protocol):
    """What the planner reads and sets on a layer (rtl.Layer)."""

    reads: list[str]
    writes: str
    in_buf: int
    out_buf: int


@dataclass
class Plan:
    """Bank and address of every tensor, and each bank's depth in bytes."""

    bank: dict[str, int]
    offset: dict[str, int]
    depth: list[int]
    copies: int


def first_fit(sizes: dict[str, int], life: dict[str, tuple[int, int]],
              pinned: tuple[str, ...] = ()) -> dict[str, int]:
    """Addresses for tensors of one memory: `pinned` ones at 0 (in order, they must not
    overlap in time), then largest first, each at the lowest address clear of every
    placed tensor whose lifetime overlaps its own."""
    offset: dict[str, int] = {}
    order = [n for n in pinned if n in sizes]
    order += sorted((n for n in sizes if n not in order), key=lambda n: (-sizes[n], n))
    for name in order:
        lo_t, hi_t = life[name]
        clashes = sorted((offset[o], offset[o] + sizes[o]) for o in offset
                         if life[o][0] <= hi_t and lo_t <= life[o][1])
        at = 0
        if name in pinned and clashes:
            raise MnistEdgeError(f"the RTL engine needs tensors {name!r} and {order[0]!r} both at "
                                 "address 0 of one activation RAM while both are live")
        if name not in pinned:
            for lo, hi in clashes:
                if at + sizes[name] <= lo:
                    break
                at = max(at, hi)
        offset[name] = at
    return offset


def plan(layers: list, sizes: dict[str, int], output: str,
         copy: Callable[[str, str], object], same_bank: bool = False) -> Plan:
    """Choose banks (inserting copy layers into `layers` where needed), then addresses.

    `copy(src, dst)` returns a pass layer reading tensor src and writing the new tensor dst
    (the caller knows its shape); `sizes` gains dst. same_bank: a layer may write the RAM
    it reads (see the module's docstring)."""
    bank: dict[str, int] = {INPUT: 0}
    moved: dict[tuple[str, int], str] = {}  # (tensor, bank) -> its copy in that bank
    out: list = []
    copies = 0

    def in_bank(name: str, b: int) -> str:
        nonlocal copies
        if bank[name] == b:
            return name
        key = (name, b)
        if key not in moved:
            moved[key] = f"{name}@{'AB'[b]}"
            layer = copy(name, moved[key])
            sizes[moved[key]] = sizes[name]
            bank[moved[key]] = b
            layer.in_buf, layer.out_buf = bank[name], b
            out.append(layer)
            copies += 1
        return moved[key]

    def majority(names: list[str]) -> int:
        """The bank most of `names` (by size) are in."""
        weight = [0, 0]
        for name in names:
            weight[bank[name]] += sizes[name]
        return 0 if weight[0] >= weight[1] else 1

    def beside(k: int, name: str) -> int | None:
        """The bank of the placed tensors the next layer reading `name` beside others
        reads (same_bank), if any."""
        for later in layers[k + 1:]:
            others = [n for n in later.reads if n != name and n in bank]
            if name in later.reads and others:
                return majority(others)
        return None

    for k, layer in enumerate(layers):
        reads = layer.reads
        if layer.writes in bank and not same_bank:  # a later part of a tensor (concat,
            want = 1 - bank[layer.writes]  # conv group)
        else:  # the bank most of its inputs (by size) are already in
            want = majority(reads)
        layer.reads = [in_bank(name, want) for name in reads]
        layer.in_buf = want
        if layer.writes not in bank:
            to = beside(k, layer.writes) if same_bank else None
            bank[layer.writes] = 1 - want if to is None else to
        layer.out_buf = bank[layer.writes]
        out.append(layer)
    layers[:] = out

    life: dict[str, tuple[int, int]] = {INPUT: (-1, -1)}
    for k, layer in enumerate(layers):
        for name in (*layer.reads, layer.writes):
            lo, hi = life.get(name, (k, k))
            life[name] = (min(lo, k), max(hi, k))
    life[output] = (life[output][0], len(layers))
    offset: dict[str, int] = {}
    depth = [1, 1]
    for b in (0, 1):
        names = {n: sizes[n] for n in life if bank[n] == b}
        placed = first_fit(names, life, pinned=(INPUT, output))
        offset.update(placed)
        depth[b] = max([1, *(placed[n] + names[n] for n in placed)])
    return Plan(bank, offset, depth, copies)
