"""`python -m benchmarks`: run the suite, print a table, write JSON and a Markdown table.

Results are written only when the working tree is exactly the commit they name (`git status
--porcelain` shows nothing but the results files); otherwise the figures are printed and not saved.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from benchmarks import REPO_DIR, RESULTS_DIR
from benchmarks.compare import run_comparison, run_load
from benchmarks.meta import commit, tree_state
from benchmarks.report import print_report, read_json, write_json, write_markdown
from benchmarks.workloads import ALL_WORKLOADS, LOAD_WORKLOADS, RUN_WORKLOADS, load_workload, parse_names


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="FlowForge against GNU make -j2: trigger → run end, hand-off latency, memory; "
        "W4 load + validate; optionally a profile and a large-history scale test. "
        "`python -m benchmarks soak --minutes N` runs the long soak instead (soak --help).",
    )
    p.add_argument("--runs", type=int, default=5, help="measured runs per workload and system (default 5)")
    p.add_argument(
        "--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated, e.g. W1,W3 (default: all)"
    )
    p.add_argument(
        "--distributed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure api + scheduler + worker on PostgreSQL + Redis (default: when FLOWFORGE_TEST_PG "
        "and FLOWFORGE_TEST_REDIS are set and the commands exist)",
    )
    p.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the make/FlowForge comparison and W4 (default; --no-compare for --profile/--scale only)",
    )
    p.add_argument("--profile", action="store_true", help="profile W1 on an in-process engine (cProfile)")
    p.add_argument("--profile-workload", default="W1", help="workload for --profile (default W1)")
    p.add_argument(
        "--scale", action="store_true", help="API and scheduler latency with 100,000 task instances"
    )
    p.add_argument(
        "--cli",
        action="store_true",
        help="the CLI's start-up against python -c pass (--cli --no-compare for only that)",
    )
    p.add_argument(
        "--many-workers",
        action="store_true",
        help="api + scheduler + 30 API-mode workers x 4 slots on PostgreSQL + Redis: idle CPU, "
        "1,000 x sleep 0.5, database connections, connection errors",
    )
    p.add_argument(
        "--throughput",
        action="store_true",
        help="W5: 10,000 independent tasks on 32 slots against make -j32 (up; distributed when configured)",
    )
    p.add_argument(
        "--api-load",
        action="store_true",
        help="200 clients, 200 requests/s open-loop for 60 s against up and two APIs on PostgreSQL",
    )
    p.add_argument(
        "--cron",
        action="store_true",
        help="1,000 DAGs firing once a minute each, watched 2 minutes: scheduler tick p99, cron run lateness "
        "(up; distributed when configured)",
    )
    p.add_argument(
        "--scale-runs", type=int, default=500, help="finished W1 runs of history for --scale (500)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        help="JSON results, merged by section (default benchmarks/results/latest.json); "
        "a Markdown table is written next to it (.md)",
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=REPO_DIR,
        help="start the FlowForge processes from this checkout instead (before/after comparisons; "
        "W4, --profile and --scale always use this one)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    add_soak(p.add_subparsers(dest="command", metavar="{soak}", title="commands (not run by default)"))
    return p


def add_soak(commands: Any) -> None:
    """`soak`: the long soak under random SIGKILLs (benchmarks/soak.py), run on its own."""
    from benchmarks import soak
    from tests.chaos.cluster import HEARTBEAT_SECS

    s = commands.add_parser(
        "soak",
        help="R13: a steady stream of tasks over N minutes on api + scheduler + workers (PostgreSQL + "
        "Redis) with 1 %% of them SIGKILLed: I1-I7, RSS growth, queue back to 0, claim latency, database size",
        description="R13 soak: --tasks tasks spread over --minutes on api + scheduler + --workers direct "
        "workers on PostgreSQL + Redis, about --kill-rate of them seeing their worker SIGKILLed while they "
        "run; then I1-I7, the RSS growth of every process after warm-up, the queue and queued rows back "
        "to 0, claim latency p50/p95/p99, database size per 10,000 attempts, connections, log errors.",
    )
    s.add_argument("--minutes", type=float, default=soak.MINUTES, help="how long the stream lasts (30)")
    s.add_argument("--tasks", type=int, default=soak.TASKS, help="tasks over the whole stream (10,000)")
    s.add_argument("--workers", type=int, default=soak.WORKERS, help="workers (4)")
    s.add_argument("--slots", type=int, default=soak.SLOTS, help="slots per worker (4)")
    s.add_argument(
        "--kill-rate",
        type=float,
        default=soak.KILL_RATE,
        help="share of tasks whose worker is SIGKILLed (0.01)",
    )
    s.add_argument("--seed", type=int, default=None, help="the RNG's seed (default: a fresh one, printed)")
    s.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT_SECS,
        help="FLOWFORGE_HEARTBEAT_SECS of every process (the chaos suite's 0.5: leases of 1.5 s)",
    )
    s.add_argument(
        "--worker-mode",
        choices=("direct", "api"),
        default="direct",
        help="direct workers (the store and the queue) or API-mode ones (worker --api-url)",
    )
    # The same as the suite's options, accepted after `soak` too.
    s.add_argument(
        "--out",
        type=Path,
        default=argparse.SUPPRESS,
        help="JSON results (default benchmarks/results/latest.json)",
    )
    s.add_argument("--keep", action="store_true", default=argparse.SUPPRESS, help="keep the temporary folder")


def run_sections(
    args: argparse.Namespace, names: list[str], folder: Path, console: Console
) -> dict[str, Any]:
    """Run the sections the options ask for, with their processes and files in `folder`."""
    progress = console.log
    results: dict[str, Any] = {}
    if args.command == "soak":
        from benchmarks.soak import run_soak

        results["soak"] = run_soak(
            folder / "soak",
            minutes=args.minutes,
            tasks=args.tasks,
            workers=args.workers,
            slots=args.slots,
            kill_rate=args.kill_rate,
            seed=args.seed,
            heartbeat=args.heartbeat,
            worker_mode=args.worker_mode,
            progress=progress,
        )
        return results
    if args.compare:
        workloads = [load_workload(n) for n in names if n in RUN_WORKLOADS]
        results["compare"] = run_comparison(
            workloads,
            args.runs,
            folder / "compare",
            distributed=args.distributed,
            progress=progress,
            repo=args.repo.resolve(),
        )
        load_names = [n for n in names if n in LOAD_WORKLOADS]
        if load_names:
            results["load"] = run_load(load_names, args.runs, progress=progress)
    if args.profile:
        from benchmarks.profiling import run_profile

        results["profile"] = run_profile(args.profile_workload, folder / "profile", console=console)
    if args.scale:
        from benchmarks.scale import run_scale

        results["scale"] = run_scale(folder / "scale", runs=args.scale_runs, progress=progress)
    if args.many_workers:
        from benchmarks.many_workers import run_many_workers

        results["many_workers"] = run_many_workers(folder / "many_workers", progress=progress)
    if args.throughput:
        from benchmarks.throughput import run_throughput

        results["throughput"] = run_throughput(
            folder / "throughput", max(1, min(args.runs, 3)), progress=progress, repo=args.repo.resolve()
        )
    if args.cli:
        from benchmarks.cli_startup import run_cli_startup

        results["cli"] = run_cli_startup(
            folder / "cli", args.runs, progress=progress, repo=args.repo.resolve()
        )
    if args.cron:
        from benchmarks.cron import run_cron

        results["cron"] = run_cron(
            folder / "cron", distributed=args.distributed, progress=progress, repo=args.repo.resolve()
        )
    if args.api_load:
        from benchmarks.apiload import api_load_lines, run_api_load

        results["api_load"] = run_api_load(
            folder / "api-load", distributed=args.distributed, progress=progress
        )
        console.print("\n".join(api_load_lines(results["api_load"])))
    return results


def why_not_saved(args: argparse.Namespace) -> str | None:
    """Why figures measured now could not be saved as results (a changed tree); None when they can."""
    outputs = []
    for path in (args.out, args.out.with_suffix(".md")):
        try:
            outputs.append(str(path.resolve().relative_to(REPO_DIR)))
        except ValueError:
            pass  # written outside the checkout
    reasons = [tree_state(REPO_DIR, ignore=tuple(outputs))[1]]
    if args.repo.resolve() != REPO_DIR:
        reasons.append(tree_state(args.repo.resolve())[1])
    return "; ".join(r for r in reasons if r) or None


def main(argv: list[str] | None = None) -> int:
    """Run what the options ask for; 0 when the results were saved, 1 when only printed, 2 on bad options."""
    args = parser().parse_args(argv)
    console = Console()
    try:
        names = parse_names(args.workloads)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    if not (
        args.command
        or args.compare
        or args.profile
        or args.scale
        or args.cli
        or args.many_workers
        or args.throughput
        or args.api_load
        or args.cron
    ):
        console.print(
            "nothing to do: --no-compare without --profile, --scale, --cli, --many-workers, --throughput or --cron"
        )
        return 2
    measured = commit(REPO_DIR)
    refused = why_not_saved(args)
    if refused:
        console.print(f"[yellow]the figures will be printed, not saved: {escape(refused)}[/yellow]")
    folder = Path(tempfile.mkdtemp(prefix="flowforge-bench-"))
    try:
        results = run_sections(args, names, folder, console)
    finally:
        if args.keep:
            console.print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    # The tree may have changed while the suite ran.
    if not refused and commit(REPO_DIR) != measured:
        refused = f"HEAD moved from {measured} to {commit(REPO_DIR)} while the suite ran"
    refused = refused or why_not_saved(args)
    if refused:
        print_report(results, console)
        console.print(f"[yellow]not saved as results: {escape(refused)}. Commit, then run again.[/yellow]")
        return 1
    write_json(results, args.out)
    merged = read_json(args.out)
    write_markdown(merged, args.out.with_suffix(".md"))
    print_report({k: v for k, v in merged.items() if k in results}, console)
    console.print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
