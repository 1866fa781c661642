"""`prune`: delete the history of runs that ended long ago, through the API (`POST /api/v1/prune`)."""

from __future__ import annotations

from typing import Annotated

import typer

from flowforge.cli.group import client_command
from flowforge.cli.state import get_state

# What a prune counts, in the order it prints them.
_COUNTED = (
    ("runs", "runs"),
    ("task_instances", "task instances"),
    ("attempts", "attempts"),
    ("log_chunks", "log chunks"),
    ("events", "events"),
)


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command()(client_command(prune))


def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Delete runs that ended longer ago than AGE: a number and a unit, s, m, h, d or w (30d, 12h).",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete runs that ended before --older-than AGE, with their tasks, attempts, logs and events.

    Only ended runs (success, failed, cancelled) go; queued and running runs, DAGs and their
    versions stay. Needs the full API token. Prints what was deleted (with --dry-run, what would be).
    """
    state = get_state(ctx)
    with state.client() as client:
        # The API works a few seconds per request; each answer's `next` goes on at the same cutoff.
        answer = client.prune(older_than, dry_run=dry_run)
        totals = {field: getattr(answer, field) for field, _ in _COUNTED}
        while answer.next:
            answer = client.prune(older_than, dry_run=dry_run, cursor=answer.next)
            totals = {field: n + getattr(answer, field) for field, n in totals.items()}
    if state.json_output:
        head = {"dry_run": answer.dry_run, "older_than": answer.older_than, "cutoff": answer.cutoff}
        state.print_json({**head, **totals, "next": None})
        return
    verb = "would delete" if answer.dry_run else "deleted"
    state.echo(
        f"{verb} what ended before {state.clock.full(answer.cutoff)} (older than {answer.older_than}):"
    )
    for field, label in _COUNTED:
        state.echo(f"  {label:<15} {totals[field]:>10,}")
    if answer.dry_run:
        state.echo("nothing was deleted (--dry-run)")
