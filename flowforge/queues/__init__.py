"""Dispatch: one interface (`Queue`), in-process now and Redis later, chosen by URL."""

from __future__ import annotations

from .base import Queue, TaskMessage


def open_queue(url: str) -> Queue:
    """Open the queue that `url` names: `memory://`."""
    if url.startswith("memory:"):
        from .memory import MemoryQueue

        return MemoryQueue()
    scheme = url.split(":", 1)[0]
    raise ValueError(f"unsupported queue URL scheme {scheme!r} in FLOWFORGE_QUEUE (expected memory://)")


__all__ = ["Queue", "TaskMessage", "open_queue"]
