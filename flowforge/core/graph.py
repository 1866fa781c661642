"""The task graph of a DAG: order, cycles, dependants and depth.

Edges point the way work flows: from a dependency to the task that depends on it. The common
paths (order, no cycle, dependants) are plain Python; networkx is imported only to describe the
cycles of a graph that has some, which keeps every command that reads a DAG file quick to start.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING

from flowforge.core.model import DagSpec

if TYPE_CHECKING:
    import networkx as nx


def topological_order(spec: DagSpec) -> list[str]:
    """Task ids with every task after its dependencies; ties keep the order of the file.

    Raises ValueError when the tasks wait on each other (a valid DagSpec never does).
    """
    index = {t.id: i for i, t in enumerate(spec.tasks)}
    deps = [set(t.depends_on) for t in spec.tasks]  # a dependency listed twice counts once
    waiting = [len(d) for d in deps]
    dependants: list[list[int]] = [[] for _ in spec.tasks]
    for i, task_deps in enumerate(deps):
        for dep in task_deps:
            dependants[index[dep]].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(spec.tasks[i].id)
        for j in dependants[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(spec.tasks):
        raise ValueError(f"DAG '{spec.id}' has a cycle")
    return order


def _has_cycle(edges: list[tuple[str, str]]) -> bool:
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for upstream, downstream in edges:
        sorter.add(downstream, upstream)
    try:
        sorter.prepare()
    except CycleError:
        return True
    return False


def _cycle_in(g: nx.DiGraph) -> list[str]:
    import networkx as nx

    # find_cycle returns edges (u, v) along the loop; their sources are the tasks in flow order.
    return [u for u, _v, *_ in nx.find_cycle(g)]


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """One cycle among `(upstream, downstream)` edges, as tasks in flow order, or None.

    The last task listed runs before the first one, which closes the loop.
    """
    edge_list = list(edges)
    if not _has_cycle(edge_list):
        return None
    import networkx as nx

    return _cycle_in(nx.DiGraph(edge_list))


def find_cycles(edges: Iterable[tuple[str, str]]) -> Iterator[list[str]]:
    """One cycle per group of tasks that wait on each other (strongly connected component)."""
    edge_list = list(edges)
    if not _has_cycle(edge_list):  # the common case, and much cheaper than the components
        return
    import networkx as nx

    g = nx.DiGraph(edge_list)
    for component in nx.strongly_connected_components(g):
        # A single task is a cycle only when it depends on itself.
        if len(component) > 1 or g.has_edge(*component, *component):
            yield _cycle_in(g.subgraph(component))


def downstream(spec: DagSpec, task_ids: Iterable[str]) -> set[str]:
    """Every task that depends, directly or through others, on any of `task_ids`."""
    after: dict[str, list[str]] = {t.id: [] for t in spec.tasks}
    for t in spec.tasks:
        for dep in t.depends_on:
            after[dep].append(t.id)
    out: set[str] = set()
    for task_id in task_ids:
        if task_id not in after:
            raise KeyError(f"DAG '{spec.id}' has no task '{task_id}'")
        stack = list(after[task_id])
        while stack:
            n = stack.pop()
            if n not in out:
                out.add(n)
                stack.extend(after[n])
    return out


def layers(spec: DagSpec) -> dict[str, int]:
    """Depth of each task: 0 without dependencies, else one more than its deepest dependency."""
    depth: dict[str, int] = {}
    deps = {t.id: t.depends_on for t in spec.tasks}
    for task_id in topological_order(spec):
        depth[task_id] = 1 + max((depth[d] for d in deps[task_id]), default=-1)
    return depth
