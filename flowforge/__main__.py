"""`python -m flowforge` runs the CLI."""

from __future__ import annotations

from flowforge.cli import main

main()
