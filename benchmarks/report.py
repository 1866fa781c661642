"""The results as a Rich table on the terminal, as JSON, and as a Markdown table for the README."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.meta import busy

# The goals of the suite, as ratios to make -j2 (figures to read, never assertions).
GOALS = {"up": {"W1": 3.0, "W2": 4.0, "W3": 3.0}, "distributed": {"W1": 6.0, "W2": 6.0, "W3": 6.0}}
LOAD_GOAL_SECS = 0.5
IDLE_RSS_GOAL_MIB = 120.0
SCALE_P99_GOAL_MS = 50.0
# A hand-off must never wait for the scheduler's 1 s safety-net tick: the finished task wakes it.
HANDOFF_P95_GOAL_MS = 250.0
DEPLOYMENTS = (("up", "up"), ("distributed", "distributed"))


def _f(value: float | None, fmt: str = ".3f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{fmt}}{suffix}"


def _goal(ok: bool | None, section: dict[str, Any] | None = None) -> str:
    """✓ met, ✗ missed; "machine busy" instead when the section started on a busy machine."""
    if ok is None:
        return ""
    if section is not None and busy(section.get("meta", {})):
        return " (machine busy)"
    return " ✓" if ok else " ✗"


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write the results, merged section by section into what `path` already holds.

    A run of only `--scale` or `--profile` keeps the comparison figures of an earlier run.
    """
    merged: dict[str, Any] = {}
    if path.exists():
        try:
            merged = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            merged = {}
    merged.update(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """Results written by `write_json`."""
    return dict(json.loads(path.read_text(encoding="utf-8")))


# -- rows shared by the terminal table and the Markdown table -------------------------------------
def comparison_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per workload: make, then per deployment seconds, ×make, ms/task, hand-off p50/p95."""
    rows = []
    compare = results.get("compare", {})
    deployments = [d for d, _ in DEPLOYMENTS if d in compare.get("deployments", [])]
    for name, w in compare.get("workloads", {}).items():
        make = w["make"]["median"]
        row = [f"{name} ({w['tasks']} tasks)", _f(make)]
        for dep in deployments:
            d = w.get(dep)
            if not d:
                row += ["–"] * 4
                continue
            ratio = d.get("ratio")
            goal = GOALS[dep].get(name)
            p95 = d["handoff"]["p95_ms"]
            row += [
                _f(d["wall"]["median"]),
                _f(ratio, ".1f", "×")
                + _goal(None if ratio is None or goal is None else ratio <= goal, compare),
                _f(d.get("overhead_ms_per_task"), ".1f"),
                f"{_f(d['handoff']['p50_ms'], '.1f')} / {_f(p95, '.1f')}"
                + _goal(None if p95 is None else p95 <= HANDOFF_P95_GOAL_MS, compare),
            ]
        rows.append(row)
    return rows


def comparison_header(results: dict[str, Any]) -> list[str]:
    """Column titles matching `comparison_rows`."""
    header = ["workload", "make -j2 (s)"]
    deployments = results.get("compare", {}).get("deployments", [])
    for dep, title in DEPLOYMENTS:
        if dep in deployments:
            header += [f"{title} (s)", "× make", "ms/task", "hand-off p50 / p95 (ms)"]
    return header


def memory_lines(results: dict[str, Any]) -> list[str]:
    """Idle and peak RSS of every FlowForge process, one line each."""
    lines = []
    compare = results.get("compare", {})
    for dep, processes in compare.get("memory", {}).items():
        for role, m in processes.items():
            idle = m.get("idle_rss_mib")
            goal = _goal(idle <= IDLE_RSS_GOAL_MIB, compare) if dep == "up" and idle is not None else ""
            lines.append(
                f"{dep} / {role}: idle RSS {_f(idle, '.0f', ' MiB')}{goal}, "
                f"peak RSS {_f(m.get('peak_rss_mib'), '.0f', ' MiB')}"
            )
    return lines


def load_lines(results: dict[str, Any]) -> list[str]:
    """W4 load + validate against plain PyYAML."""
    lines = []
    section = results.get("load", {})
    for name, methods in section.get("workloads", {}).items():
        for method, m in methods.items():
            secs = m["seconds"]["median"]
            goal = _goal(secs <= LOAD_GOAL_SECS, section) if method == "flowforge" else ""
            cpu = m.get("cpu_seconds", {}).get("median")
            lines.append(
                f"{name} ({m['tasks']} tasks) {method}: {_f(secs)} s{goal} (CPU {_f(cpu)} s, "
                f"spread {_f(m['seconds']['spread'], '.0%')}), peak RSS {_f(m['peak_rss_mib'], '.0f')} MiB "
                f"(+{_f(m['rss_growth_mib'], '.0f')} MiB), tracemalloc peak {_f(m['tracemalloc_peak_mib'], '.1f')} MiB"
                f" — {m['what']}"
            )
    return lines


def scale_lines(results: dict[str, Any]) -> list[str]:
    """Latency of the API and the scheduler tick with a big history."""
    scale = results.get("scale")
    if not scale:
        return []
    lines = [f"history: {scale['runs']} runs, {scale['task_instances']:,} task instances"]
    for name, r in scale["requests"].items():
        lines.append(
            f"GET {name}: p50 {_f(r['p50_ms'], '.1f')} ms, p99 {_f(r['p99_ms'], '.1f')} ms"
            f"{_goal(r['p99_ms'] <= SCALE_P99_GOAL_MS, scale)} ({r['n']} requests)"
        )
    small_ticks = scale.get("tick_ms_small", {})
    for name, t in scale["tick_ms"].items():
        small = small_ticks.get(name, {}).get("median")
        lines.append(
            f"scheduler tick, {name}: median {_f(t['median'], '.2f')} ms (max {_f(t['max'], '.2f')} ms; "
            f"{_f(small, '.2f')} ms on a small history)"
        )
    growth = scale.get("growth")
    if growth:
        bigger = scale["task_instances"] / max(scale.get("small_task_instances") or 12_000, 1)
        grows = sorted(((g, n) for n, g in growth.items() if g >= 3), reverse=True)
        rest = max((g for g in growth.values() if g < 3), default=None)
        lines.append(
            f"store queries, history ×{bigger:.0f}: "
            + (", ".join(f"{n} ×{g:.1f}" for g, n in grows) + " grow; " if grows else "none grows; ")
            + (f"every other within ×{rest:.1f}" if rest is not None else "")
        )
    for name, plan in scale.get("query_plans", {}).items():
        flag = "FULL SCAN" if plan["full_scan"] else "indexed"
        lines.append(f"query {name}: {flag} — {' | '.join(plan['plan'])}")
    return lines


def cli_lines(results: dict[str, Any]) -> list[str]:
    """The CLI's start-up: each command's median and its ratio to `python -c pass` (benchmarks/cli_startup.py)."""
    section = results.get("cli")
    if not section:
        return []
    commands = section["commands"]
    lines = [
        f"CLI start-up, output to a pipe, medians of {section['meta'].get('runs', '?')} interleaved runs; "
        f"{machine_text(section['meta'])}"
    ]
    for c in commands.values():
        ratio, goal = c["ratio"], c.get("goal")
        judged = _goal(None if goal is None or ratio is None else ratio <= goal, section)
        target = f" (goal {goal:g}×)" if goal else ""
        lines.append(
            f"{c['what']}: {_f(c['seconds']['median'] * 1000, '.1f')} ms, {_f(ratio, '.1f')}×{judged}{target}"
        )
    return lines


def many_workers_lines(results: dict[str, Any]) -> list[str]:
    """API-mode workers at scale: idle CPU, 1,000 short tasks, connections, errors (benchmarks/many_workers.py)."""
    section = results.get("many_workers")
    if not section:
        return []
    m, goals = section["meta"], section.get("goals", {})
    head = f"{m.get('workers')} API-mode workers × {m.get('slots')} slots on PostgreSQL + Redis; {machine_text(m)}"
    if section.get("skipped"):
        return [f"{head}: skipped ({section['skipped']})"]
    lines = [head]
    if section.get("error"):
        lines.append(f"failed: {section['error'][:300]}")
    run, conns = section.get("run"), section.get("connections", {})
    if run:
        secs = run["seconds"]
        lines.append(
            f"{run['tasks']} × sleep {m.get('sleep')}: trigger → done {secs:.2f}s (ideal {run['ideal_s']:.2f}s)"
            f"{_goal(secs <= goals.get('run_secs', 6.0), section)}, {run['succeeded']} succeeded, "
            f"{run['retried']} retried"
        )
    if "idle_cpu_percent" in section:
        cpu = section["idle_cpu_percent"]
        lines.append(
            f"idle workers: {cpu:.2f}% of one core in all ({section['idle_cpu_percent_per_worker']:.3f}% each) "
            f"over {section['idle_secs']:g}s{_goal(cpu <= goals.get('idle_cpu_percent', 2.0), section)}"
        )
    if conns:
        peak = conns["peak_total"]
        by_process = ", ".join(f"{name or '?'} {n}" for name, n in sorted(conns["by_process"].items()))
        lines.append(
            f"PostgreSQL connections, most at once (every {conns['every_s']}s): {peak}"
            f"{_goal(peak <= goals.get('connections', 25), section)} ({by_process})"
        )
    errors = section.get("connection_errors")
    if errors is not None:
        lines.append(f"connection errors in the logs: {errors}{_goal(errors == 0, section)}")
    return lines


THROUGHPUT_GOAL = 6.0  # × make -j32 on the same DAG (issue: W5 within 6× of make)


def throughput_lines(results: dict[str, Any]) -> list[str]:
    """W5: tasks per second of each system and the ratio to make -j32 (benchmarks/throughput.py)."""
    section = results.get("throughput")
    if not section:
        return []
    m = section["meta"]
    lines = [
        f"W5 throughput, {m.get('tasks')} independent tasks on {m.get('slots')} slots; {machine_text(m)}"
    ]
    for name, s in section["systems"].items():
        ratio = s.get("ratio")
        judged = "" if ratio is None else f", {ratio:.1f}× make{_goal(ratio <= THROUGHPUT_GOAL, section)}"
        lines.append(
            f"{name}: {_f(s['wall']['median'], '.2f')} s, {_f(s['tasks_per_sec'], '.0f')} tasks/s{judged}"
        )
    if section.get("distributed_skipped"):
        lines.append(f"distributed: skipped ({section['distributed_skipped']})")
    return lines


def soak_lines(results: dict[str, Any]) -> list[str]:
    """R13 soak: kills, I1-I7, RSS growth, queue back to 0, claim latency, database (benchmarks/soak.py)."""
    section = results.get("soak")
    if not section:
        return []
    m, goals = section["meta"], section.get("goals", {})
    head = (
        f"R13 soak, {m.get('minutes'):g} min on {m.get('workers')} {m.get('worker_mode')} workers × "
        f"{m.get('slots')} slots on PostgreSQL + Redis, seed {m.get('seed')}; {machine_text(m)}"
    )
    if section.get("skipped"):
        return [f"{head}: skipped ({section['skipped']})"]
    lines = [head] + ([f"failed: {section['error'][:300]}"] if section.get("error") else [])
    if "invariants" in section:
        lines += _soak_work_lines(section, goals)
    if "rss" in section:
        lines += _soak_resource_lines(section, goals)
    if "log_errors" in section:
        conns = section["connections"]
        by_process = ", ".join(f"{name or '?'} {n}" for name, n in sorted(conns["by_process"].items()))
        own = "; flowforge-soak: the soak's own reads" if "flowforge-soak" in conns["by_process"] else ""
        lines.append(f"PostgreSQL connections, most at once: {conns['peak_total']} ({by_process}{own})")
        lines.append(f"error lines in the logs: {section['log_errors']}")
    return lines


def _soak_work_lines(section: dict[str, Any], goals: dict[str, Any]) -> list[str]:
    kills, inv = section["kills"], section["invariants"]
    ok = inv["ok"] and len(inv["violations"]) <= goals.get("violations", 0)
    verdict = "hold" if inv["ok"] else f"{len(inv['violations'])} violation(s)"
    return [
        f"{section['tasks']:,} tasks in {section['runs']} runs over {section['stream_s']:g}s, "
        f"{section['tasks_done']:,} succeeded; worker SIGKILLs: {kills['count']}, hitting {kills['tasks_hit']} "
        f"running tasks ({kills['percent_of_tasks']:g} %), each worker back 0.5-1 s later",
        f"I1-I7: {verdict}{_goal(ok, section)} "
        f"(runs ended {section['drain_s']:g}s after the stream; lost attempts {inv['lost_attempts']}, "
        f"re-executions {inv['re_executions']}, double successes {inv['double_successes']}, "
        f"losses {inv['losses']})",
    ] + [f"  {v}" for v in inv["violations"][:5]]


def _soak_resource_lines(section: dict[str, Any], goals: dict[str, Any]) -> list[str]:
    rss, queue, claim, db = section["rss"], section["queue"], section["claim_latency_ms"], section["database"]
    worst, limit = rss["max_growth_percent"], goals.get("rss_growth_percent", 10.0)
    judged = ", ".join(f"{name} {_f(g, '+.1f', ' %')}" for name, g in rss["judged"].items())
    end = queue["end"]
    zero = not (end["waiting"] or end["queued_rows"] or end["queued_attempts"])
    return [
        f"RSS growth after a {rss['warmup_s']:g}s warm-up (last-quarter median against the first sample, "
        f"every {rss['every_s']:g}s), processes that lived through: {judged or 'none'}"
        f"{_goal(None if worst is None else worst < limit, section)}; {rss['other_lives']} worker "
        f"lives ended by a kill or begun by a restart not judged (largest growth "
        f"{_f(rss['other_max_growth_percent'], '+.1f', ' %')} over the {rss['other_with_growth']} "
        f"long enough to tell)",
        f"queue: at most {queue['max_waiting']} messages waiting and {queue['max_queued_rows']} queued rows; "
        f"at the end {end['waiting']} waiting, {end['taken']} taken, {end['queued_rows']} queued rows"
        f"{_goal(zero, section)} ({_f(queue['back_to_zero_s'], 'g', 's')} after the runs ended)",
        f"claim latency, queued → claimed: p50 {_f(claim['p50'], '.1f')} ms, p95 {_f(claim['p95'], '.1f')} ms, "
        f"p99 {_f(claim['p99'], '.1f')} ms, max {_f(claim['max'], '.1f')} ms ({claim['n']:,} attempts)",
        f"database: {db['start_mib']:g} MiB at the start, {db['end_mib']:g} MiB at the end for "
        f"{db['attempts']:,} attempts: {db['mib_per_10k_attempts']:g} MiB per 10,000 attempts, of which "
        f"{db['growth_mib_per_10k_attempts']:g} MiB grew during the soak",
    ]


# -- outputs ----------------------------------------------------------------------------------------
def print_report(results: dict[str, Any], console: Console | None = None) -> None:
    """A readable report on the terminal."""
    console = console or Console()
    meta = results.get("compare", {}).get("meta") or results.get("meta", {})
    rows = comparison_rows(results)
    if rows:
        table = Table(
            title=f"Trigger → run end, medians of {meta.get('runs', '?')} runs, 2 slots; {machine_text(meta)}"
        )
        header = comparison_header(results)
        for i, title in enumerate(header):
            table.add_column(title, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        skipped = results.get("compare", {}).get("distributed_skipped")
        if skipped:
            console.print(f"distributed: skipped ({skipped})")
        for name, w in results.get("compare", {}).get("workloads", {}).items():
            spreads = [f"make {_f(w['make']['spread'], '.0%')}"]
            for dep, _ in DEPLOYMENTS:
                if w.get(dep):
                    cpu = w[dep].get("cpu_ms_per_task")
                    spreads.append(
                        f"{dep} {_f(w[dep]['wall']['spread'], '.0%')}"
                        + (f" (CPU {cpu:.2f} ms/task)" if cpu is not None else "")
                    )
            console.print(f"  {name} spread (max-min)/median: " + ", ".join(spreads))
    for line in memory_lines(results) + load_lines(results) + scale_lines(results) + cli_lines(results):
        console.print(line)
    for line in throughput_lines(results):
        console.print(line)
    from benchmarks.cron import cron_lines

    for line in many_workers_lines(results) + soak_lines(results) + cron_lines(results):
        console.print(line)


def machine_text(meta: dict[str, Any]) -> str:
    """Commit, cores and 1-minute load average at the start and the end of a section."""
    start = meta.get("load1_start", (meta.get("load_before") or ["?"])[0])
    end = meta.get("load1_end", (meta.get("load_after") or ["?"])[0])
    cpus = meta.get("cpus_start", meta.get("cpus", "?"))
    sha = meta.get("commit") or "?"
    text = f"commit {sha[:12]}, {cpus} cores (1-minute load average {start} at the start, {end} at the end)"
    return text + ("; the machine was busy, so no goal is judged" if busy(meta) else "")


def markdown(results: dict[str, Any]) -> str:
    """The README's table: the comparison, then memory, W4 and scale as short lines."""
    meta = results.get("compare", {}).get("meta", {})
    out = []
    rows = comparison_rows(results)
    if rows:
        header = comparison_header(results)
        out.append(
            f"Trigger → run end, medians of {meta.get('runs', '?')} interleaved runs on "
            f"{machine_text(meta)}, 2 worker slots (make: `make -j2`, one `sh -c true` per task):"
        )
        out.append("")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    extra = memory_lines(results) + load_lines(results) + scale_lines(results) + cli_lines(results)
    extra += throughput_lines(results)
    from benchmarks.cron import cron_lines

    extra += many_workers_lines(results) + soak_lines(results) + cron_lines(results)
    out += [f"- {line}" for line in extra if not line.startswith("query ")]
    return "\n".join(out).rstrip() + "\n"


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """Write `markdown(results)` to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(results), encoding="utf-8")
