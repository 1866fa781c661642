// FlowForge page stub: lists DAGs and recent runs from the JSON API.
// Every value goes in through textContent, never innerHTML, so names and ids cannot inject markup.
"use strict";

const TOKEN_KEY = "flowforge.token";
const REFRESH_MS = 5000;

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

async function getJSON(path) {
  const resp = await fetch(path, { headers: headers() });
  if (resp.status === 401) {
    document.getElementById("token-form").hidden = false;
    throw new Error("this FlowForge API needs a token");
  }
  const body = await resp.json();
  if (!resp.ok) {
    throw new Error((body.error && body.error.message) || ("HTTP " + resp.status));
  }
  return body;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
}

function fmtTime(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "";
}

function fmtDuration(start, end) {
  if (!start) return "";
  const secs = (end || Date.now() / 1000) - start;
  return secs < 60 ? secs.toFixed(1) + "s" : Math.floor(secs / 60) + "m" + Math.round(secs % 60) + "s";
}

function fill(tableId, items, render) {
  const tbody = document.querySelector("#" + tableId + " tbody");
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    render(tr, item);
    return tr;
  });
  tbody.replaceChildren(...rows);
}

async function refresh() {
  const message = document.getElementById("message");
  try {
    const [dags, runs] = await Promise.all([getJSON("/api/v1/dags"), getJSON("/api/v1/runs?limit=25")]);
    fill("dags", dags.dags, (tr, d) => {
      cell(tr, d.id);
      cell(tr, d.name);
      cell(tr, d.version);
      cell(tr, d.schedule || "");
      cell(tr, d.next_run ? new Date(d.next_run).toLocaleString() : "");
      cell(tr, d.paused ? "yes" : "no");
      cell(tr, d.task_count);
    });
    fill("runs", runs.runs, (tr, r) => {
      cell(tr, r.run_id);
      cell(tr, r.dag_id + " v" + r.dag_version);
      cell(tr, r.state, "state state-" + r.state);
      cell(tr, r.triggered_by);
      cell(tr, fmtTime(r.created_at));
      cell(tr, fmtDuration(r.started_at, r.ended_at));
    });
    message.textContent = "";
  } catch (err) {
    message.textContent = err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
    document.getElementById("token-form").hidden = true;
    refresh();
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
});
