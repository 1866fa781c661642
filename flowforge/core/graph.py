"""The task graph of a DAG: order, cycles, dependants and depth.

Edges point the way work flows: from a dependency to the task that depends on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import networkx as nx

from flowforge.core.model import DagSpec


def _graph(spec: DagSpec) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(t.id for t in spec.tasks)  # nodes in file order, even those without edges
    g.add_edges_from((dep, t.id) for t in spec.tasks for dep in t.depends_on)
    return g


def topological_order(spec: DagSpec) -> list[str]:
    """Task ids with every task after its dependencies; ties keep the order of the file."""
    index = {t.id: i for i, t in enumerate(spec.tasks)}
    return list(nx.lexicographical_topological_sort(_graph(spec), key=index.__getitem__))


def _cycle_in(g: nx.DiGraph) -> list[str]:
    # find_cycle returns edges (u, v) along the loop; their sources are the tasks in flow order.
    return [u for u, _v, *_ in nx.find_cycle(g)]


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """One cycle among `(upstream, downstream)` edges, as tasks in flow order, or None.

    The last task listed runs before the first one, which closes the loop.
    """
    g = nx.DiGraph(list(edges))
    try:
        return _cycle_in(g)
    except nx.NetworkXNoCycle:
        return None


def find_cycles(edges: Iterable[tuple[str, str]]) -> Iterator[list[str]]:
    """One cycle per group of tasks that wait on each other (strongly connected component)."""
    g = nx.DiGraph(list(edges))
    if nx.is_directed_acyclic_graph(g):  # the common case, and much cheaper than the components
        return
    for component in nx.strongly_connected_components(g):
        # A single task is a cycle only when it depends on itself.
        if len(component) > 1 or g.has_edge(*component, *component):
            yield _cycle_in(g.subgraph(component))


def downstream(spec: DagSpec, task_ids: Iterable[str]) -> set[str]:
    """Every task that depends, directly or through others, on any of `task_ids`."""
    g = _graph(spec)
    out: set[str] = set()
    for task_id in task_ids:
        if task_id not in g:
            raise KeyError(f"DAG '{spec.id}' has no task '{task_id}'")
        out |= nx.descendants(g, task_id)
    return out


def layers(spec: DagSpec) -> dict[str, int]:
    """Depth of each task: 0 without dependencies, else one more than its deepest dependency."""
    depth: dict[str, int] = {}
    deps = {t.id: t.depends_on for t in spec.tasks}
    for task_id in topological_order(spec):
        depth[task_id] = 1 + max((depth[d] for d in deps[task_id]), default=-1)
    return depth
