"""`validate` and `submit`: DAG files and folders, checked locally with the same rules as the API.

A folder stands for every `*.yaml` and `*.yml` file directly in it (sorted by name; hidden files
and subfolders left out). `submit` is all or nothing: every file is read and validated first,
and when any is invalid (or two declare the same DAG id) nothing is sent and it exits 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowforge.cli.group import client_command
from flowforge.cli.state import EXIT_BAD_INPUT, fail, get_state
from flowforge.core.errors import DagValidationError, Problem

if TYPE_CHECKING:
    from flowforge.client import ApiClient

MAX_YAML_BYTES = 1024 * 1024  # the same limit the API applies

PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="PATHS",
        help="DAG files, and folders standing for every *.yaml / *.yml file in them.",
        show_default=False,
    ),
]
FileOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--file", "-f", help="A DAG file or folder (repeatable; the same as PATHS).", show_default=False
    ),
]


def register(app: typer.Typer) -> None:
    """Add these commands to the app, in the order `--help` lists them."""
    for command in (validate, submit):
        app.command()(client_command(command))


def dag_files(paths: Iterable[Path]) -> list[tuple[Path, Problem | None]]:
    """Each file to read, in order and once: folders expanded; a folder with none is a problem."""
    from flowforge.core.dagfile import dag_files_in  # here: the DAG reader is slow to import for --help

    found: list[tuple[Path, Problem | None]] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            try:
                files = dag_files_in(path)
            except OSError as exc:
                found.append((path, Problem(f"cannot read the folder: {exc.strerror or exc}")))
                continue
            if not files:
                found.append((path, Problem("no *.yaml or *.yml file in this folder")))
            listed = [(p, None) for p in files]
        else:
            listed = [(path, None)]
        for p, problem in listed:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                found.append((p, problem))
    return found


def load_local(path: Path) -> tuple[Any, str]:
    """Read and validate a DAG file: (spec, text); raises DagValidationError with located problems."""
    # Here, not at the top: the DAG reader pulls in YAML and the graph library, slow for `--help`.
    from flowforge.core.dagfile import load_dag

    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)  # one byte over is enough to know it is too large
    except OSError as exc:
        raise DagValidationError([Problem(f"cannot read the file: {exc.strerror or exc}")], source) from None
    spec = load_dag(raw, source, max_bytes=MAX_YAML_BYTES)
    return spec, raw.decode("utf-8-sig")


def check_files(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """What `validate --json` says of each file, and the text of each valid one (in the same order)."""
    results, texts = [], []
    first_file: dict[str, str] = {}  # DAG id -> the file that declared it first
    for path, problem in dag_files(paths):
        result: dict[str, Any] = {
            "file": str(path),
            "valid": False,
            "dag_id": None,
            "tasks": 0,
            "problems": [],
        }
        results.append(result)
        problems = [problem] if problem else []
        if not problems:
            try:
                spec, text = load_local(path)
            except DagValidationError as exc:
                problems = list(exc.problems)
            else:
                result.update(dag_id=spec.id, tasks=len(spec.tasks))
                if spec.id in first_file:
                    problems = [
                        Problem(f"DAG id {spec.id!r} is also declared by {first_file[spec.id]}", "id")
                    ]
                else:
                    first_file[spec.id] = str(path)
                    texts.append(text)
                    _warn(path, spec.schedule)
        result["valid"] = not problems
        result["problems"] = [{**p.to_dict(), "text": p.format(str(path))} for p in problems]
    return results, texts


def _warn(path: Path, schedule: str | None) -> None:
    """What a valid schedule probably gets wrong, on stderr: a warning, not a problem."""
    from flowforge.core.preview import schedule_warnings

    for warning in schedule_warnings(schedule):
        typer.echo(f"{path}: warning: schedule: {warning}", err=True)


def _paths(paths: list[Path] | None, files: list[Path] | None) -> list[Path]:
    given = [*(paths or []), *(files or [])]
    if not given:
        raise typer.BadParameter("name at least one DAG file or folder", param_hint="PATHS")
    return given


def validate(ctx: typer.Context, paths: PathsArg = None, file: FileOpt = None) -> None:
    """Check DAG files and folders offline (no API needed), as CI would; exit 2 if any is invalid.

    Each file is reported on its own: `ok: FILE (DAG ID, N tasks)`, or its problems as
    FILE:LINE:COLUMN: FIELD: MESSAGE. Two files declaring the same DAG id are a problem too.
    """
    state = get_state(ctx)
    results, _ = check_files(_paths(paths, file))
    if state.json_output:
        state.print_json(results)
    else:
        for r in results:
            if r["valid"]:
                state.echo(f"ok: {r['file']} (DAG {r['dag_id']}, {r['tasks']} tasks)")
            for p in r["problems"]:
                state.echo(p["text"])
    invalid = sum(not r["valid"] for r in results)
    if invalid:
        fail(f"{invalid} of {len(results)} file(s) invalid", EXIT_BAD_INPUT, kind="invalid_dag")


def submit(ctx: typer.Context, paths: PathsArg = None, file: FileOpt = None) -> None:
    """Validate DAG files and folders, then store them through the API: all of them, or none.

    Every file is validated locally first (as `validate` does); if any is invalid, nothing is
    submitted and the exit code is 2. Then each DAG is sent in turn; a changed DAG gets a new
    version. Should the API refuse one (it checks again), the ones before it stay stored.
    """
    state = get_state(ctx)
    results, texts = check_files(_paths(paths, file))
    invalid = [r for r in results if not r["valid"]]
    if invalid:
        if state.json_output:
            state.print_json([{**r, "submitted": None} for r in results])
        else:
            for r in invalid:
                for p in r["problems"]:
                    typer.echo(p["text"], err=True)
        fail(
            f"nothing submitted: {len(invalid)} of {len(results)} file(s) invalid",
            EXIT_BAD_INPUT,
            kind="invalid_dag",
        )
    with state.client() as client:
        _send(client, state, results, texts)


def _send(client: ApiClient, state: Any, results: list[dict[str, Any]], texts: list[str]) -> None:
    from flowforge.client import ApiError

    done: list[dict[str, Any]] = []
    for result, text in zip(results, texts, strict=True):
        try:
            record = client.submit_dag(text)
        except ApiError as exc:
            stored = ", ".join(r["file"] for r in done) or "none"
            exc.message = f"{result['file']}: {exc.message} (submitted before it: {stored})"
            raise
        done.append({**result, "submitted": record})
        if not state.json_output:
            what = "new DAG" if record.created else "changed: new version" if record.changed else "unchanged"
            state.echo(f"submitted DAG {record.id} from {result['file']}: version {record.version} ({what})")
    if state.json_output:
        state.print_json(done)
