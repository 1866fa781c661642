"""What each command prints with `--json`: an API answer (named by its model) or a shape of the CLI's own.

docs/CLI.md shows it under each command, the keys of an API answer listed from its model, so the
reference follows the models; tests run the commands and check what they print against the models
named here. Every list the CLI reads page by page is printed as one API page holding all of it
(`whole_list`): the same keys as the API's own list answers, `has_more` false.
"""

from __future__ import annotations

from typing import Any

# command → (model in flowforge.api.models, or None) and what else to say
SHAPES: dict[str, tuple[str | None, str]] = {
    "cancel": ("RunDetail", "the cancelled run with its tasks"),
    "retry": ("RunRetried", "the run, and `cleared`: the tasks queued again"),
    "backfill": (
        "BackfillResult",
        "the ticks and how many runs were created; with `--wait`, plus `runs`: each created run at its end",
    ),
    "validate": (
        None,
        "a list, one object per file: `file`, `valid`, `dag_id`, `tasks` (count), `problems` "
        "(`field`, `line`, `column`, `message` each)",
    ),
    "submit": (
        None,
        "a list, one object per file as `validate` prints it, plus `submitted`: the API's "
        "`DagSubmitted` answer (null when nothing was stored because a file was invalid)",
    ),
    "trigger": (
        "TriggeredRun",
        "the new run; with `--wait`, instead the run at its end with its tasks, as `wait`",
    ),
    "wait": ("RunDetail", "the run at its end, with its tasks"),
    "dags": (
        "DagList",
        "every DAG, every page read; with `--stats`, each DAG also has `stats`: the API's `DagStats` "
        "answer for it, as `GET /api/v1/dags/{dag_id}/stats?runs=N` gives it",
    ),
    "runs": ("RunList", "one page of runs, newest first (`--limit`, `--offset`)"),
    "run": ("RunDetail", "the run with its tasks"),
    "logs": (
        "LogPage",
        "one JSON object per line, for each piece read; with `--follow`, only `run_id`, `task_id`, "
        "`attempt` and `text`",
    ),
    "status": ("Status", "counts of DAGs, runs, tasks and workers, the queue depth, readiness"),
    "workers": ("WorkerList", "every worker, every page read"),
    "pause": ("DagDetail", "the DAG"),
    "unpause": ("DagDetail", "the DAG"),
    "sync": (
        None,
        "`files`: one object per file as `submit` prints it; `deactivated`: the DAG ids deactivated by `--prune`",
    ),
    "activate": ("DagDetail", "the DAG"),
    "deactivate": ("DagDetail", "the DAG"),
    "test": (
        None,
        'one JSON object per line: `{"event": "output", "task_id", "attempt", "text"}`, '
        '`{"event": "task", "task_id", "state", "attempt", "record"}`, and last '
        '`{"event": "run", "run", "tasks"}`',
    ),
    "explain": ("TaskExplanation", "why the task is in its state"),
    "schedule": ("SchedulePreview", "the next ticks in the DAG's zone and in UTC"),
    "versions": ("DagVersionList", "every stored version, newest first, every page read"),
    "diff": (None, "`dag_id`, `from`, `to` (version numbers) and `diff` (the unified diff's text)"),
    "prune": (
        "PruneResult",
        "what was (with `--dry-run`: would be) deleted, over every request; `next` null",
    ),
}


def whole_list(key: str, items: list[Any], **more: Any) -> dict[str, Any]:
    """A list read page by page, in the shape of one API page holding all of it."""
    return {**more, key: items, "limit": len(items), "offset": 0, "has_more": False}


def describe(command: str) -> str | None:
    """The `--json` line of a command in docs/CLI.md; None for a command with no JSON output."""
    if command not in SHAPES:
        return None
    model_name, what = SHAPES[command]
    if model_name is None:
        return what[0].upper() + what[1:] + "."
    import flowforge.api.models as models

    keys = ", ".join(f"`{k}`" for k in getattr(models, model_name).model_fields)
    return f"The API's `{model_name}` answer ({what}): {keys}."
