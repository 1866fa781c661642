"""The in-process queue: a real backend for `flowforge up`, built on a deque and conditions."""

from __future__ import annotations

import threading
import time
from collections import deque

from flowforge.queues.base import TaskMessage


class MemoryQueue:
    """Thread-safe FIFO of task messages plus a scheduler doorbell, for one process."""

    def __init__(self) -> None:
        self._items: deque[TaskMessage] = deque()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._closed = False

    def put(self, messages: list[TaskMessage]) -> None:
        """Enqueue messages, in order."""
        if not messages:
            return
        with self._cond:
            self._items.extend(messages)
            self._cond.notify(len(messages))

    def get(self, timeout: float) -> TaskMessage | None:
        """Take the next message, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._items.popleft()

    def ack(self, message: TaskMessage) -> None:
        """Nothing to do: an in-process message cannot outlive its process."""

    def size(self) -> int:
        """Messages waiting to be taken."""
        with self._cond:
            return len(self._items)

    def release_consumer(self, consumer: str) -> int:
        """Nothing to give back: consumers share this process, so none dies alone."""
        return 0

    def wake_scheduler(self) -> None:
        """Ring the doorbell."""
        self._wake.set()

    def wait_for_wake(self, timeout: float) -> bool:
        """Wait for the doorbell and clear it."""
        woken = self._wake.wait(timeout)
        self._wake.clear()
        return woken

    def close(self) -> None:
        """Wake every waiter; later `get` calls return None at once when empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake.set()
