"""The Services container: the settings, store and queue every role is built from.

`build_services` opens them from Settings; the processes that use them are started by
`flowforge.roles`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowforge.core.errors import Unavailable
from flowforge.queues import Queue, check_queue_url, open_queue
from flowforge.settings import Settings, db_pool_size, redact_url
from flowforge.store import Store, open_store
from flowforge.store.schema import SchemaTooNew


class StreamSlots:
    """How many live streams (event streams, followed logs) the API holds open at once, at most."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take a slot for a new stream; False when every slot is taken."""
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        """A stream has ended."""
        with self._lock:
            self.open -= 1


@dataclass
class Services:
    """The shared parts every role is built from."""

    settings: Settings
    store: Store
    queue: Queue
    # Set when the process begins to shut down: live streams end instead of holding it up.
    stopping: threading.Event = field(default_factory=threading.Event)
    streams: StreamSlots = field(init=False)

    def __post_init__(self) -> None:
        self.streams = StreamSlots(self.settings.max_streams)

    def close(self) -> None:
        """Close the queue, then the store."""
        self.stopping.set()
        self.queue.close()
        self.store.close()


class StartupError(Exception):
    """A role cannot start: one line naming the setting and what was tried, and the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2: the setting is wrong; 3: the service is unreachable


def _open(setting: str, url: str, opener: Callable[[], Any]) -> Any:
    """Run `opener`, turning a bad URL or an unreachable service into a StartupError about `setting`.

    The whole line is redacted: the reason may quote part of the URL (a DSN's `password=…`).
    """
    try:
        return opener()
    except (ValueError, SchemaTooNew) as exc:
        raise StartupError(redact_url(f"{setting}={url}: {exc}"), 2) from None
    except Unavailable as exc:
        raise StartupError(redact_url(f"{setting}={url}: {exc}"), 3) from None


def build_services(settings: Settings, *, consumer: str | None = None, role: str = "up") -> Services:
    """Open the store (migrating it) and the queue that the settings name; StartupError when one fails.

    `consumer` names this process's in-flight queue messages: a worker passes its worker id.
    `role` (api, scheduler, worker, up) sizes the store's connection pool and names its connections.
    """
    if settings.db_url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    pool_size, name = db_pool_size(settings, role), f"flowforge-{role}"
    # A bad queue URL (or Redis without its extra) is said before the store is opened and migrated.
    _open("FLOWFORGE_QUEUE", settings.queue_url, lambda: check_queue_url(settings.queue_url))
    store = _open(
        "FLOWFORGE_DB",
        settings.db_url,
        lambda: open_store(settings.db_url, pool_size=pool_size, application_name=name),
    )
    try:
        queue = _open(
            "FLOWFORGE_QUEUE", settings.queue_url, lambda: open_queue(settings.queue_url, consumer=consumer)
        )
    except BaseException:
        store.close()
        raise
    return Services(settings=settings, store=store, queue=queue)
