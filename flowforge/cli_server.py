"""`flowforge up`: the commands that start FlowForge's own processes (registered on the app by cli.py)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from . import __version__
from .cli_output import EXIT_BAD_INPUT, fail


def up(
    host: Annotated[str | None, typer.Option(help="Address to bind the API to (default: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port of the API (default: 8080).")] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Worker slots, i.e. tasks at once (default: CPU count)."),
    ] = None,
    examples: Annotated[
        bool, typer.Option("--examples/--no-examples", help="Also submit the example DAGs (examples/*.yaml).")
    ] = False,
    home: Annotated[
        Path | None, typer.Option(help="Data directory (default: $FLOWFORGE_HOME or ~/.flowforge).")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback --host without FLOWFORGE_API_TOKEN.")
    ] = False,
) -> None:
    """Start everything in one process: API, web page, scheduler and workers. Ctrl-C stops it."""
    from .services import run_all_in_one
    from .settings import Settings

    settings = Settings.from_env(home=home, host=host, port=port, concurrency=concurrency)
    if not _is_loopback(settings.host) and not settings.api_token and not insecure:
        fail(
            f"refusing to serve on {settings.host} without FLOWFORGE_API_TOKEN: anyone who can reach it "
            "could run shell commands. Set a token, or pass --insecure.",
            EXIT_BAD_INPUT,
        )
    paths = find_examples() if examples else []
    if examples and not paths:
        typer.echo("warning: no examples/*.yaml next to the package or in the current directory", err=True)
    typer.echo(
        f"FlowForge {__version__}: http://{settings.host}:{settings.port} "
        f"({settings.concurrency} worker slots, data in {settings.home}); Ctrl-C to stop",
        err=True,
    )
    run_all_in_one(settings, paths)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_examples() -> list[Path]:
    """The example DAG files: `examples/` next to the package (a checkout), else in the cwd."""
    for folder in (Path(__file__).resolve().parent.parent / "examples", Path.cwd() / "examples"):
        if folder.is_dir():
            return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    return []
