"""The terminal dashboard (`flowforge tui`): a Textual app over the REST API."""

from flowforge.tui.app import FlowForgeApp, run_tui

__all__ = ["FlowForgeApp", "run_tui"]
