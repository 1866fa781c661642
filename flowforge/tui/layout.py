"""Lays a DAG out for the terminal: columns by topological depth, left to right, with routed connectors.

Two steps with different lifetimes. `build_topology` (layers, long-edge routing points, an order
within each layer that reduces crossings) depends only on the DAG version, so callers cache it per
version. `place` turns a topology into a character canvas for one node style and viewport width; it
is cheap and re-run only when the terminal is resized. Task states are not part of either: the
widget colours nodes at draw time, so a state change never recomputes a layout.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len, set_cell_size

from flowforge.core.graph import layers, topological_order
from flowforge.core.model import DagSpec, TaskSpec

# Connector cells are drawn from the directions they join.
N, E, S, W = 1, 2, 4, 8
_BOX = {
    0: " ",
    N: "│",
    S: "│",
    N | S: "│",
    E: "─",
    W: "─",
    E | W: "─",
    E | S: "╭",
    W | S: "╮",
    N | E: "╰",
    N | W: "╯",
    N | S | E: "├",
    N | S | W: "┤",
    E | W | S: "┬",
    E | W | N: "┴",
    N | E | S | W: "┼",
}
ARROW = "▶"
COMPACT_LABEL = 20  # widest task id shown in full in compact mode; longer ones end in "…"
BOXED_LABEL = 28
MAX_STRETCH = 10  # extra columns a gap may take to spread a small graph over a wide terminal


def _via(source: str, layer: int) -> str:
    # A routing point for long edges: a "node" with no box that a connector passes through.
    # NUL cannot occur in a task id, so these never collide with one.
    return f"\0{source}\0{layer}"


@dataclass(frozen=True)
class Topology:
    """Layers of node keys (task ids and routing points) in drawing order, and edges between adjacent layers."""

    layers: tuple[tuple[str, ...], ...]
    edges: tuple[tuple[str, str], ...]
    task_order: tuple[str, ...]

    @property
    def task_count(self) -> int:
        """How many tasks the DAG has."""
        return len(self.task_order)


def spec_of(tasks: Sequence[tuple[str, Sequence[str]]]) -> DagSpec:
    """A DagSpec with just the structure (ids and dependencies) of `tasks`; unknown dependencies dropped."""
    ids = {t for t, _ in tasks}
    return DagSpec(
        id="layout",
        tasks=tuple(
            TaskSpec(id=t, command="", depends_on=tuple(d for d in deps if d in ids)) for t, deps in tasks
        ),
    )


def build_topology(tasks: Sequence[tuple[str, Sequence[str]]], sweeps: int = 4) -> Topology:
    """Assign layers by depth, route long edges through one shared point per (source, layer), order layers."""
    spec = spec_of(tasks)
    depth = layers(spec)
    order = topological_order(spec)
    n_layers = 1 + max(depth.values(), default=-1)
    columns: list[list[str]] = [[] for _ in range(n_layers)]
    for task_id in order:
        columns[depth[task_id]].append(task_id)
    edges: set[tuple[str, str]] = set()
    vias: set[str] = set()
    for task in spec.tasks:
        for dep in task.depends_on:
            # A long edge shares its source's routing points with the source's other long edges:
            # a fan-out from one task to many later layers draws as one trunk, not many lines.
            prev = dep
            for layer in range(depth[dep] + 1, depth[task.id]):
                via = _via(dep, layer)
                if via not in vias:
                    vias.add(via)
                    columns[layer].append(via)
                edges.add((prev, via))
                prev = via
            edges.add((prev, task.id))
    _reduce_crossings(columns, edges, sweeps)
    return Topology(
        layers=tuple(tuple(c) for c in columns),
        edges=tuple(sorted(edges)),
        task_order=tuple(order),
    )


def _reduce_crossings(columns: list[list[str]], edges: set[tuple[str, str]], sweeps: int) -> None:
    """Barycentre heuristic: sweep down and up, ordering each layer by the mean position of its neighbours."""
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for a, b in edges:
        succs.setdefault(a, []).append(b)
        preds.setdefault(b, []).append(a)
    pos = {key: i for col in columns for i, key in enumerate(col)}

    def reorder(col: list[str], neighbours: dict[str, list[str]]) -> None:
        def key(item: tuple[int, str]) -> tuple[float, int]:
            i, node = item
            near = neighbours.get(node)
            return (sum(pos[m] for m in near) / len(near) if near else float(i), i)

        col[:] = [node for _, node in sorted(enumerate(col), key=key)]
        for i, node in enumerate(col):
            pos[node] = i

    for _ in range(sweeps):
        for col in columns[1:]:
            reorder(col, preds)
        for col in reversed(columns[:-1]):
            reorder(col, succs)


@dataclass(frozen=True)
class Placed:
    """A task node on the canvas: its box spans rows `y - 1 .. y + 1` when boxed, row `y` when compact."""

    task_id: str
    layer: int
    slot: int  # index among the real tasks of its layer, top to bottom
    x: int
    y: int  # the row connectors attach to
    width: int
    label: str  # the task id, cut to fit


@dataclass
class Canvas:
    """Connectors as text, one string per row, plus where each node's parts go."""

    width: int
    height: int
    boxed: bool
    rows: list[str]
    # Per row: (x, width, node index, part) sorted by x; part is "line", "top", "label" or "bottom".
    spans: list[list[tuple[int, int, int, str]]]
    nodes: list[Placed]
    index: dict[str, int] = field(default_factory=dict)
    # Nodes with incoming / outgoing connectors, for the box borders that meet them.
    has_in: set[int] = field(default_factory=set)
    has_out: set[int] = field(default_factory=set)
    span_starts: list[list[int]] = field(default_factory=list)
    by_layer: list[list[int]] = field(default_factory=list)  # node indexes per layer, top to bottom

    def node_at(self, x: int, y: int) -> Placed | None:
        """The node drawn at canvas cell (x, y), if any."""
        if not 0 <= y < self.height:
            return None
        starts = self.span_starts[y]
        i = bisect_right(starts, x) - 1
        if i >= 0:
            sx, w, node, _ = self.spans[y][i]
            if sx <= x < sx + w:
                return self.nodes[node]
        return None


def place(topology: Topology, *, boxed: bool, fill_width: int = 0) -> Canvas:
    """Positions and connectors for one node style; gaps widen (a little) to fill `fill_width` columns."""
    cols = topology.layers
    max_label = BOXED_LABEL if boxed else COMPACT_LABEL
    labels = {
        key: set_cell_size(key, max_label - 1) + "…" if cell_len(key) > max_label else key
        for col in cols
        for key in col
        if not key.startswith("\0")
    }
    pad = 4 if boxed else 2  # "│ " + " │"  or  " " + " "
    col_w = [max((cell_len(labels[k]) + 2 + pad for k in col if k in labels), default=3) for col in cols]
    height, port_y = _rows(cols, boxed)
    succs: dict[str, list[str]] = {}
    for a, b in topology.edges:
        succs.setdefault(a, []).append(b)
    lanes, lane_count = _lanes(cols, succs, port_y)

    xs, gap_w, width = _columns(col_w, lane_count, fill_width)
    grid = _Connectors(max(width, 1), height)
    canvas = Canvas(
        width=grid.width, height=height, boxed=boxed, rows=[], spans=[[] for _ in range(height)], nodes=[]
    )
    for layer, col in enumerate(cols):
        slot = 0
        for key in col:
            if key in labels:
                canvas.index[key] = len(canvas.nodes)
                canvas.nodes.append(
                    Placed(key, layer, slot, xs[layer], port_y[key], col_w[layer], labels[key])
                )
                slot += 1
            else:  # a routing point: a straight line through the column
                grid.hline(port_y[key], xs[layer], xs[layer] + col_w[layer] - 1)
    for layer, col in enumerate(cols[:-1]):
        x0 = xs[layer] + col_w[layer]
        x_end = xs[layer + 1] - 1  # the arrow's cell, just left of the next column
        lane_x0 = x0 + 1 + (gap_w[layer] - lane_count[layer] - 4) // 2
        for key in col:
            targets = succs.get(key, [])
            if not targets:
                continue
            if key in canvas.index:
                canvas.has_out.add(canvas.index[key])
            lane = lanes[layer].get(key)
            if lane is None:  # every target on the source's row: one straight line
                grid.hline(port_y[key], x0, x_end)
            else:
                grid.route(port_y[key], [port_y[t] for t in targets], x0, lane_x0 + lane, x_end)
            for t in targets:
                if t in canvas.index:
                    canvas.has_in.add(canvas.index[t])
                    grid.arrows.append((x_end, port_y[t]))
    canvas.rows = grid.text()
    _index_parts(canvas)
    return canvas


def _columns(col_w: list[int], lane_count: list[int], fill_width: int) -> tuple[list[int], list[int], int]:
    """The x of each column, the width of each gap between columns, and the total width."""
    gap_w = [n + 4 for n in lane_count]  # lead-in, lanes, a blank, the arrow
    natural = sum(col_w) + sum(gap_w)
    if fill_width > natural and gap_w:
        extra = min(MAX_STRETCH, (fill_width - natural) // len(gap_w))
        gap_w = [g + extra for g in gap_w]
    xs: list[int] = []
    x = 0
    for i, w in enumerate(col_w):
        xs.append(x)
        x += w + (gap_w[i] if i < len(gap_w) else 0)
    return xs, gap_w, x


def _index_parts(canvas: Canvas) -> None:
    """Fill the canvas's per-row spans of node parts (sorted by x) and its nodes per layer."""
    for i, node in enumerate(canvas.nodes):
        parts = (("top", -1), ("label", 0), ("bottom", 1)) if canvas.boxed else (("line", 0),)
        for part, dy in parts:
            canvas.spans[node.y + dy].append((node.x, node.width, i, part))
        while len(canvas.by_layer) <= node.layer:
            canvas.by_layer.append([])
        canvas.by_layer[node.layer].append(i)
    for row in canvas.spans:
        row.sort()
    canvas.span_starts = [[sx for sx, _, _, _ in row] for row in canvas.spans]


def _rows(cols: Sequence[Sequence[str]], boxed: bool) -> tuple[int, dict[str, int]]:
    """Canvas height and the row each node's connectors attach to; every layer centred vertically."""
    unit = 4 if boxed else 2  # rows per node: a 3-row box or 1 row, plus one blank row between nodes
    height = max((len(col) * unit - 1 for col in cols), default=1)
    top = 1 if boxed else 0  # connectors attach to a box's middle row
    port_y: dict[str, int] = {}
    for col in cols:
        offset = (height - (len(col) * unit - 1)) // 2
        for i, key in enumerate(col):
            port_y[key] = offset + top + i * unit
    return height, port_y


def _lanes(
    cols: Sequence[Sequence[str]], succs: dict[str, list[str]], port_y: dict[str, int]
) -> tuple[list[dict[str, int]], list[int]]:
    """The lane (vertical line) of each source in each gap, and how many lanes each gap has.

    Sources with the same targets share one (a fan-in draws as one bus into its targets, which is
    exactly what it means); groups whose vertical extents do not overlap share a lane too. A group
    whose targets all sit on its own row needs none.
    """
    lanes: list[dict[str, int]] = []
    lane_count: list[int] = []
    for col in cols[:-1]:
        groups: dict[tuple[str, ...], list[str]] = {}
        for key in col:
            if succs.get(key):
                groups.setdefault(tuple(sorted(succs[key])), []).append(key)
        extents: list[tuple[int, int, list[str]]] = []
        for group_targets, sources in groups.items():
            group_ys = [port_y[k] for k in (*sources, *group_targets)]
            if min(group_ys) != max(group_ys):
                extents.append((min(group_ys), max(group_ys), sources))
        extents.sort()
        ends: list[int] = []
        assigned: dict[str, int] = {}
        for lo, hi, sources in extents:
            free = next((i for i, end in enumerate(ends) if end < lo), len(ends))
            if free == len(ends):
                ends.append(hi)
            ends[free] = hi
            assigned.update(dict.fromkeys(sources, free))
        lanes.append(assigned)
        lane_count.append(len(ends))
    return lanes, lane_count


class _Connectors:
    """A grid of connector cells, each the set of directions it joins, turned into box-drawing text."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.bits = [[0] * width for _ in range(height)]
        self.arrows: list[tuple[int, int]] = []

    def hline(self, y: int, x1: int, x2: int) -> None:
        """A horizontal line; both ends stay open, as they always meet a node, an arrow, a lane or a line."""
        row = self.bits[y]
        for x in range(x1, x2 + 1):
            row[x] |= W | E

    def route(self, ys: int, yts: list[int], x0: int, lane: int, x_end: int) -> None:
        """From a source's row to the lane, along the lane, then out to each target row."""
        self.hline(ys, x0, lane - 1)
        self.bits[ys][lane] |= W
        lo, hi = min(ys, *yts), max(ys, *yts)
        for y in range(lo, hi + 1):
            self.bits[y][lane] |= (N if y > lo else 0) | (S if y < hi else 0)
        for yt in yts:
            self.bits[yt][lane] |= E
            self.hline(yt, lane + 1, x_end)

    def text(self) -> list[str]:
        """One string per row, arrows drawn over the line ends they sit on."""
        rows = [[_BOX[b] for b in row] for row in self.bits]
        for x, y in self.arrows:
            rows[y][x] = ARROW
        return ["".join(r) for r in rows]


def neighbour(canvas: Canvas, task_id: str, direction: str) -> str | None:
    """The task an arrow key moves to from `task_id`: up/down within its layer, left/right to the nearest row."""
    here = canvas.nodes[canvas.index[task_id]]
    if direction in ("up", "down"):
        same = canvas.by_layer[here.layer]
        j = here.slot + (-1 if direction == "up" else 1)
        return canvas.nodes[same[j]].task_id if 0 <= j < len(same) else None
    step = -1 if direction == "left" else 1
    layer = here.layer + step
    while 0 <= layer < len(canvas.by_layer):
        if canvas.by_layer[layer]:
            best = min(
                canvas.by_layer[layer], key=lambda k: (abs(canvas.nodes[k].y - here.y), canvas.nodes[k].y)
            )
            return canvas.nodes[best].task_id
        layer += step
    return None
