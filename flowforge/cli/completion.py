"""Shell completion: `flowforge completion bash|zsh|fish` prints the script; DAG and run ids come from the API.

The shell runs `flowforge` with `_FLOWFORGE_COMPLETE` set (Typer's completion, see
`application.run`). Commands and options complete from the app itself; a DAG id or a run id from
the API when it answers within `ASK_SECS`, and from nothing otherwise, so a Tab never hangs on a
server that is down.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated, Any

import typer

from flowforge.cli import helptext

COMPLETE_VAR = "_FLOWFORGE_COMPLETE"
ASK_SECS = 0.3
RUNS_OFFERED = 100  # the newest runs; older ones are typed out


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command()(completion)


def completion(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.", show_default=False)],
) -> None:
    """Print the shell completion script: `source <(flowforge completion bash)`.

    For zsh, `source <(flowforge completion zsh)` after `compinit`; for fish,
    `flowforge completion fish | source`. DAG and run ids are completed from the API (--api-url or
    $FLOWFORGE_API_URL) when it answers within 0.3 s.
    """
    from typer._completion_shared import get_completion_script

    script = get_completion_script(prog_name="flowforge", complete_var=COMPLETE_VAR, shell=shell.value)
    typer.echo(script)


def prepare() -> None:
    """Before the app answers a completion request: Typer's completion classes for each shell."""
    from typer._completion_classes import completion_init

    completion_init()


def requested() -> bool:
    """This process was started by the shell to complete a command line."""
    return bool(os.environ.get(COMPLETE_VAR))


def dag_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    """The DAG ids starting with what is typed, from the API; none when it does not answer in time."""
    return _ask(ctx, lambda client: [d.id for d in client.list_dags()], incomplete)


def run_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    """The newest runs' ids starting with what is typed, from the API; none when it does not answer in time."""
    return _ask(ctx, lambda client: [r.run_id for r in client.list_runs(limit=RUNS_OFFERED).runs], incomplete)


def _ask(ctx: typer.Context, read: Any, incomplete: str) -> list[str]:
    from flowforge.client import ApiClient, ApiError, ApiUnreachable

    given = ctx.find_root().params
    url = given.get("api_url") or os.environ.get("FLOWFORGE_API_URL") or helptext.DEFAULT_API_URL
    token = given.get("token") or os.environ.get("FLOWFORGE_API_TOKEN")
    try:
        with ApiClient(url, token=token, timeout=ASK_SECS) as client:
            found: list[str] = read(client)
    except (ApiError, ApiUnreachable):
        return []
    return [i for i in found if i.startswith(incomplete)]
