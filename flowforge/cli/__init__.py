"""The `flowforge` command: Typer commands that parse, delegate to the API client, and print."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from flowforge import __version__
from flowforge.cli.control import backfill, cancel, retry
from flowforge.cli.follow import (
    EXIT_BAD_INPUT,
    EXIT_RUN_FAILED,
    EXIT_UNREACHABLE,
    api_error_lines,
    fail,
    log_chunks,
    report_outcome,
    wait_for_run,
    write_raw,
)
from flowforge.cli.server import api, scheduler, up, worker
from flowforge.cli.tables import (
    dags_table,
    print_json,
    run_summary,
    runs_table,
    status_table,
    tasks_table,
    workers_table,
)
from flowforge.client import ApiClient, ApiError, ApiUnreachable
from flowforge.core.errors import DagValidationError, Problem
from flowforge.core.model import DagSpec
from flowforge.settings import DEFAULT_API_URL

MAX_YAML_BYTES = 1024 * 1024  # the same limit the API applies


class _FlowForgeGroup(TyperGroup):
    """Turns FlowForge's expected errors into short messages and exit codes: no tracebacks."""

    def invoke(self, ctx: Any) -> Any:  # Any: click's Context, or the copy newer Typer vendors
        """Run the command, mapping errors to exit codes 1, 2 and 3."""
        try:
            return super().invoke(ctx)
        except ApiUnreachable as exc:
            fail(
                f"cannot reach the FlowForge API at {exc.url} ({exc.reason}). Is 'flowforge up' running?",
                EXIT_UNREACHABLE,
            )
        except ApiError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            for line in api_error_lines(exc):
                typer.echo(f"  {line}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT if 400 <= exc.status < 500 else EXIT_RUN_FAILED) from None
        except DagValidationError as exc:
            for problem in exc.problems:
                typer.echo(problem.format(exc.source), err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None  # the shell's convention for SIGINT
        except Exception as exc:
            # Exit, Abort and usage errors belong to Typer/Click (vendored in newer Typer): let them through.
            if type(exc).__module__.split(".")[0] in ("typer", "click") or os.environ.get("FLOWFORGE_DEBUG"):
                raise
            fail(f"{type(exc).__name__}: {exc} (set FLOWFORGE_DEBUG=1 for a traceback)", EXIT_RUN_FAILED)


@dataclass
class CliState:
    """The global options, shared by every command through the Typer context."""

    api_url: str
    token: str | None
    json_output: bool

    def client(self) -> ApiClient:
        """A client of the API these options point at."""
        return ApiClient(self.api_url, token=self.token)

    @property
    def out(self) -> Console:
        """Console for results on stdout (made per use, so it writes to the current sys.stdout)."""
        return Console(highlight=False)

    def emit(self, data: Any, table: Any) -> None:
        """The API's JSON with --json, else the Rich renderable."""
        if self.json_output:
            print_json(self.out, data)
        else:
            self.out.print(table)


app = typer.Typer(
    cls=_FlowForgeGroup,
    name="flowforge",
    help="FlowForge: a DAG workflow scheduler for shell-command tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flowforge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    api_url: Annotated[
        str, typer.Option("--api-url", envvar="FLOWFORGE_API_URL", help="Base URL of the FlowForge API.")
    ] = DEFAULT_API_URL,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FLOWFORGE_API_TOKEN",
            show_default=False,
            help="API token, sent as 'Authorization: Bearer <token>'.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the API's JSON instead of tables.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """FlowForge: `flowforge up` starts everything; the other commands talk to its API."""
    ctx.obj = CliState(api_url=api_url, token=token or None, json_output=json_output)


def _state(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    assert isinstance(state, CliState)
    return state


app.command()(up)
app.command()(api)
app.command()(scheduler)
app.command()(worker)
for _command in (cancel, retry, backfill):
    app.command()(_command)

DagArg = Annotated[str, typer.Argument(metavar="DAG", help="Id of the DAG.", show_default=False)]
RunArg = Annotated[str, typer.Argument(metavar="RUN_ID", help="Id of the run.", show_default=False)]


# -- offline ---------------------------------------------------------------------------
def load_local(path: Path) -> tuple[DagSpec, str]:
    """Read and validate a DAG file: (spec, text); raises DagValidationError with located problems."""
    from flowforge.core.dagfile import (
        load_dag,  # here, not at the top: it pulls in networkx, slow for `--help`
    )

    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)  # one byte over is enough to know it is too large
    except OSError as exc:
        raise DagValidationError([Problem(f"cannot read the file: {exc.strerror or exc}")], source) from None
    spec = load_dag(raw, source, max_bytes=MAX_YAML_BYTES)
    return spec, raw.decode("utf-8-sig")


@app.command()
def validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="DAG YAML files to check.", show_default=False)],
) -> None:
    """Check DAG files offline (no API needed), as CI would; exit 2 if any is invalid."""
    results: list[dict[str, Any]] = []
    for path in files:
        try:
            spec, _ = load_local(path)
            results.append(
                {
                    "file": str(path),
                    "valid": True,
                    "dag_id": spec.id,
                    "tasks": len(spec.tasks),
                    "problems": [],
                }
            )
        except DagValidationError as exc:
            results.append(
                {
                    "file": str(path),
                    "valid": False,
                    "dag_id": None,
                    "tasks": 0,
                    "problems": [{**p.to_dict(), "text": p.format(str(path))} for p in exc.problems],
                }
            )
    if _state(ctx).json_output:
        print_json(_state(ctx).out, results)
    else:
        for r in results:
            if r["valid"]:
                typer.echo(f"ok: {r['file']} (DAG {r['dag_id']}, {r['tasks']} tasks)")
            for p in r["problems"]:
                typer.echo(p["text"])
    if not all(r["valid"] for r in results):
        raise typer.Exit(EXIT_BAD_INPUT)


# -- API clients -----------------------------------------------------------------------
@app.command()
def submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help="The DAG YAML file.", show_default=False)],
) -> None:
    """Validate a DAG file locally, then store it through the API (a changed DAG gets a new version)."""
    state = _state(ctx)
    _, text = load_local(file)
    with state.client() as client:
        record = client.submit_dag(text)
    if state.json_output:
        print_json(state.out, record)
        return
    what = (
        "new DAG"
        if record.get("created")
        else "changed: new version"
        if record.get("changed")
        else "unchanged"
    )
    typer.echo(f"submitted DAG {record['id']}: version {record['version']} ({what})")


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--param")
        params[key.strip()] = value
    return params


@app.command()
def trigger(
    ctx: typer.Context,
    dag_id: DagArg,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="A param declared by the DAG (repeatable)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Show live progress; exit 0 if the run succeeds, 1 if not.")
    ] = False,
) -> None:
    """Start a run of a DAG now and print its run id."""
    state = _state(ctx)
    params = _parse_params(param or [])
    with state.client() as client:
        run = client.trigger(dag_id, params)
        if run.get("dag_paused") and not state.json_output:
            typer.echo(
                f"note: DAG {dag_id} is paused; this manual run goes ahead, scheduled runs do not", err=True
            )
        if not wait:
            if state.json_output:
                print_json(state.out, run)
            else:
                typer.echo(run["run_id"])
            return
        if not state.json_output:
            typer.echo(run["run_id"])
        # Progress goes to stderr so that `RUN=$(flowforge trigger --wait ...)` still captures the id.
        progress = None if state.json_output else Console(stderr=True, highlight=False)
        try:
            final = wait_for_run(client, run["run_id"], progress)
        except KeyboardInterrupt:
            typer.echo(
                f"stopped waiting; run {run['run_id']} carries on (see: flowforge run {run['run_id']})",
                err=True,
            )
            raise typer.Exit(130) from None
        if state.json_output:
            print_json(state.out, final)
        else:
            report_outcome(client, state.out, final)
    if final["state"] != "success":
        raise typer.Exit(EXIT_RUN_FAILED)


@app.command()
def dags(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include deactivated DAGs.")] = False,
) -> None:
    """List DAGs with their version, schedule and next run."""
    state = _state(ctx)
    with state.client() as client:
        items = client.list_dags(include_inactive=all_)
    state.emit({"dags": items}, dags_table(items))


@app.command()
def runs(
    ctx: typer.Context,
    dag: Annotated[str | None, typer.Option("--dag", "-d", help="Only runs of this DAG.")] = None,
    state_filter: Annotated[
        str | None,
        typer.Option(
            "--state",
            "-s",
            help="Only runs in this state (queued, running, success, failed, cancelled; comma-separated for several).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=500, help="How many runs, newest first.")
    ] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many runs (paging).")] = 0,
) -> None:
    """List runs, newest first."""
    state = _state(ctx)
    with state.client() as client:
        page = client.list_runs(dag_id=dag, state=state_filter, limit=limit, offset=offset)
    state.emit(page, runs_table(page["runs"]))


@app.command()
def run(ctx: typer.Context, run_id: RunArg) -> None:
    """Show a run and its tasks: state, attempt, duration, exit code."""
    state = _state(ctx)
    with state.client() as client:
        detail = client.get_run(run_id)
    if state.json_output:
        print_json(state.out, detail)
    else:
        state.out.print(run_summary(detail))
        state.out.print(tasks_table(detail.get("tasks", [])))


@app.command()
def logs(
    ctx: typer.Context,
    run_id: RunArg,
    task_id: Annotated[str, typer.Argument(metavar="TASK_ID", help="Id of the task.", show_default=False)],
    attempt: Annotated[int | None, typer.Option(min=1, help="Attempt number (default: the latest).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until done.")
    ] = False,
) -> None:
    """Print a task's log as raw text (--json: one JSON object per chunk)."""
    state = _state(ctx)

    def announce(n: int) -> None:
        if not state.json_output:
            typer.echo(f"--- attempt {n} ---", err=True)

    with state.client() as client:
        for chunk in log_chunks(client, run_id, task_id, attempt, follow=follow, on_new_attempt=announce):
            if state.json_output:
                typer.echo(json.dumps(chunk))
            else:
                write_raw(chunk["text"])


@app.command()
def status(ctx: typer.Context) -> None:
    """Counts of DAGs, runs and tasks by state, workers and queue depth."""
    state = _state(ctx)
    with state.client() as client:
        data = client.status()
    state.emit(data, status_table(data))


@app.command()
def workers(ctx: typer.Context) -> None:
    """List workers with host, slots, running tasks and last heartbeat."""
    state = _state(ctx)
    with state.client() as client:
        items = client.workers()
    state.emit({"workers": items}, workers_table(items))


@app.command()
def pause(ctx: typer.Context, dag_id: DagArg) -> None:
    """Stop scheduling a DAG (runs in flight carry on)."""
    _set_paused(ctx, dag_id, True)


@app.command()
def unpause(ctx: typer.Context, dag_id: DagArg) -> None:
    """Resume scheduling a DAG."""
    _set_paused(ctx, dag_id, False)


def _set_paused(ctx: typer.Context, dag_id: str, paused: bool) -> None:
    state = _state(ctx)
    with state.client() as client:
        record = client.pause_dag(dag_id) if paused else client.unpause_dag(dag_id)
    if state.json_output:
        print_json(state.out, record)
    else:
        typer.echo(f"DAG {record['id']} {'paused' if paused else 'unpaused'}")


@app.command()
def tui(ctx: typer.Context) -> None:
    """Open the terminal dashboard: DAGs, runs, a live graph, the runs × tasks grid and logs."""
    from flowforge.tui import (
        run_tui,  # here, not at the top: Textual is slow to import for the other commands
    )

    state = _state(ctx)
    run_tui(state.api_url, state.token)


def main() -> None:
    """Console-script entry point."""
    app()
