"""`python -m benchmarks`: run the suite, print a table, write JSON and a Markdown table."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from rich.console import Console

from benchmarks import REPO_DIR, RESULTS_DIR
from benchmarks.compare import run_comparison, run_load
from benchmarks.report import print_report, read_json, write_json, write_markdown
from benchmarks.workloads import ALL_WORKLOADS, LOAD_WORKLOADS, RUN_WORKLOADS, load_workload, parse_names


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="FlowForge against GNU make -j2: trigger → run end, hand-off latency, memory; "
        "W4 load + validate; optionally a profile and a large-history scale test.",
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
    return p


def main(argv: list[str] | None = None) -> int:
    """Run what the options ask for; 0 on success."""
    args = parser().parse_args(argv)
    console = Console()
    try:
        names = parse_names(args.workloads)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    results = {}
    progress = console.log
    folder = Path(tempfile.mkdtemp(prefix="flowforge-bench-"))
    try:
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
    finally:
        if args.keep:
            console.print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if not results:
        console.print("nothing to do: --no-compare without --profile or --scale")
        return 2
    write_json(results, args.out)
    merged = read_json(args.out)
    write_markdown(merged, args.out.with_suffix(".md"))
    print_report({k: v for k, v in merged.items() if k in results}, console)
    console.print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
