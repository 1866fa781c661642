// Building blocks of the FlowForge page: safe DOM builders, formatting, and the three drawings
// (the DAG graph, the runs × tasks grid and the Gantt chart).
//
// Every string that comes from the API (ids, names, descriptions, commands, logs) enters the
// document as a text node or an attribute value, never as markup: a task that prints <script>
// shows the characters, it does not run them.

const SVG_NS = "http://www.w3.org/2000/svg";

export const TASK_STATES = [
  "pending", "queued", "running", "success", "failed",
  "up_for_retry", "upstream_failed", "skipped", "cancelled",
];
export const RUN_TERMINAL = new Set(["success", "failed", "cancelled"]);
export const TASK_TERMINAL = new Set(["success", "failed", "upstream_failed", "skipped", "cancelled"]);
// "none" marks a task with no instance to show (no run yet, or not in that run's DAG version).
const KNOWN_STATES = new Set([...TASK_STATES, "none"]);

// ---- DOM ------------------------------------------------------------------------------------

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element with attributes and children (strings become text nodes). */
export function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element with attributes and children (strings become text nodes). */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Set a node's text only when it changed, so live updates do not disturb selection or hover. */
export function setText(node, value) {
  const text = value === null || value === undefined ? "" : String(value);
  if (node.textContent !== text) node.textContent = text;
}

/** Set (or with null, remove) an attribute only when it changed. */
export function setAttr(node, name, value) {
  if (value === null || value === undefined) {
    if (node.hasAttribute(name)) node.removeAttribute(name);
  } else if (node.getAttribute(name) !== String(value)) {
    node.setAttribute(name, String(value));
  }
}

/** The CSS class of a state; an unexpected value from the API gets a neutral class. */
export function stateClass(state) {
  return "state-" + (KNOWN_STATES.has(state) ? state : "unknown");
}

/** Swap the element's state-* class for this state's, leaving its other classes alone. */
export function setStateClass(node, state) {
  const wanted = stateClass(state);
  if (node.classList.contains(wanted)) return;
  for (const cls of [...node.classList]) if (cls.startsWith("state-")) node.classList.remove(cls);
  node.classList.add(wanted);
}

/**
 * Keep `parent`'s children in step with `items` by key: existing nodes are updated in place
 * (focus, hover and open tooltips survive a refresh), new ones created, gone ones removed.
 */
export function syncChildren(parent, items, key, create, update) {
  const old = new Map();
  for (const child of parent.children) if (child.dataset.key !== undefined) old.set(child.dataset.key, child);
  let cursor = parent.firstElementChild;
  for (const item of items) {
    const k = String(key(item));
    let node = old.get(k);
    if (node) {
      old.delete(k);
    } else {
      node = create(item);
      node.dataset.key = k;
    }
    update(node, item);
    if (node !== cursor) parent.insertBefore(node, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const node of old.values()) node.remove();
}

/** A small coloured square with its state as hover text and as text for screen readers. */
export function stateSquare(href) {
  return el(href ? "a" : "span", { class: "sq", href }, el("span", { class: "sr-only" }));
}

/** Point a square at a state, with `label` (e.g. the run id) in its hover and accessible text. */
export function updateSquare(node, state, label) {
  setStateClass(node, state);
  const text = label ? `${label}: ${state}` : String(state);
  setAttr(node, "title", text);
  setAttr(node, "data-state", state);
  setText(node.firstElementChild, text);
}

/** A state badge: the state's name in text, coloured. */
export function stateBadge(state) {
  const span = el("span", { class: "badge" });
  updateBadge(span, state);
  return span;
}

export function updateBadge(node, state) {
  setStateClass(node, state);
  setAttr(node, "data-state", state);
  setText(node, String(state || "").replace(/_/g, " "));
}

/** A legend of every task state: a square and its name. */
export function stateLegend() {
  return el("ul", { class: "legend", "aria-label": "Colours of task states" },
    ...TASK_STATES.map((s) => el("li", null, el("span", { class: "sq " + stateClass(s) }), s.replace(/_/g, " "))));
}

// ---- formatting -----------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

/** Epoch seconds (or an ISO string) as local `YYYY-MM-DD HH:MM:SS`; "" for none. */
export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * When a run stands for: its logical date (the schedule tick) when it has one, else when it started
 * (or, not started yet, when it was created). Epoch seconds.
 */
export function runWhen(run) {
  return run.logical_date ?? run.started_at ?? run.created_at;
}

/** A run's short label for a grid column: `MM-DD HH:MM` (local time) of `runWhen`. */
export function runLabel(run) {
  const when = runWhen(run);
  if (when === null || when === undefined) return "";
  const d = new Date(when * 1000);
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A span of seconds as `0.4s`, `12s`, `3m05s`, `2h03m`. */
export function fmtSecs(secs) {
  if (secs === null || secs === undefined || !Number.isFinite(secs)) return "";
  if (secs < 10) return secs.toFixed(1) + "s";
  if (secs < 60) return Math.round(secs) + "s";
  if (secs < 3600) return Math.floor(secs / 60) + "m" + pad(Math.floor(secs % 60)) + "s";
  return Math.floor(secs / 3600) + "h" + pad(Math.floor((secs % 3600) / 60)) + "m";
}

/** How long something took, or has taken so far when it has not ended. */
export function fmtDuration(start, end) {
  if (!start) return "";
  return fmtSecs((end || Date.now() / 1000) - start);
}

/** `s` cut to `max` characters with an ellipsis (the full text goes in a title). */
export function clip(s, max) {
  const text = String(s);
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

// ---- graph layout ---------------------------------------------------------------------------

/**
 * Layers for a DAG drawn left to right: a task's layer is its depth (the longest chain of
 * dependencies before it). Within a layer, tasks are ordered by the mean position of their
 * upstream tasks, which keeps most arrows short and uncrossed. `tasks` is [{id, depends_on}].
 */
export function layoutLayers(tasks) {
  const ids = new Set(tasks.map((t) => t.id));
  const parents = new Map(tasks.map((t) => [t.id, (t.depends_on || []).filter((p) => ids.has(p))]));
  const children = new Map(tasks.map((t) => [t.id, []]));
  for (const [id, ps] of parents) for (const p of ps) children.get(p).push(id);

  // Kahn's algorithm: depth = 1 + the deepest parent. A task on a cycle (never valid, but the
  // page must not hang on it) is placed after everything else.
  const depth = new Map();
  const waiting = new Map(tasks.map((t) => [t.id, parents.get(t.id).length]));
  const ready = tasks.filter((t) => waiting.get(t.id) === 0).map((t) => t.id);
  for (let i = 0; i < ready.length; i++) {
    const id = ready[i];
    const d = Math.max(-1, ...parents.get(id).map((p) => depth.get(p) ?? -1)) + 1;
    depth.set(id, d);
    for (const c of children.get(id)) {
      waiting.set(c, waiting.get(c) - 1);
      if (waiting.get(c) === 0) ready.push(c);
    }
  }
  const maxDepth = Math.max(-1, ...depth.values());
  for (const t of tasks) if (!depth.has(t.id)) depth.set(t.id, maxDepth + 1);

  const layers = [];
  for (const t of tasks) (layers[depth.get(t.id)] ||= []).push(t.id);
  const position = new Map();
  const place = (layer) => layer.forEach((id, i) => position.set(id, i));
  layers.forEach(place);
  // One sweep down and one back up of the barycentre heuristic; enough for readable pictures.
  const sweep = (order, neighbours) => {
    for (const layer of order) {
      const score = new Map(layer.map((id) => {
        const ns = neighbours.get(id);
        return [id, ns.length ? ns.reduce((s, n) => s + position.get(n), 0) / ns.length : position.get(id)];
      }));
      layer.sort((a, b) => score.get(a) - score.get(b));
      place(layer);
    }
  };
  sweep(layers.slice(1), parents);
  sweep(layers.slice(0, -1).reverse(), children);
  return { layers, parents };
}

/** The tasks in the order of the layout: by layer, then top to bottom. */
export function layoutOrder(tasks) {
  return layoutLayers(tasks).layers.flat();
}

// ---- the graph ------------------------------------------------------------------------------

const BOX_W = 168;
const BOX_H = 44;
const GAP_X = 56;
const GAP_Y = 14;
const PAD = 12;

/**
 * A DAG drawn as SVG boxes and arrows. `setDag` lays it out (only when its shape changed);
 * `setStates` colours the boxes and writes each state under the task's id.
 */
export class GraphView {
  constructor(container, { href } = {}) {
    this.container = container;
    this.href = href || null;
    this.shape = "";
    this.nodes = new Map();
  }

  setDag(tasks) {
    const shape = JSON.stringify(tasks.map((t) => [t.id, t.depends_on || []]));
    if (shape === this.shape) return false;
    this.shape = shape;
    this.draw(tasks);
    return true;
  }

  draw(tasks) {
    const { layers, parents } = layoutLayers(tasks);
    const tallest = Math.max(1, ...layers.map((l) => l.length));
    const width = PAD * 2 + layers.length * BOX_W + Math.max(0, layers.length - 1) * GAP_X;
    const height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y;
    const at = new Map();
    layers.forEach((layer, col) => {
      // Centre short layers against the tallest one, so a diamond looks like a diamond.
      const offset = ((tallest - layer.length) * (BOX_H + GAP_Y)) / 2;
      layer.forEach((id, row) => at.set(id, {
        x: PAD + col * (BOX_W + GAP_X),
        y: PAD + offset + row * (BOX_H + GAP_Y),
      }));
    });
    const names = new Map(tasks.map((t) => [t.id, t]));
    const root = svg("svg", {
      class: "graph", width, height, viewBox: `0 0 ${width} ${height}`,
      role: "group", "aria-label": `Task graph, ${tasks.length} tasks`,
    });
    root.append(svg("defs", null, svg("marker", {
      id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto",
    }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
    const edges = svg("g", { class: "edges" });
    for (const [id, ps] of parents) {
      const to = at.get(id);
      for (const p of ps) {
        const from = at.get(p);
        const x1 = from.x + BOX_W, y1 = from.y + BOX_H / 2, x2 = to.x, y2 = to.y + BOX_H / 2;
        const bend = Math.max(20, (x2 - x1) / 2);
        edges.append(svg("path", {
          class: "edge", "marker-end": "url(#arrow)",
          d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        }));
      }
    }
    root.append(edges);
    this.nodes = new Map();
    const boxes = svg("g", { class: "nodes" });
    for (const [id, { x, y }] of at) {
      const task = names.get(id);
      const title = svg("title");
      const state = svg("text", { x: x + 10, y: y + 34, class: "node-state" });
      const group = svg("g", { class: "node state-none", "data-task": id },
        title,
        svg("rect", { x, y, width: BOX_W, height: BOX_H, rx: 6 }),
        svg("text", { x: x + 10, y: y + 18, class: "node-id" }, clip(id, 22)),
        state);
      const node = this.href ? svg("a", { href: this.href(id), class: "node-link" }, group) : group;
      boxes.append(node);
      this.nodes.set(id, { group, title, state, task });
      this.label(id, null);
    }
    root.append(boxes);
    this.container.replaceChildren(root);
  }

  label(id, stateName, note, slow) {
    const node = this.nodes.get(id);
    const name = node.task.name && node.task.name !== id ? ` (${node.task.name})` : "";
    const command = node.task.command ? `\n$ ${node.task.command}` : "";
    const why = slow ? `\n${slow}` : "";
    setText(node.title, `${id}${name}: ${stateName || "no run yet"}${note ? `, ${note}` : ""}${why}${command}`);
    const shown = stateName ? stateName.replace(/_/g, " ") + (note ? ` · ${note}` : "") : "";
    setText(node.state, stateName ? shown : (node.task.command ? clip(node.task.command, 24) : ""));
    if (stateName) setStateClass(node.group, stateName);
    else node.group.setAttribute("class", "node state-none");
    setAttr(node.group, "data-state", stateName || null);
    node.group.classList.toggle("slow", Boolean(slow));
  }

  /**
   * Colour every box by `states` (task id → state) and add its `notes` (task id → short text);
   * tasks missing from `states` are shown plain. `slow` (task id → the API's slow note message)
   * marks the running tasks that run far longer than usual.
   */
  setStates(states, notes = new Map(), slow = new Map()) {
    for (const id of this.nodes.keys()) this.label(id, states.get(id) || null, notes.get(id) || "", slow.get(id) || "");
  }

  /** Mark one task as selected (or none). */
  select(taskId) {
    for (const [id, node] of this.nodes) node.group.classList.toggle("selected", id === taskId);
  }
}

// ---- the grid of runs × tasks ---------------------------------------------------------------

/**
 * Airflow's grid view: one column per run (oldest left), one row per task, one coloured cell per
 * task instance. The table is rebuilt only when its runs or tasks change; otherwise live updates
 * touch just the cells whose state changed, which keeps a 25 × 500 grid cheap to refresh.
 */
export class RunGrid {
  constructor(container, { runHref, cellHref }) {
    this.container = container;
    this.runHref = runHref;
    this.cellHref = cellHref;
    this.shape = "";
    this.cells = new Map();
    this.heads = new Map();
    this.labels = new Map();
  }

  /**
   * `runs` oldest first, each {run, tasks: Map(task id → instance)}; `taskIds` the rows.
   * Returns true when the table had to be built anew.
   */
  render(runs, taskIds) {
    const shape = JSON.stringify([runs.map((r) => r.run.run_id), taskIds]);
    const fresh = shape !== this.shape;
    if (fresh) {
      this.shape = shape;
      this.build(runs, taskIds);
    }
    for (const { run, tasks } of runs) {
      const when = run.logical_date ? `logical date ${fmtTime(run.logical_date)}` : fmtTime(runWhen(run));
      updateSquare(this.heads.get(run.run_id), run.state, `run ${run.run_id}, ${when}`);
      setText(this.labels.get(run.run_id), runLabel(run));
      for (const id of taskIds) {
        const cell = this.cells.get(run.run_id + "\n" + id);
        const ti = tasks.get(id);
        const state = ti ? ti.state : "none";
        if (cell.dataset.state === state) continue;
        cell.dataset.state = state;
        setStateClass(cell, ti ? state : "none");
        const text = ti ? `${id} in run ${run.run_id}: ${state.replace(/_/g, " ")}` : `${id}: not in run ${run.run_id}`;
        cell.setAttribute("title", text);
        cell.setAttribute("aria-label", text);
      }
    }
    return fresh;
  }

  build(runs, taskIds) {
    this.cells = new Map();
    this.heads = new Map();
    this.labels = new Map();
    const head = el("tr", null, el("th", { scope: "col", class: "grid-task" }, "Task \\ run"));
    for (const { run } of runs) {
      const sq = stateSquare(this.runHref(run.run_id));
      // The column's label: when the run stands for, written upwards to fit the column's width.
      const label = el("span", { class: "run-label", "aria-hidden": "true" });
      this.heads.set(run.run_id, sq);
      this.labels.set(run.run_id, label);
      head.append(el("th", { scope: "col", class: "grid-run" }, label, sq));
    }
    const body = el("tbody");
    for (const id of taskIds) {
      const row = el("tr", null, el("th", { scope: "row", class: "grid-task", title: id }, id));
      for (const { run } of runs) {
        const cell = el("a", { class: "cell", href: this.cellHref(run.run_id, id) });
        this.cells.set(run.run_id + "\n" + id, cell);
        row.append(el("td", null, cell));
      }
      body.append(row);
    }
    const table = el("table", { class: "grid", "aria-label": "Recent runs by task" }, el("thead", null, head), body);
    this.container.replaceChildren(runs.length ? table : el("p", { class: "muted" }, "No runs yet."));
  }
}

// ---- the Gantt chart ------------------------------------------------------------------------

const ROW_H = 22;

/**
 * The bars of one task's row: every attempt before the latest (from `earlier`, the task detail's
 * attempts), then the latest from the task instance itself, which the run's answer keeps current.
 */
function ganttBars(t, earlier) {
  const bars = (earlier || []).filter((a) => a.attempt < t.attempt && (a.started_at || a.queued_at))
    .map((a) => ({ attempt: a.attempt, state: a.state, queued_at: a.queued_at, started_at: a.started_at, ended_at: a.ended_at }));
  if (t.started_at || t.queued_at) {
    bars.push({ attempt: t.attempt, state: t.state, queued_at: t.queued_at, started_at: t.started_at, ended_at: t.ended_at });
  }
  return bars;
}

/**
 * A Gantt chart of a run's task instances: a bar from start to end (to now while running),
 * a lighter lead-in while queued, each row's state and duration in text at its end. A retried
 * task shows every attempt as a bar of its own in its row, each in its attempt's state's colour;
 * `attempts` maps a task id to its attempts (only needed for tasks past their first attempt).
 */
export function drawGantt(container, tasks, { href, now, selected, attempts = new Map() }) {
  const barsOf = new Map(tasks.map((t) => [t.task_id, ganttBars(t, attempts.get(t.task_id))]));
  const firstOf = (t) => Math.min(...barsOf.get(t.task_id).map((b) => b.queued_at || b.started_at));
  const started = tasks.filter((t) => barsOf.get(t.task_id).length);
  const rows = [...started].sort((a, b) => firstOf(a) - firstOf(b));
  const waiting = tasks.filter((t) => !barsOf.get(t.task_id).length);
  const all = [...rows, ...waiting];
  const t0 = Math.min(...started.map(firstOf), now);
  const t1 = Math.max(...started.flatMap((t) => barsOf.get(t.task_id).map((b) => b.ended_at || now)), t0 + 1);
  // Below ~520 px the bars would be too short to read: the box scrolls sideways instead.
  const width = Math.max(520, container.clientWidth || 800);
  const labelW = width < 700 ? 120 : 170;
  const chartW = width - labelW - 140;
  const x = (t) => labelW + ((t - t0) / (t1 - t0)) * chartW;
  const height = 26 + all.length * ROW_H;
  const root = svg("svg", {
    class: "gantt", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "group", "aria-label": "Gantt chart of task start and end times",
  });
  // Ticks at a round step, at most one per 60 px, so the axis reads as time since the run began.
  const span = t1 - t0;
  const most = Math.max(2, Math.floor(chartW / 60));
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200].find((s) => span / s <= most) || 14400;
  for (let s = 0; s <= span; s += step) {
    root.append(svg("line", { x1: x(t0 + s), x2: x(t0 + s), y1: 16, y2: height, class: "tick" }));
    root.append(svg("text", { x: x(t0 + s) + 2, y: 12, class: "tick-label" }, "+" + fmtSecs(s).replace(".0s", "s")));
  }
  all.forEach((t, i) => {
    const y = 22 + i * ROW_H;
    const state = t.state.replace(/_/g, " ");
    const bars = barsOf.get(t.task_id);
    const duration = t.started_at ? fmtDuration(t.started_at, t.ended_at) : "";
    const tries = bars.length > 1 ? bars.map((b) => `\nattempt ${b.attempt}: ${b.state.replace(/_/g, " ")}`
      + (b.started_at ? `, ${fmtTime(b.started_at)}, ran ${fmtDuration(b.started_at, b.ended_at)}` : "")).join("") : "";
    const group = svg("g", { class: "gantt-row " + stateClass(t.state) + (t.task_id === selected ? " selected" : ""),
      "data-task": t.task_id, "data-state": t.state },
      svg("title", null, `${t.task_id}: ${state}` + (duration ? `, ran ${duration}` : "")
        + (t.started_at ? `\nstarted ${fmtTime(t.started_at)}` : "") + (t.ended_at ? `\nended ${fmtTime(t.ended_at)}` : "") + tries),
      svg("rect", { x: 0, y: y - 2, width, height: ROW_H, class: "row-bg" }),
      svg("text", { x: 4, y: y + 13, class: "gantt-label" }, clip(t.task_id, labelW < 170 ? 15 : 22)));
    let end = x(t0);
    for (const b of bars) {
      if (b.queued_at && b.started_at && b.started_at > b.queued_at) {
        group.append(svg("rect", { x: x(b.queued_at), y: y + 3, width: Math.max(1, x(b.started_at) - x(b.queued_at)),
          height: ROW_H - 10, class: "bar-wait" }));
      }
      if (b.started_at) {
        end = x(b.ended_at || now);
        group.append(svg("rect", { x: x(b.started_at), y, width: Math.max(2, end - x(b.started_at)),
          height: ROW_H - 4, rx: 3, class: "bar " + stateClass(b.state), "data-attempt": b.attempt, "data-state": b.state }));
      } else if (b.queued_at) {
        end = x(now);
      }
    }
    const note = [state, duration, bars.length > 1 ? `${bars.length} attempts` : ""].filter(Boolean).join(" · ");
    group.append(svg("text", { x: end + 6, y: y + 13, class: "gantt-note" }, note));
    root.append(href ? svg("a", { href: href(t.task_id) }, group) : group);
  });
  container.replaceChildren(root);
}

// ---- the durations chart --------------------------------------------------------------------

const DUR_BAR_W = 14;
const DUR_GAP = 4;
const DUR_AXIS_W = 56;
const DUR_NOTE_W = 84;
const DUR_TOP = 12;
const DUR_CHART_H = 110;

/**
 * A DAG's last ended runs as a bar chart (`stats` is the API's DagStats, the last to end first):
 * one bar per run, oldest left, as tall as the run took, in its state's colour, linking to the
 * run, its title saying the run, its state and how long it took; dashed lines mark the p50 and
 * p95 of the successful runs. A run that never started is a flat stub.
 */
export function drawDurations(container, stats, { href }) {
  const runs = [...stats.runs].reverse();
  if (!runs.length) {
    container.replaceChildren(el("p", { class: "muted" }, "No ended runs yet: their durations show here."));
    return;
  }
  const longest = Math.max(0, ...runs.map((r) => r.duration_secs ?? 0), stats.p95_secs ?? 0);
  const scale = longest > 0 ? longest : 1;
  const width = DUR_AXIS_W + runs.length * (DUR_BAR_W + DUR_GAP) + DUR_NOTE_W;
  const height = DUR_TOP + DUR_CHART_H + 6;
  const base = DUR_TOP + DUR_CHART_H;
  const y = (secs) => base - (secs / scale) * DUR_CHART_H;
  const root = svg("svg", {
    class: "durations", width, height, viewBox: `0 0 ${width} ${height}`,
    role: "group", "aria-label": `Durations of the last ${runs.length} ended runs, oldest first`,
  });
  root.append(
    svg("line", { x1: DUR_AXIS_W - 4, x2: width - DUR_NOTE_W, y1: base + 0.5, y2: base + 0.5, class: "axis" }),
    svg("text", { x: DUR_AXIS_W - 8, y: DUR_TOP + 4, class: "axis-label", "text-anchor": "end" }, fmtSecs(longest)),
    svg("text", { x: DUR_AXIS_W - 8, y: base, class: "axis-label", "text-anchor": "end" }, "0"));
  const bars = svg("g", { class: "bars" });
  runs.forEach((run, i) => {
    const x = DUR_AXIS_W + i * (DUR_BAR_W + DUR_GAP);
    const secs = run.duration_secs;
    const top = secs === null || secs === undefined ? base - 2 : Math.min(base - 2, y(secs));
    const state = String(run.state).replace(/_/g, " ");
    const took = secs === null || secs === undefined ? "never started" : `took ${fmtSecs(secs)}`;
    const ended = run.ended_at ? `\nended ${fmtTime(run.ended_at)}` : "";
    bars.append(svg("a", { href: href(run.run_id), class: "dur-link" },
      svg("rect", {
        x, y: top, width: DUR_BAR_W, height: base - top, rx: 2,
        class: "bar " + stateClass(run.state), "data-run": run.run_id, "data-state": run.state,
      }, svg("title", null, `run ${run.run_id}: ${state}, ${took}${ended}`))));
  });
  root.append(bars);
  // The percentile lines, labelled past the last bar; labels kept apart when the lines are close.
  let lastLabel = -Infinity;
  for (const [name, secs] of [["p95", stats.p95_secs], ["p50", stats.p50_secs]]) {
    if (secs === null || secs === undefined) continue;
    const at = y(secs);
    const labelY = Math.max(at + 4, lastLabel + 12);
    lastLabel = labelY;
    root.append(
      svg("line", { x1: DUR_AXIS_W - 4, x2: width - DUR_NOTE_W + 4, y1: at, y2: at, class: "pline " + name }),
      svg("text", { x: width - DUR_NOTE_W + 8, y: labelY, class: "pline-label" }, `${name} ${fmtSecs(secs)}`));
  }
  container.replaceChildren(root);
}
