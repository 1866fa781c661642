"""The `flowforge` command: `main()`, the console script's entry point, and `app` (the Typer app).

`flowforge --version` and `flowforge --help` are answered here without importing Typer, so that
they start in a few tens of milliseconds; every other command line goes to the Typer app in
`flowforge.cli.application`, imported only then, which loads only the named command's module.
`app` (every command) is loaded on first use of the name.
"""

from __future__ import annotations

import sys
from typing import Any

from flowforge import __version__

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        sys.stdout.write(f"flowforge {__version__}\n")
        return
    if argv == ["--help"]:
        from flowforge.cli.helptext import root_help

        sys.stdout.write(root_help())
        return
    from flowforge.cli.application import run

    run(argv)


def __getattr__(name: str) -> Any:
    if name == "app":
        from flowforge.cli.application import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
