"""The task graph: order, cycles, dependants and depth."""

from __future__ import annotations

import pytest

from flowforge.core.graph import downstream, find_cycle, find_cycles, layers, topological_order
from flowforge.core.model import DagSpec, TaskSpec


def dag(*tasks: str) -> DagSpec:
    """A DAG from 'id: dep dep' strings, in file order."""
    specs = []
    for t in tasks:
        task_id, _, deps = t.partition(":")
        specs.append(TaskSpec(id=task_id.strip(), command="true", depends_on=tuple(deps.split())))
    return DagSpec(id="d", tasks=tuple(specs))


# A diamond plus an unrelated task: a -> (b, c) -> d; e alone.
DIAMOND = dag("a:", "c: a", "b: a", "d: b c", "e:")


@pytest.mark.parametrize(
    ("spec", "order"),
    [
        (dag("a:", "b:", "c:"), ["a", "b", "c"]),  # no edges: file order
        (dag("c:", "b:", "a:"), ["c", "b", "a"]),  # file order, not alphabetical
        (dag("b: a", "a:"), ["a", "b"]),  # dependency first even if listed later
        (DIAMOND, ["a", "c", "b", "d", "e"]),  # ties (c, b, e) keep file order
        (dag("x: z", "y:", "z:"), ["y", "z", "x"]),
    ],
)
def test_topological_order(spec: DagSpec, order: list[str]) -> None:
    assert topological_order(spec) == order


def test_topological_order_puts_every_task_after_its_dependencies() -> None:
    order = topological_order(DIAMOND)
    position = {task_id: i for i, task_id in enumerate(order)}
    for task in DIAMOND.tasks:
        assert all(position[dep] < position[task.id] for dep in task.depends_on)


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ([], None),
        ([("a", "b"), ("b", "c")], None),
        ([("a", "b"), ("b", "a")], ["a", "b"]),
        ([("a", "b"), ("b", "c"), ("c", "a")], ["a", "b", "c"]),
        ([("x", "a"), ("a", "b"), ("b", "a")], ["a", "b"]),  # the path into the loop is not part of it
        ([("a", "a")], ["a"]),
    ],
)
def test_find_cycle(edges: list[tuple[str, str]], cycle: list[str] | None) -> None:
    found = find_cycle(edges)
    if cycle is None:
        assert found is None
    else:
        assert found is not None and sorted(found) == sorted(cycle)
        # Consecutive tasks are edges, and the last one leads back to the first.
        assert all((found[i - 1], found[i]) in edges for i in range(len(found)))


def test_find_cycles_gives_one_per_knot() -> None:
    edges = [("a", "b"), ("b", "a"), ("c", "d"), ("d", "e"), ("e", "c"), ("e", "f")]
    assert sorted(sorted(c) for c in find_cycles(edges)) == [["a", "b"], ["c", "d", "e"]]
    assert list(find_cycles([("a", "b")])) == []


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (["a"], {"b", "c", "d"}),
        (["b"], {"d"}),
        (["d"], set()),
        (["e"], set()),
        (["b", "c"], {"d"}),
        (["a", "b"], {"b", "c", "d"}),  # a start that is downstream of another start is included
        ([], set()),
    ],
)
def test_downstream(start: list[str], expected: set[str]) -> None:
    assert downstream(DIAMOND, start) == expected


def test_downstream_of_unknown_task() -> None:
    with pytest.raises(KeyError, match="no task 'zz'"):
        downstream(DIAMOND, ["zz"])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (DIAMOND, {"a": 0, "b": 1, "c": 1, "d": 2, "e": 0}),
        (dag("a:", "b: a", "c: a b"), {"a": 0, "b": 1, "c": 2}),  # depth follows the longest path
        (dag("x:"), {"x": 0}),
    ],
)
def test_layers(spec: DagSpec, expected: dict[str, int]) -> None:
    assert layers(spec) == expected
