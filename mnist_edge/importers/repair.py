"""Repairs of ONNX files that `onnx.checker` rejects but onnxruntime runs.

Published third-party files carry defects no computation depends on: keras2onnx stores
the nodes in reverse order, some converters leave the graph name empty, list the output
twice or spell the default domain `ai.onnx` on each node. onnxruntime sorts and resolves
all of these itself, so users expect the file to import. Each repair here changes only
how the graph is written, never what it computes; every one is reported (import.json
`repaired` and the import line), and the float check still compares the imported graph
with onnxruntime running the file as it was.
"""

from __future__ import annotations

import heapq
from typing import Any


def repair(model, name: str = "main") -> list[dict[str, Any]]:
    """Repair `model` in place; what was done, one entry per kind of repair."""
    done: list[dict[str, Any]] = []
    graph = model.graph
    spelled = [n for n in graph.node if n.domain == "ai.onnx"]
    renamed_opset = [o for o in model.opset_import if o.domain == "ai.onnx"]
    if spelled or renamed_opset:
        for node in spelled:
            node.domain = ""
        default = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
        keep = max(default, key=lambda o: o.version)
        for entry in [o for o in model.opset_import if o.domain in ("", "ai.onnx")]:
            if entry is not keep:
                model.opset_import.remove(entry)
        keep.domain = ""
        done.append({"repair": "default domain spelled 'ai.onnx'",
                     "detail": f"{len(spelled)} nodes and {len(renamed_opset)} opset imports "
                               "now use the empty (default) domain"})
    if not graph.name:
        graph.name = name
        done.append({"repair": "empty graph name", "detail": f"named {name!r}"})
    seen: set[str] = set()
    twice = []
    for out in list(graph.output):
        if out.name in seen:
            graph.output.remove(out)
            twice.append(out.name)
        seen.add(out.name)
    if twice:
        done.append({"repair": "output listed twice",
                     "detail": f"kept one entry for {', '.join(sorted(set(twice)))}"})
    order = topological_order(model)
    if order is not None and order != list(range(len(graph.node))):
        nodes = [graph.node[i] for i in order]
        del graph.node[:]
        graph.node.extend(nodes)
        moved = sum(1 for i, j in enumerate(order) if i != j)
        done.append({"repair": "nodes out of topological order",
                     "detail": f"sorted: {moved} of {len(order)} nodes moved"})
    return done


def topological_order(model) -> list[int] | None:
    """Node indices in an order where every node comes after the producers of its inputs,
    as close to the stored order as possible (an already sorted graph keeps its order);
    None when no such order exists (a cycle, or an input nothing provides): the checker
    and the converter then say what is wrong."""
    graph = model.graph
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer[out] = i
    waiting = [0] * len(graph.node)
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        for t in set(node.input):
            if t in available and t not in producer:
                continue
            if t not in producer:
                return None
            waiting[i] += 1
            readers.setdefault(producer[t], []).append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in readers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    return order if len(order) == len(graph.node) else None
