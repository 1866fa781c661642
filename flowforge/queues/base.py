"""The Queue protocol: hands task messages to workers and wakes the scheduler.

The queue only dispatches. The store stays the source of truth: a lost message delays a
task (the scheduler pushes it again), a duplicate one is refused by the store's claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TaskMessage:
    """Run this attempt of this task instance."""

    run_id: str
    task_id: str
    attempt: int

    def encode(self) -> str:
        """Wire form: `run_id task_id attempt` (ids never contain spaces)."""
        return f"{self.run_id} {self.task_id} {self.attempt}"

    @classmethod
    def decode(cls, raw: str) -> TaskMessage:
        """Inverse of `encode`."""
        run_id, task_id, attempt = raw.split(" ")
        return cls(run_id, task_id, int(attempt))


class Queue(Protocol):
    """Task dispatch plus a doorbell for the scheduler."""

    def put(self, messages: list[TaskMessage]) -> None:
        """Enqueue messages, in order."""
        ...

    def get(self, timeout: float) -> TaskMessage | None:
        """Take the next message, waiting up to `timeout` seconds; None when none came."""
        ...

    def ack(self, message: TaskMessage) -> None:
        """The message has been handled (claimed or refused); forget it."""
        ...

    def size(self) -> int:
        """Messages waiting to be taken."""
        ...

    def release_consumer(self, consumer: str) -> int:
        """Give back the messages `consumer` (a dead worker's id) took but never acked; returns how many."""
        ...

    def wake_scheduler(self) -> None:
        """Tell the scheduler something changed (a task finished, a run was triggered)."""
        ...

    def wait_for_wake(self, timeout: float) -> bool:
        """Block until woken or `timeout` passes; True when woken. Consumes pending wake-ups."""
        ...

    def close(self) -> None:
        """Release resources; blocked `get` calls return None."""
        ...
