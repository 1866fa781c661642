"""The terminal dashboard (`flowforge tui`): a Textual app over the REST API."""

from .app import FlowForgeApp, run_tui

__all__ = ["FlowForgeApp", "run_tui"]
