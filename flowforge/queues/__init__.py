"""Dispatch: one interface (`Queue`), in-process or Redis, chosen by URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowforge.queues.base import Queue, TaskMessage

if TYPE_CHECKING:
    from flowforge.queues.redis import RedisQueue


def check_queue_url(url: str) -> None:
    """ValueError when `url` names no queue FlowForge has, or Redis without the `redis` extra.

    Connects to nothing, so a process can say what is wrong before it opens anything else.
    """
    if url.startswith("memory:"):
        return
    if url.startswith(("redis:", "rediss:")):
        _redis_queue()
        return
    scheme = url.split(":", 1)[0]
    raise ValueError(
        f"unsupported queue URL scheme {scheme!r} in FLOWFORGE_QUEUE (expected memory:// or redis://HOST:PORT/DB)"
    )


def open_queue(url: str, *, consumer: str | None = None) -> Queue:
    """Open the queue that `url` names: `memory://` or `redis://host:6379/0?prefix=flowforge`.

    `consumer` names this process's share of in-flight messages (a worker passes its worker id,
    so the scheduler can give back what a dead worker took). Raises ValueError as check_queue_url
    does, and core.errors.Unavailable when Redis cannot be reached.
    """
    check_queue_url(url)
    if url.startswith("memory:"):
        from flowforge.queues.memory import MemoryQueue

        return MemoryQueue()
    return _redis_queue()(url, consumer=consumer)


def _redis_queue() -> type[RedisQueue]:
    # Imported here: redis-py comes with the `redis` extra, needed only by deployments on Redis.
    try:
        from flowforge.queues.redis import RedisQueue
    except ImportError as exc:
        raise ValueError(f"Redis needs the redis extra: pip install 'flowforge[redis]' ({exc})") from None
    return RedisQueue


__all__ = ["Queue", "TaskMessage", "check_queue_url", "open_queue"]
