"""Following one run's changes through the API's event stream, in a background thread."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from flowforge.client.errors import ApiError, ApiUnreachable

if TYPE_CHECKING:
    from flowforge.client import ApiClient


class ChangeWatcher:
    """Signals each change of one run, from the events stream in a background thread.

    `wait(timeout)` returns True when something changed since the last call. A lost stream (the
    API restarting) is reconnected with backoff and resumed after the last event seen, and counts
    as a change (anything may have happened meanwhile). When the API refuses the stream (an
    older server, a proxy that buffers), `live` turns False and callers poll.
    """

    RETRY_FIRST_SECS, RETRY_MAX_SECS = 0.2, 5.0

    def __init__(self, client: ApiClient, run_id: str) -> None:
        self._changed = threading.Event()
        self._stop = threading.Event()
        self.live = True
        # A client of its own: the stream holds a connection for as long as it runs.
        self._client = type(client)(client.base_url, token=client.token)
        self._thread = threading.Thread(target=self._listen, args=(run_id,), name="events", daemon=True)
        self._thread.start()

    def _listen(self, run_id: str) -> None:
        after: int | None = None  # the last event seen: a new stream resumes after it
        delay = self.RETRY_FIRST_SECS
        while not self._stop.is_set():
            try:
                for event in self._client.events(run_id=run_id, after=after):
                    after, delay = int(event.get("id", after or 0)), self.RETRY_FIRST_SECS
                    self._changed.set()
                    if self._stop.is_set():
                        return
            except (ApiUnreachable, ApiError) as exc:
                # Refused outright (an older server, a proxy): poll instead. Away or busy: try again.
                if isinstance(exc, ApiError) and exc.status not in (502, 503, 504):
                    self.live = False
                    self._changed.set()
                    return
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.RETRY_MAX_SECS)
            except Exception:  # not an events stream, or the client closed under it by close()
                self.live = self._stop.is_set()
                self._changed.set()
                return
            self._changed.set()  # the stream ended: look again, and reconnect after a breath
            if self._stop.wait(self.RETRY_FIRST_SECS):
                return

    def wait(self, timeout: float) -> bool:
        """Block until a change or `timeout`; True when there was a change."""
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed

    def close(self) -> None:
        """Stop listening (the thread ends with its stream)."""
        self._stop.set()
        self._client.close()
