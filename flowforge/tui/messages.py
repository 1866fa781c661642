"""The messages background threads post to the dashboard: a fetched snapshot, a lost connection, a notice.

Threads post messages rather than calling into the app (`call_from_thread` blocks, and would hang
on an app that is closing).
"""

from __future__ import annotations

from textual.message import Message
from textual.notifications import SeverityLevel

from flowforge.tui.feed import Snapshot


class SnapshotReady(Message):
    """A fetch finished."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class ConnectionLost(Message):
    """The API did not answer; the next try comes in `retry_in` seconds."""

    def __init__(self, reason: str, retry_in: float) -> None:
        super().__init__()
        self.reason = reason
        self.retry_in = retry_in


class Notice(Message):
    """A line for the user from a background request."""

    def __init__(self, text: str, severity: SeverityLevel = "information") -> None:
        super().__init__()
        self.text = text
        self.severity = severity
