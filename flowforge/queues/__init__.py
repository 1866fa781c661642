"""Dispatch: one interface (`Queue`), in-process or Redis, chosen by URL."""

from __future__ import annotations

from flowforge.queues.base import Queue, TaskMessage


def open_queue(url: str, *, consumer: str | None = None) -> Queue:
    """Open the queue that `url` names: `memory://` or `redis://host:6379/0?prefix=flowforge`.

    `consumer` names this process's share of in-flight messages (a worker passes its worker id,
    so the scheduler can give back what a dead worker took). Raises ValueError for a bad URL and
    core.errors.Unavailable when Redis cannot be reached.
    """
    if url.startswith("memory:"):
        from flowforge.queues.memory import MemoryQueue

        return MemoryQueue()
    if url.startswith(("redis:", "rediss:")):
        # Imported here: redis-py is needed only by deployments that use Redis.
        from flowforge.queues.redis import RedisQueue

        return RedisQueue(url, consumer=consumer)
    scheme = url.split(":", 1)[0]
    raise ValueError(
        f"unsupported queue URL scheme {scheme!r} in FLOWFORGE_QUEUE (expected memory:// or redis://HOST:PORT/DB)"
    )


__all__ = ["Queue", "TaskMessage", "open_queue"]
