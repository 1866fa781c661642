// FlowForge's web page: three views over the JSON API behind hash routes (#/, #/dags/ID,
// #/runs/ID[/TASK]), kept live by /api/v1/events when the server offers it and by polling
// otherwise. No markup is ever built from data: see draw.js.
import {
  el, setText, setAttr, syncChildren, stateSquare, updateSquare, stateBadge, updateBadge, stateLegend,
  fmtTime, fmtDuration, fmtSecs, clip, layoutOrder, GraphView, RunGrid, drawGantt, drawDurations,
  RUN_TERMINAL, TASK_TERMINAL,
} from "./draw.js";

const TOKEN_KEY = "flowforge.token";
const FAST_MS = 1000;
// With the event stream open, polling is only a safety net for a missed event.
const CALM_MS = 5000;
const EVENTS_RETRY_MS = 30000;
const LAST_RUNS = 12;
const RECENT_RUNS = 50;
const RELIST_MS = 10000;
const GRID_RUNS = 25;
const STATS_RUNS = 50;
// The kinds of change /api/v1/events reports; each event's data names its dag_id and run_id.
const EVENT_KINDS = ["dag", "run", "task"];
// Under a burst of events (a wide DAG finishing), refresh at most this often.
const EVENT_REFRESH_MS = 250;
// The most log pages (about 1 MiB each) read in one refresh, so a huge log cannot stall the page.
const LOG_PAGES_PER_REFRESH = 4;

const $ = (selector) => document.querySelector(selector);
const enc = encodeURIComponent;
const dagHref = (id) => "#/dags/" + enc(id);
const runHref = (id) => "#/runs/" + enc(id);
const taskHref = (run, task) => `#/runs/${enc(run)}/${enc(task)}`;

// ---- the API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, details = []) {
    super(message);
    this.status = status;
    this.details = Array.isArray(details) ? details : [];
  }
}

let tokenPrompt = null;

/** Call the API; on 401 ask for the token (once for all waiting calls) and try again. */
async function api(path, { method = "GET", body } = {}) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "the FlowForge API does not answer");
    }
    if (resp.status === 401) {
      await askForToken(Boolean(token));
      continue;
    }
    const data = await resp.json().catch(() => null);
    if (!resp.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(resp.status, error.message || `${method} ${path}: HTTP ${resp.status}`, error.details);
    }
    return data;
  }
}

function askForToken(refused) {
  // Every call that met a 401 waits on the same prompt, so the user is asked once.
  if (!tokenPrompt) {
    let resolve;
    tokenPrompt = new Promise((r) => { resolve = r; });
    tokenPrompt.resolve = resolve;
    setText($("#token-note"), refused
      ? "The API refused that token; enter it again."
      : "This FlowForge API needs a token (the value of FLOWFORGE_API_TOKEN).");
    $("#token-dialog").showModal();
    $("#token").focus();
  }
  return tokenPrompt;
}

function setUpTokenDialog() {
  const dialog = $("#token-dialog");
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("#token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("#token").value = "";
    dialog.close();
    const waiting = tokenPrompt;
    tokenPrompt = null;
    if (waiting) waiting.resolve();
  });
  // Nothing on the page works without the token, so Escape must not leave calls waiting forever.
  dialog.addEventListener("cancel", (event) => event.preventDefault());
}

// ---- messages and actions -------------------------------------------------------------------

/** Tell the user what an action did (or why it failed); `parts` are strings or nodes. */
function say(kind, ...parts) {
  const box = $("#message");
  box.className = kind;
  box.replaceChildren(...parts);
}

/** Run a button's action with the button disabled meanwhile; errors go to the message line. */
async function act(button, work) {
  button.disabled = true;
  try {
    await work();
  } catch (err) {
    say("error", err.message);
  } finally {
    button.disabled = false;
    refreshSoon();
  }
}

function button(label, onClick, attrs) {
  const b = el("button", { type: "button", ...attrs }, label);
  b.addEventListener("click", () => act(b, onClick));
  return b;
}

/** Trigger a run of `dag` at once, or, when it declares params, through the params form. */
async function triggerDag(dag) {
  if (Object.keys(dag.params || {}).length) {
    triggerForm.open(dag);
    return;
  }
  await startRun(dag.id, {});
}

async function startRun(dagId, params) {
  const run = await api("/api/v1/runs", { method: "POST", body: { dag_id: dagId, triggered_by: "web", params } });
  // A paused DAG still runs what is triggered by hand; say so, since the flag suggests otherwise.
  const paused = run.dag_paused ? " The DAG is paused: this run goes ahead, scheduled runs do not." : "";
  say("info", `Triggered ${dagId}: run `, el("a", { href: runHref(run.run_id) }, run.run_id), "." + paused);
  return run;
}

/** One line per detail of an API error: which field or param, and what is wrong with it. */
function errorDetails(details) {
  return details.slice(0, 20).map((d) => {
    if (d === null || typeof d !== "object") return String(d);
    const where = d.param ?? d.field ?? (Array.isArray(d.loc) ? d.loc.join(".") : d.loc);
    const what = d.message ?? d.msg ?? JSON.stringify(d);
    return where !== undefined && where !== null ? `${where}: ${what}` : String(what);
  });
}

/**
 * A param's value as the form sends it: a declared param keeps its default's type where the text
 * reads as one (a number stays a number); anything else goes as the text typed, and the API judges.
 */
function paramValue(kind, field) {
  if (kind === "boolean") return field.checked;
  const text = field.value;
  if (kind === "number" && text.trim() !== "" && Number.isFinite(Number(text))) return Number(text);
  return text;
}

/**
 * The trigger form of a DAG with declared params: a field per param, prefilled with its default,
 * and rows for more params. The API checks the values; its refusal is shown in the form, which
 * stays open so the user can correct it.
 */
class TriggerForm {
  build() {
    this.title = el("h2", { id: "trigger-title" });
    this.fields = el("div", { class: "param-fields" });
    this.extra = el("div", { class: "param-extra" });
    this.error = el("div", { class: "form-error", role: "alert", hidden: true });
    this.submit = el("button", { type: "submit", class: "trigger" }, "Trigger run");
    const add = el("button", { type: "button", class: "link add-param" }, "Add a param");
    add.addEventListener("click", () => this.addRow());
    const close = el("button", { type: "button", class: "close" }, "Close");
    close.addEventListener("click", () => this.dialog.close());
    this.form = el("form", { id: "trigger-form" }, this.title,
      el("p", { class: "muted small" }, "Params reach the tasks as FLOWFORGE_PARAM_<NAME>."),
      this.fields, this.extra, add, this.error, el("div", { class: "actions form-buttons" }, this.submit, close));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.dialog = el("dialog", { id: "trigger-dialog", "aria-labelledby": "trigger-title" }, this.form);
    document.body.append(this.dialog);
  }

  open(dag) {
    if (!this.dialog) this.build();
    this.dagId = dag.id;
    setText(this.title, `Trigger ${dag.id}`);
    this.declared = Object.entries(dag.params || {}).map(([name, value]) => {
      const kind = typeof value === "boolean" ? "boolean" : typeof value === "number" ? "number" : "string";
      const field = kind === "boolean"
        ? el("input", { type: "checkbox", name, checked: value })
        : el("input", { type: "text", name, value: value === null || value === undefined ? "" : String(value), autocomplete: "off" });
      return { name, kind, field, row: el("label", { class: "param" }, el("span", { class: "param-name" }, name), field) };
    });
    this.fields.replaceChildren(...this.declared.map((d) => d.row));
    this.extra.replaceChildren();
    this.showError(null);
    this.submit.disabled = false;
    this.dialog.showModal();
    const first = this.declared[0];
    if (first) first.field.focus();
  }

  addRow() {
    const name = el("input", { type: "text", class: "extra-name", placeholder: "name", "aria-label": "Param name", autocomplete: "off" });
    const value = el("input", { type: "text", class: "extra-value", placeholder: "value", "aria-label": "Param value", autocomplete: "off" });
    const remove = el("button", { type: "button", class: "link", "aria-label": "Remove this param" }, "Remove");
    const row = el("div", { class: "param extra" }, name, value, remove);
    remove.addEventListener("click", () => row.remove());
    this.extra.append(row);
    name.focus();
  }

  params() {
    const params = {};
    for (const d of this.declared) params[d.name] = paramValue(d.kind, d.field);
    for (const row of this.extra.children) {
      const name = row.querySelector(".extra-name").value.trim();
      if (name) params[name] = row.querySelector(".extra-value").value;
    }
    return params;
  }

  showError(err) {
    if (!err) {
      this.error.hidden = true;
      this.error.replaceChildren();
      return;
    }
    const lines = errorDetails(err.details || []);
    this.error.replaceChildren(el("p", null, err.message),
      ...(lines.length ? [el("ul", null, ...lines.map((line) => el("li", null, line)))] : []));
    this.error.hidden = false;
  }

  async send() {
    this.submit.disabled = true;
    try {
      await startRun(this.dagId, this.params());
      this.dialog.close();
    } catch (err) {
      this.showError(err);
    } finally {
      this.submit.disabled = false;
      refreshSoon();
    }
  }
}

const triggerForm = new TriggerForm();

async function setActive(dagId, active) {
  if (!active && !window.confirm(`Deactivate ${dagId}? It starts no new runs and leaves the DAG list; its runs and history stay.`)) return;
  await api(`/api/v1/dags/${enc(dagId)}${active ? "/activate" : ""}`, { method: active ? "POST" : "DELETE" });
  say("info", active ? `${dagId} is active again.` : `${dagId} is deactivated: no new runs.`);
}

async function setPaused(dagId, paused) {
  await api(`/api/v1/dags/${enc(dagId)}/${paused ? "pause" : "unpause"}`, { method: "POST" });
  say("info", `${dagId} is ${paused ? "paused: no new scheduled runs" : "unpaused"}.`);
}

/** A dt/dd list kept in step with `pairs` ([label, text]); empty values are left out. */
function renderMeta(dl, pairs) {
  const shown = pairs.filter(([, value]) => value !== null && value !== undefined && value !== "");
  syncChildren(dl, shown, ([label]) => label,
    ([label]) => el("div", null, el("dt", null, label), el("dd")),
    (node, [, value]) => setText(node.lastElementChild, value));
}

function table(className, headings, body) {
  const head = el("tr", null, ...headings.map((h) => el("th", { scope: "col" }, h)));
  return el("div", { class: "table-wrap" }, el("table", { class: className }, el("thead", null, head), body));
}

/** A table cell that, at phone width, shows its column's name before its value. */
function td(label, ...children) {
  return el("td", { "data-label": label }, ...children);
}

/**
 * The parts of a DAG's or a run's view, shown once the API has answered for it. When the API has
 * no such DAG or run, the view shows only that and a way back: no buttons that could only fail,
 * no empty sections.
 */
class Presence {
  constructor(main, title, ...parts) {
    this.title = title;
    this.body = el("div", { class: "view-body", hidden: true }, ...parts);
    this.missing = el("div", { class: "not-found", role: "alert", hidden: true });
    main.append(this.body, this.missing);
    this.isGone = false;
  }

  found() {
    document.title = this.title;
    this.isGone = false;
    this.body.hidden = false;
    this.missing.hidden = true;
  }

  gone(heading, note) {
    document.title = `${heading} · FlowForge`;
    this.isGone = true;
    this.body.hidden = true;
    this.missing.replaceChildren(el("h2", null, heading), el("p", null, note),
      el("p", null, el("a", { href: "#/", class: "back" }, "← Back to the DAG list")));
    this.missing.hidden = false;
  }
}

// ---- the DAG list ---------------------------------------------------------------------------

class DagListView {
  mount(main) {
    document.title = "FlowForge";
    this.parts = new WeakMap();
    this.busyNow = false;
    this.dagRows = el("tbody");
    this.runRows = el("tbody");
    this.empty = el("p", { class: "muted", hidden: true },
      "No DAGs yet. Submit one with: flowforge submit -f my-dag.yaml");
    this.inactive = el("input", { type: "checkbox", id: "show-inactive" });
    this.inactive.addEventListener("change", () => refreshSoon(0));
    main.append(
      el("section", { id: "dag-list" },
        el("div", { class: "title-row" }, el("h2", null, "DAGs"), el("div", { class: "actions" },
          el("label", { class: "small", for: "show-inactive" }, this.inactive, " Show inactive DAGs"))),
        table("cards dags", ["DAG", "Schedule", "Next run", "Status", "Last runs", "Actions"], this.dagRows),
        this.empty),
      el("section", { id: "recent-runs" }, el("h2", null, "Recent runs"),
        table("cards runs", ["Run", "DAG", "State", "Triggered by", "Created", "Duration"], this.runRows)));
  }

  busy() {
    return this.busyNow;
  }

  async refresh() {
    const listed = this.inactive.checked ? "/api/v1/dags?include_inactive=true" : "/api/v1/dags";
    const [dags, runs] = await Promise.all([api(listed), api(`/api/v1/runs?limit=${RECENT_RUNS}`)]);
    const lastRuns = await this.lastRuns(dags.dags, runs.runs);
    this.busyNow = runs.runs.some((r) => !RUN_TERMINAL.has(r.state));
    this.empty.hidden = dags.dags.length > 0;
    const items = dags.dags.map((dag) => ({ dag, runs: lastRuns.get(dag.id) || [] }));
    syncChildren(this.dagRows, items, (item) => item.dag.id, (item) => this.dagRow(item), (row, item) => this.fillDagRow(row, item));
    syncChildren(this.runRows, runs.runs.slice(0, 15), (r) => r.run_id, (r) => runRow(r), fillRunRow);
  }

  /**
   * Each DAG's last runs. That is one call per DAG, so they are read again only when the newest
   * runs overall changed (a run started or changed state) or every RELIST_MS as a safety net.
   */
  async lastRuns(dags, newest) {
    const signature = JSON.stringify([dags.map((d) => d.id), newest.map((r) => [r.run_id, r.state])]);
    if (signature === this.signature && Date.now() - this.listedAt < RELIST_MS) return this.cached;
    const lists = await Promise.all(dags.map((d) => api(`/api/v1/runs?dag_id=${enc(d.id)}&limit=${LAST_RUNS}`)));
    this.cached = new Map(dags.map((d, i) => [d.id, lists[i].runs]));
    this.signature = signature;
    this.listedAt = Date.now();
    return this.cached;
  }

  dagRow({ dag }) {
    const id = dag.id;
    const p = {
      name: el("div", { class: "muted small" }),
      description: el("div", { class: "muted small description" }),
      schedule: td("Schedule"), next: td("Next run"), status: el("span", { class: "flag" }),
      squares: el("div", { class: "squares" }),
      pause: el("button", { type: "button", class: "pause" }),
      active: el("button", { type: "button", class: "activate" }),
      dag,
    };
    p.trigger = button("Trigger", () => triggerDag(p.dag), { class: "trigger" });
    p.pause.addEventListener("click", () => act(p.pause, () => setPaused(id, p.pause.dataset.paused !== "true")));
    p.active.addEventListener("click", () => act(p.active, () => setActive(id, !p.dag.active)));
    const row = el("tr", { "data-dag": id },
      td("DAG", el("div", null, el("a", { href: dagHref(id), class: "dag-id" }, id), p.name, p.description)),
      p.schedule, p.next, td("Status", p.status), td("Last runs", p.squares),
      td("Actions", el("div", { class: "actions" }, p.trigger, p.pause, p.active)));
    this.parts.set(row, p);
    return row;
  }

  fillDagRow(row, { dag, runs }) {
    const p = this.parts.get(row);
    p.dag = dag;
    setText(p.name, dag.name !== dag.id ? dag.name : "");
    p.name.hidden = dag.name === dag.id;
    setText(p.description, dag.description ? clip(dag.description, 120) : "");
    p.description.hidden = !dag.description;
    setAttr(p.description, "title", dag.description || null);
    setText(p.schedule, dag.schedule || "manual");
    setText(p.next, dag.next_run ? fmtTime(dag.next_run) : "—");
    setText(p.status, dagStatus(dag));
    p.status.classList.toggle("paused", dag.active && dag.paused);
    p.status.classList.toggle("inactive", !dag.active);
    p.pause.dataset.paused = String(dag.paused);
    setText(p.pause, dag.paused ? "Unpause" : "Pause");
    // An inactive DAG can only be activated: triggering or pausing it could only fail.
    p.trigger.hidden = !dag.active;
    p.pause.hidden = !dag.active;
    setText(p.active, dag.active ? "Deactivate" : "Activate");
    p.active.classList.toggle("danger", dag.active);
    // Oldest on the left, as in the grid view, so the newest run is always at the right end.
    syncChildren(p.squares, [...runs].reverse(), (r) => r.run_id, (r) => stateSquare(runHref(r.run_id)),
      (node, r) => updateSquare(node, r.state, `run ${r.run_id} of ${fmtTime(r.created_at)}`));
    if (!runs.length) setText(p.squares, "");
  }
}

function dagStatus(dag) {
  if (!dag.active) return "inactive";
  return dag.paused ? "paused" : "active";
}

function runRow(run) {
  return el("tr", { "data-run": run.run_id },
    td("Run", el("a", { href: runHref(run.run_id) }, run.run_id)),
    td("DAG", el("a", { href: dagHref(run.dag_id) }, run.dag_id)),
    td("State", stateBadge(run.state)), td("Triggered by"), td("Created"), td("Duration"));
}

function fillRunRow(row, run) {
  const cells = row.children;
  updateBadge(cells[2].firstElementChild, run.state);
  setText(cells[3], run.triggered_by);
  setText(cells[4], fmtTime(run.created_at));
  setText(cells[5], fmtDuration(run.started_at, run.ended_at));
}

// ---- one DAG: graph, grid of recent runs, source --------------------------------------------

/** Record how long a drawing took, as a User Timing entry (the browser tests read it). */
function measure(name, start) {
  performance.clearMeasures(name); // only the latest: a page left open for days must not pile them up
  performance.measure(name, { start, end: performance.now() });
}

class DagView {
  constructor(dagId) {
    this.dagId = dagId;
    this.tasksOf = new Map(); // run id → {state, tasks}: a finished run's tasks are read once
    this.busyNow = false;
    this.stats = null; // the API's DagStats; null before the first answer or from an API without it
    this.statsKey = "";
    this.statsAt = 0;
    this.durationsKey = "";
  }

  mount(main) {
    document.title = `${this.dagId} · FlowForge`;
    this.title = el("h2");
    this.description = el("p", { class: "description" });
    this.meta = el("dl", { class: "meta" });
    this.pause = el("button", { type: "button", class: "pause" });
    this.pause.addEventListener("click", () => act(this.pause, () => setPaused(this.dagId, this.pause.dataset.paused !== "true")));
    this.active = el("button", { type: "button", class: "activate", hidden: true });
    this.active.addEventListener("click", () => act(this.active, () => setActive(this.dagId, !this.dag.active)));
    this.trigger = button("Trigger", () => triggerDag(this.dag), { class: "trigger", hidden: true });
    this.graphNote = el("p", { class: "muted small" });
    this.graphBox = el("div", { class: "graph-box" });
    this.gridBox = el("div", { class: "grid-box" });
    this.durationsBox = el("div", { class: "durations-box" });
    this.durationsMeta = el("dl", { class: "meta durations-meta" });
    this.durations = el("section", { id: "dag-durations", hidden: true }, el("h3", null, "Run durations"),
      el("div", { class: "durations-row" }, this.durationsBox, this.durationsMeta));
    this.source = el("pre", { class: "source" });
    this.presence = new Presence(main, document.title,
      el("nav", { class: "crumbs" }, el("a", { href: "#/" }, "DAGs"), " / ", this.dagId),
      el("div", { class: "title-row" }, this.title,
        el("div", { class: "actions" }, this.trigger, this.pause, this.active)),
      this.description, this.meta,
      el("section", { id: "dag-graph" }, el("h3", null, "Graph"), this.graphNote, this.graphBox, stateLegend()),
      this.durations,
      el("section", { id: "dag-grid" }, el("h3", null, `Recent runs × tasks`), this.gridBox),
      el("section", { id: "dag-source" }, el("details", { open: true }, el("summary", null, "YAML source"), this.source)));
    this.graph = new GraphView(this.graphBox);
    this.grid = new RunGrid(this.gridBox, { runHref, cellHref: taskHref });
  }

  busy() {
    return this.busyNow;
  }

  cares(change) {
    return change.dag_id === this.dagId;
  }

  async refresh() {
    let dag, runs;
    try {
      [dag, { runs }] = await Promise.all([
        api(`/api/v1/dags/${enc(this.dagId)}`),
        api(`/api/v1/runs?dag_id=${enc(this.dagId)}&limit=${GRID_RUNS}`),
      ]);
    } catch (err) {
      if (err.status !== 404) throw err;
      this.presence.gone(`No DAG ${this.dagId}`, "The API knows no DAG by this id: check the address, or pick one from the list.");
      return;
    }
    this.presence.found();
    const stale = runs.filter((r) => {
      const known = this.tasksOf.get(r.run_id);
      return !known || known.state !== r.state || !RUN_TERMINAL.has(r.state);
    });
    await Promise.all([this.readStats(runs), ...stale.map(async (r) => {
      const { tasks } = await api(`/api/v1/runs/${enc(r.run_id)}/tasks`);
      this.tasksOf.set(r.run_id, { state: r.state, tasks: new Map(tasks.map((t) => [t.task_id, t])) });
    })]);
    const shown = new Set(runs.map((r) => r.run_id));
    for (const id of this.tasksOf.keys()) if (!shown.has(id)) this.tasksOf.delete(id);
    this.busyNow = runs.some((r) => !RUN_TERMINAL.has(r.state));
    this.render(dag, runs);
  }

  /**
   * The DAG's durations: read again when a run of the DAG changed state (one ended, most likely)
   * or every RELIST_MS, not at every refresh.
   */
  async readStats(runs) {
    const key = JSON.stringify(runs.map((r) => [r.run_id, r.state]));
    if (key === this.statsKey && Date.now() - this.statsAt < RELIST_MS) return;
    this.stats = await api(`/api/v1/dags/${enc(this.dagId)}/stats?runs=${STATS_RUNS}`).catch((err) => {
      if (err.status === 404) return null; // the DAG just went, or an API without durations
      throw err;
    });
    this.statsKey = key;
    this.statsAt = Date.now();
  }

  /** The bar chart of the last ended runs' durations, and their p50, p95 and success rate beside it. */
  renderDurations() {
    const stats = this.stats;
    this.durations.hidden = !stats;
    if (!stats) return;
    const key = JSON.stringify(stats);
    if (key !== this.durationsKey) {
      this.durationsKey = key; // redrawn only on a change, so an open hover title stays
      drawDurations(this.durationsBox, stats, { href: runHref });
    }
    const rate = stats.success_rate === null ? "" : `${Math.round(stats.success_rate * 100)}% of ${stats.count}`;
    renderMeta(this.durationsMeta, [
      ["p50", stats.p50_secs === null ? "" : fmtSecs(stats.p50_secs)],
      ["p95", stats.p95_secs === null ? "" : fmtSecs(stats.p95_secs)],
      ["Succeeded", rate],
    ]);
    setAttr(this.durationsMeta, "title", "p50 and p95: of the successful runs among the last ended ones");
  }

  render(dag, runs) {
    this.dag = dag;
    this.trigger.hidden = !dag.active;
    this.pause.hidden = !dag.active;
    this.active.hidden = false;
    setText(this.active, dag.active ? "Deactivate" : "Activate");
    this.active.classList.toggle("danger", dag.active);
    setText(this.title, dag.name || dag.id);
    setText(this.description, dag.description || "");
    this.description.hidden = !dag.description;
    this.pause.dataset.paused = String(dag.paused);
    setText(this.pause, dag.paused ? "Unpause" : "Pause");
    renderMeta(this.meta, [
      ["Id", dag.id], ["Version", dag.version], ["Status", dagStatus(dag)],
      ["Schedule", dag.schedule ? `${dag.schedule} (${dag.timezone})` : "manual"],
      ["Next run", dag.next_run ? fmtTime(dag.next_run) : ""], ["Tasks", dag.task_count],
      ["Max active runs", dag.max_active_runs], ["Tags", (dag.tags || []).join(", ")],
    ]);

    let started = performance.now();
    if (this.graph.setDag(dag.tasks)) measure("flowforge:graph", started);
    const latest = runs[0];
    const latestTasks = latest ? this.tasksOf.get(latest.run_id).tasks : new Map();
    this.graph.setStates(new Map([...latestTasks].map(([id, t]) => [id, t.state])));
    setText(this.graphNote, latest
      ? `Coloured by the latest run, ${latest.run_id} (${latest.state}).`
      : "No runs yet: trigger one to see its states here.");

    // Rows in the graph's order (by depth), then any task only older versions of the DAG had.
    const rows = layoutOrder(dag.tasks);
    const known = new Set(rows);
    for (const r of runs) for (const id of this.tasksOf.get(r.run_id).tasks.keys()) {
      if (!known.has(id)) { known.add(id); rows.push(id); }
    }
    started = performance.now();
    const built = this.grid.render([...runs].reverse().map((run) => ({ run, tasks: this.tasksOf.get(run.run_id).tasks })), rows);
    measure(built ? "flowforge:grid" : "flowforge:grid-update", started);
    this.renderDurations();
    setText(this.source, dag.source || "");
  }
}

// ---- one run: graph, task panel with attempts and log, Gantt --------------------------------

class RunView {
  constructor(runId) {
    this.runId = runId;
    this.task = null;
    this.dag = null;
    this.run = null;
    this.logAttempt = null; // null: follow the latest attempt
    this.log = { attempt: null, cursor: 0, done: false };
    this.ganttKey = "";
    this.attemptsOf = new Map(); // task id → {attempt, attempts}: earlier attempts, for the Gantt chart
    this.dagAt = 0;
  }

  mount(main) {
    document.title = `Run ${this.runId} · FlowForge`;
    this.title = el("h2", null, `Run ${this.runId}`);
    this.state = el("span", { class: "badge", id: "run-state" }, "…"); // until the run is read
    this.dagLink = el("a");
    this.meta = el("dl", { class: "meta" });
    this.cancel = button("Cancel run", () => this.cancelRun(), { class: "cancel danger" });
    this.retryFailed = button("Retry failed tasks", () => this.retryRun(), { class: "retry-failed", hidden: true });
    this.graphNote = el("p", { class: "muted small" });
    this.graphBox = el("div", { class: "graph-box" });
    this.slowList = el("ul", { class: "slow-list", "aria-label": "Tasks running far longer than usual" });
    this.ganttBox = el("div", { class: "gantt-box" });
    this.panel = this.taskPanel();
    this.presence = new Presence(main, document.title,
      el("nav", { class: "crumbs" }, el("a", { href: "#/" }, "DAGs"), " / ", this.dagLink, " / run"),
      el("div", { class: "title-row" }, this.title, this.state, el("div", { class: "actions" }, this.retryFailed, this.cancel)),
      this.meta,
      el("section", { id: "run-graph" }, el("h3", null, "Graph"), this.graphNote, this.slowList, this.graphBox, stateLegend()),
      this.panel.section,
      el("section", { id: "run-gantt" }, el("h3", null, "Gantt"), this.ganttBox));
    this.graph = new GraphView(this.graphBox, { href: (task) => taskHref(this.runId, task) });
    // The Gantt chart is as wide as its box: redraw it when the window changes size.
    this.onResize = () => { this.ganttKey = ""; refreshSoon(); };
    window.addEventListener("resize", this.onResize);
  }

  unmount() {
    window.removeEventListener("resize", this.onResize);
  }

  taskPanel() {
    const p = {
      heading: el("h3", null, "Task"),
      hint: el("p", { class: "muted" }, "Select a task in the graph or the Gantt chart to see its attempts and log."),
      body: el("div", { hidden: true }),
      state: el("span", { class: "badge", id: "task-state" }, "…"),
      slow: el("span", { class: "badge slow-badge", id: "task-slow", hidden: true }),
      meta: el("dl", { class: "meta" }),
      command: el("pre", { class: "command" }),
      attempts: el("tbody"),
      downstream: el("input", { type: "checkbox", id: "retry-downstream" }),
      logNote: el("p", { class: "muted small log-note" }),
      why: el("section", { class: "explain", hidden: true }),
      whySummary: el("p", { class: "explain-summary" }),
      whyReasons: el("ul", { class: "explain-reasons" }),
      outputs: el("section", { class: "outputs", hidden: true }),
      outputsTitle: el("h4"),
      outputsList: el("tbody"),
      log: el("pre", { class: "log", tabindex: 0, "aria-label": "Task log" }),
    };
    p.retry = button("Retry task", () => this.retryTask(), { class: "retry" });
    p.latest = button("Follow latest attempt", async () => { this.logAttempt = null; }, { class: "link", hidden: true });
    p.body.append(
      el("div", { class: "title-row" }, p.state, p.slow, el("div", { class: "actions" }, p.retry,
        el("label", { class: "small", for: "retry-downstream" }, p.downstream, " and its downstream tasks"))),
      p.meta, p.command, p.why, p.outputs,
      el("h4", null, "Attempts"),
      table("cards attempts", ["#", "State", "Worker", "Queued", "Started", "Ended", "Duration", "Exit", "Error", "Log"], p.attempts),
      el("div", { class: "log-head" }, el("h4", null, "Log"), p.logNote, p.latest), p.log);
    p.why.append(el("h4", null, "Why this state"), p.whySummary, p.whyReasons);
    p.outputs.append(p.outputsTitle, el("div", { class: "table-wrap" }, el("table", { class: "outputs-list" }, p.outputsList)));
    p.section = el("section", { id: "task-panel" }, p.heading, p.hint, p.body);
    return p;
  }

  /** Called by the router with the task in the address (or null). */
  show(taskId) {
    if (taskId === this.task) return;
    this.task = taskId;
    this.logAttempt = null;
    this.resetLog(null);
    // Nothing of the previous task may linger while the new one is read.
    const p = this.panel;
    p.state.className = "badge";
    setText(p.state, "…");
    p.slow.hidden = true;
    p.meta.replaceChildren();
    p.attempts.replaceChildren();
    p.why.hidden = true;
    p.outputs.hidden = true;
    setText(p.command, "");
    setText(p.logNote, "");
    this.ganttKey = "";
    this.graph.select(taskId);
    setText(this.panel.heading, taskId ? `Task ${taskId}` : "Task");
    this.panel.hint.hidden = Boolean(taskId);
    this.panel.body.hidden = !taskId;
    if (taskId) this.panel.section.scrollIntoView({ block: "nearest" });
  }

  resetLog(attempt) {
    this.log = { attempt, cursor: 0, done: false };
    this.panel.log.replaceChildren();
  }

  busy() {
    if (this.presence.isGone) return false;
    return (this.run && !RUN_TERMINAL.has(this.run.state)) || (this.task !== null && !this.log.done);
  }

  cares(change) {
    return change.run_id === this.runId;
  }

  async cancelRun() {
    if (!window.confirm(`Cancel run ${this.runId}? Its running tasks are killed.`)) return;
    const run = await api(`/api/v1/runs/${enc(this.runId)}/cancel`, { method: "POST" });
    say("info", `Run ${this.runId} is ${run.state}.`);
  }

  async retryRun() {
    const run = await api(`/api/v1/runs/${enc(this.runId)}/retry`, { method: "POST" });
    const cleared = run.cleared || [];
    say("info", `Run ${this.runId}: ${cleared.length} task${cleared.length === 1 ? "" : "s"} will run again (${cleared.join(", ")}).`);
  }

  async retryTask() {
    const downstream = this.panel.downstream.checked;
    await api(`/api/v1/runs/${enc(this.runId)}/tasks/${enc(this.task)}/retry`, { method: "POST", body: { downstream } });
    this.logAttempt = null;
    say("info", `Task ${this.task} will run again${downstream ? ", and its downstream tasks after it" : ""}.`);
  }

  async refresh() {
    let run;
    try {
      run = await api(`/api/v1/runs/${enc(this.runId)}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      this.presence.gone(`No run ${this.runId}`, "The API knows no run by this id: check the address, or find the run on its DAG's page.");
      return;
    }
    const dagOld = Date.now() - this.dagAt > RELIST_MS; // its latest version may have moved on
    if (!this.dag || this.dag.id !== run.dag_id || this.dag.version < run.dag_version || dagOld) {
      this.dagAt = Date.now();
      // The arrows come from the DAG's spec; a deleted DAG still leaves its run worth showing.
      this.dag = await api(`/api/v1/dags/${enc(run.dag_id)}`).catch((err) => {
        if (err.status === 404) return { id: run.dag_id, version: run.dag_version, tasks: [], gone: true };
        throw err;
      });
    }
    this.run = run;
    await this.readAttempts(run);
    this.presence.found();
    this.render(run);
    if (this.task) await this.refreshTask();
  }

  /**
   * The earlier attempts of every task past its first, for the Gantt chart. The run's answer has
   * only each task's latest attempt; earlier ones never change, so a task is read again only when
   * it starts another attempt.
   */
  async readAttempts(run) {
    const retried = run.tasks.filter((t) => t.attempt > 1);
    const stale = retried.filter((t) => (this.attemptsOf.get(t.task_id) || {}).attempt !== t.attempt);
    await Promise.all(stale.map(async (t) => {
      const detail = await api(`/api/v1/runs/${enc(this.runId)}/tasks/${enc(t.task_id)}`).catch((err) => {
        if (err.status === 404) return null;
        throw err;
      });
      if (detail) this.attemptsOf.set(t.task_id, { attempt: t.attempt, attempts: detail.attempts || [] });
    }));
    const kept = new Set(retried.map((t) => t.task_id));
    for (const id of this.attemptsOf.keys()) if (!kept.has(id)) this.attemptsOf.delete(id);
  }

  render(run) {
    updateBadge(this.state, run.state);
    setText(this.dagLink, run.dag_id);
    setAttr(this.dagLink, "href", dagHref(run.dag_id));
    this.cancel.hidden = RUN_TERMINAL.has(run.state);
    this.retryFailed.hidden = !run.tasks.some((t) => RETRYABLE.has(t.state));
    const params = Object.entries(run.params || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    renderMeta(this.meta, [
      ["DAG version", versionNote(run, this.dag)], ["Logical date", run.logical_date ? fmtTime(run.logical_date) : ""], ["Triggered by", run.triggered_by], ["Created", fmtTime(run.created_at)],
      ["Started", fmtTime(run.started_at)], ["Ended", fmtTime(run.ended_at)],
      ["Duration", fmtDuration(run.started_at, run.ended_at)], ["Params", params], ["Waiting", run.waiting],
    ]);

    const specs = new Map(this.dag.tasks.map((t) => [t.id, t]));
    this.graph.setDag(run.tasks.map((ti) => {
      const spec = specs.get(ti.task_id) || {};
      return { id: ti.task_id, depends_on: spec.depends_on || [], name: spec.name, command: spec.command };
    }));
    const slow = slowTasks(run);
    this.graph.setStates(new Map(run.tasks.map((t) => [t.task_id, t.state])),
      new Map(run.tasks.filter((t) => t.attempt > 1 || slow.has(t.task_id)).map((t) => [t.task_id,
        [t.attempt > 1 ? `try ${t.attempt}` : "", slow.has(t.task_id) ? "slow" : ""].filter(Boolean).join(" · ")])),
      slow);
    syncChildren(this.slowList, [...slow], ([id]) => id,
      ([id]) => el("li", { "data-task": id }, el("a", { href: taskHref(this.runId, id) }, id), " ",
        el("span", { class: "badge slow-badge" })),
      (node, [, message]) => setText(node.lastElementChild, message));
    this.graph.select(this.task);
    setText(this.graphNote, this.dag.version !== run.dag_version
      ? `Arrows drawn from version ${this.dag.version} of the DAG; this run uses version ${run.dag_version}.`
      : "");

    // Redraw the Gantt chart when something in it changed, or every time while bars still grow.
    const key = JSON.stringify(run.tasks.map((t) => [t.state, t.attempt, t.queued_at, t.started_at, t.ended_at])) + this.task;
    if (key !== this.ganttKey || run.tasks.some((t) => t.state === "running" || t.state === "queued")) {
      this.ganttKey = key;
      const attempts = new Map([...this.attemptsOf].map(([id, a]) => [id, a.attempts]));
      drawGantt(this.ganttBox, run.tasks, { href: (task) => taskHref(this.runId, task), now: Date.now() / 1000, selected: this.task, attempts });
    }
  }

  async refreshTask() {
    const task = this.task;
    let ti, why;
    try {
      const base = `/api/v1/runs/${enc(this.runId)}/tasks/${enc(task)}`;
      // The explanation is a help, not the task: a failure to read it leaves its section out.
      [ti, why] = await Promise.all([api(base), api(base + "/explain").catch(() => null)]);
    } catch (err) {
      if (err.status !== 404) throw err;
      setText(this.panel.heading, `No task ${task} in this run`);
      this.panel.body.hidden = true;
      return;
    }
    if (task !== this.task) return; // the user picked another task meanwhile
    this.renderTask(ti);
    this.renderWhy(why);
    await this.followLog(ti);
  }

  renderTask(ti) {
    const p = this.panel;
    updateBadge(p.state, ti.state);
    // The run's detail carries the slow note: it speaks of the running attempt only.
    const slow = ti.state === "running" ? slowTasks(this.run).get(ti.task_id) : null;
    setText(p.slow, slow || "");
    p.slow.hidden = !slow;
    p.retry.disabled = !TASK_TERMINAL.has(ti.state);
    const spec = ti.spec || {};
    renderMeta(p.meta, [
      ["Name", spec.name && spec.name !== ti.task_id ? spec.name : ""], ["Attempt", ti.attempt],
      ["Retries allowed", spec.retries], ["Trigger rule", spec.trigger_rule],
      ["Timeout", spec.timeout_secs ? `${spec.timeout_secs}s` : ""], ["Depends on", (spec.depends_on || []).join(", ")],
      ["Next try at", ti.state === "up_for_retry" ? fmtTime(ti.retry_at) : ""],
    ]);
    setText(p.command, spec.command ? `$ ${spec.command}` : "");
    p.command.hidden = !spec.command;
    const shown = this.logAttempt ?? ti.attempt;
    syncChildren(p.attempts, [...ti.attempts].reverse(), (a) => a.attempt, (a) => this.attemptRow(a), (row, a) => {
      const c = row.children;
      updateBadge(c[1].firstElementChild, a.state);
      setText(c[2], a.worker_id || "");
      setText(c[3], fmtTime(a.queued_at));
      setText(c[4], fmtTime(a.started_at));
      setText(c[5], fmtTime(a.ended_at));
      setText(c[6], fmtDuration(a.started_at, a.ended_at));
      setText(c[7], a.exit_code ?? "");
      setText(c[8], a.error || "");
      row.classList.toggle("selected", a.attempt === shown);
    });
    p.latest.hidden = this.logAttempt === null;
    this.renderOutputs(ti.attempts.find((a) => a.attempt === shown));
  }

  /** Why the task is in its state: the API's summary and each reason, as text. */
  renderWhy(why) {
    const p = this.panel;
    p.why.hidden = !why;
    if (!why) return;
    setText(p.whySummary, why.summary);
    const reasons = Array.isArray(why.reasons) ? why.reasons : [];
    syncChildren(p.whyReasons, reasons, (r) => `${r.code}\n${r.message}`,
      () => el("li", null, el("span", { class: "reason-message" }), " ", el("code", { class: "muted small reason-code" })),
      (node, r) => {
        setText(node.firstElementChild, r.message);
        setText(node.lastElementChild, r.code);
      });
  }

  /** The outputs the attempt shown recorded (`outputs: {key: value}`), when it has any. */
  renderOutputs(attempt) {
    const p = this.panel;
    const outputs = attempt && attempt.outputs && typeof attempt.outputs === "object" ? attempt.outputs : {};
    const pairs = Object.entries(outputs).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]);
    p.outputs.hidden = pairs.length === 0;
    if (!pairs.length) return;
    setText(p.outputsTitle, `Outputs of attempt ${attempt.attempt}`);
    syncChildren(p.outputsList, pairs, ([k]) => k, () => el("tr", null, el("th", { scope: "row" }), el("td")),
      (row, [k, v]) => {
        setText(row.firstElementChild, k);
        setText(row.lastElementChild, v);
      });
  }

  attemptRow(a) {
    const show = el("button", { type: "button", class: "link" }, "Show");
    show.addEventListener("click", () => {
      this.logAttempt = a.attempt;
      refreshSoon();
    });
    return el("tr", { "data-attempt": a.attempt },
      td("#", String(a.attempt)), td("State", stateBadge(a.state)), td("Worker"), td("Queued"), td("Started"),
      td("Ended"), td("Duration"), td("Exit"), td("Error"), td("Log", show));
  }

  /** Append what the attempt's log gained since the last look, using the API's cursor. */
  async followLog(ti) {
    const p = this.panel;
    const attempt = this.logAttempt ?? ti.attempt;
    if (attempt !== this.log.attempt) this.resetLog(attempt);
    if (attempt === 0) {
      this.log.done = TASK_TERMINAL.has(ti.state);
      setText(p.logNote, "No attempt yet: the log starts with the first one.");
      return;
    }
    // Read on from the cursor; a long log comes in pages (`more`), a few of them per refresh.
    for (let page = 0; page < LOG_PAGES_PER_REFRESH && !this.log.done; page++) {
      const chunk = await api(`/api/v1/runs/${enc(this.runId)}/tasks/${enc(this.task)}/logs`
        + `?attempt=${attempt}&after=${this.log.cursor}`);
      if (this.log.attempt !== attempt || chunk.task_id !== this.task) return;
      if (chunk.text) {
        const pinned = p.log.scrollHeight - p.log.scrollTop - p.log.clientHeight < 40;
        p.log.append(document.createTextNode(chunk.text));
        if (pinned) p.log.scrollTop = p.log.scrollHeight; // keep following unless the user scrolled up
      }
      this.log.cursor = chunk.cursor;
      this.log.done = chunk.done;
      if (!chunk.more) break;
    }
    const empty = p.log.textContent === "" ? " (empty so far)" : "";
    setText(p.logNote, this.log.done
      ? `Attempt ${attempt}${p.log.textContent === "" ? ": no output" : ""}.`
      : `Attempt ${attempt}, following live${empty}…`);
  }
}

/** Task id → the API's note on each running task that runs far longer than usual. */
function slowTasks(run) {
  const tasks = run ? run.tasks : [];
  return new Map(tasks.filter((t) => t.state === "running" && t.slow && t.slow.message).map((t) => [t.task_id, String(t.slow.message)]));
}

// Task states a run's "retry failed tasks" runs again (as the API's retry of a run does).
const RETRYABLE = new Set(["failed", "upstream_failed", "cancelled"]);

/** The run's DAG version, and whether it is the DAG's latest. */
function versionNote(run, dag) {
  if (!dag || dag.gone) return `${run.dag_version} (the DAG is no longer stored)`;
  if (dag.version === run.dag_version) return `${run.dag_version} (latest)`;
  return `${run.dag_version} (not the latest: the DAG is at version ${dag.version})`;
}

// ---- status bar, live updates, routing ------------------------------------------------------

async function refreshStatus() {
  const s = await api("/api/v1/status");
  const w = s.workers || {};
  setText($("#st-workers"), `${w.alive ?? 0} alive${w.stale ? `, ${w.stale} stale` : ""} · ${w.slots ?? 0} slots`);
  setText($("#st-queue"), s.queue_depth ?? 0);
  setText($("#st-running"), (s.tasks || {}).running ?? 0);
}

const live = { events: null, eventsOpen: false, timer: null, soon: null, running: false, again: false, error: null };
let current = null;

function showLive() {
  const node = $("#st-live");
  if (live.error) {
    setText(node, `error: ${live.error}`);
  } else {
    setText(node, live.eventsOpen ? "live (events)" : `live (polling every ${FAST_MS / 1000} s)`);
  }
  node.classList.toggle("error", Boolean(live.error));
}

function pollDelay() {
  if (document.hidden) return CALM_MS;
  if (!live.eventsOpen) return FAST_MS;
  return current && current.busy() ? FAST_MS : CALM_MS;
}

/** Re-read what the status bar and the visible view show; one refresh at a time. */
async function refresh() {
  clearTimeout(live.timer);
  if (live.running) {
    live.again = true;
    return;
  }
  live.running = true;
  try {
    do {
      live.again = false;
      try {
        await Promise.all([refreshStatus(), current ? current.refresh() : null]);
        live.error = null;
      } catch (err) {
        live.error = err.message;
      }
    } while (live.again);
  } finally {
    live.running = false;
    showLive();
    live.timer = setTimeout(refresh, pollDelay());
  }
}

/** Refresh shortly; calls meanwhile join the one already planned, so bursts cost one refresh. */
function refreshSoon(delay = 50) {
  if (live.soon) return;
  live.soon = setTimeout(() => {
    live.soon = null;
    refresh();
  }, delay);
}

function onEvent(message) {
  let change = null;
  try {
    change = JSON.parse(message.data);
  } catch {
    // Not JSON: still a sign that something changed.
  }
  // A change elsewhere (another DAG's run) leaves the visible view as it is; the status bar
  // catches up at the next calm poll.
  if (change && current && current.cares && !current.cares(change)) return;
  refreshSoon(EVENT_REFRESH_MS);
}

function connectEvents() {
  // EventSource cannot send an Authorization header: with a token the page polls instead.
  if (!window.EventSource || sessionStorage.getItem(TOKEN_KEY)) return;
  const source = new EventSource("/api/v1/events");
  live.events = source;
  source.addEventListener("open", () => {
    live.eventsOpen = true;
    showLive();
  });
  source.addEventListener("error", () => {
    live.eventsOpen = false;
    showLive();
    // CLOSED: the server has no stream (an older FlowForge) or refused it; try again later.
    // Otherwise the browser reconnects by itself, and polling covers the gap meanwhile.
    if (source.readyState === EventSource.CLOSED) {
      live.events = null;
      setTimeout(connectEvents, EVENTS_RETRY_MS);
    }
    refreshSoon();
  });
  // An event only says that something changed; the JSON API stays the one source of what to show.
  source.addEventListener("message", onEvent);
  for (const kind of EVENT_KINDS) source.addEventListener(kind, onEvent);
}

function parseRoute(hash) {
  let parts;
  try {
    parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = [];
  }
  if (parts[0] === "dags" && parts[1]) return { key: "dag\n" + parts[1], make: () => new DagView(parts[1]) };
  if (parts[0] === "runs" && parts[1]) {
    return { key: "run\n" + parts[1], make: () => new RunView(parts[1]), arg: parts[2] || null };
  }
  return { key: "list", make: () => new DagListView() };
}

function route() {
  const target = parseRoute(location.hash);
  if (!current || current.key !== target.key) {
    if (current && current.unmount) current.unmount();
    current = target.make();
    current.key = target.key;
    const main = $("#view");
    main.replaceChildren();
    current.mount(main);
    say("info");
    window.scrollTo(0, 0);
  }
  if (current.show) current.show(target.arg);
  refreshSoon();
}

document.addEventListener("DOMContentLoaded", () => {
  setUpTokenDialog();
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshSoon(); });
  route();
  connectEvents();
});
