"""An attempt's output on its way to the store: secrets masked, size capped, an outage waited out."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from flowforge.core.errors import Unavailable
from flowforge.core.secrets import LogMasker
from flowforge.store.base import Store

log = logging.getLogger("flowforge.worker")

# What an attempt's log keeps by default (settings: FLOWFORGE_MAX_LOG_BYTES); output past it is
# read, so that the task goes on, but not stored.
DEFAULT_MAX_LOG_BYTES = 50 * 1024 * 1024
# Task output held in memory while the store is unreachable; beyond this the oldest is dropped.
MAX_PENDING_LOG_CHARS = 4 * 1024 * 1024
# While the store is unreachable held output is retried at this pace (doubling).
RETRY_SECS, RETRY_MAX_SECS = 0.5, 10.0


def utf8_size(text: str) -> int:
    """The length of `text` in UTF-8 bytes (without encoding it when it is ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def truncation_note(dropped: int, max_bytes: int) -> str:
    """The line that ends a log cut at `max_bytes`."""
    return (
        f"[flowforge] log truncated: {dropped:,} more bytes of output were not stored "
        f"(an attempt's log keeps its first {max_bytes:,} bytes; FLOWFORGE_MAX_LOG_BYTES)\n"
    )


class LogBuffer:
    """Writes a task's output to the store in chunks, with the task's secret values masked.

    The first `max_bytes` bytes (UTF-8) of the masked output are stored; the rest is only
    counted, and `close` stores one line saying how much was dropped (`truncation_note`).
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        task_id: str,
        attempt: int,
        secrets: Iterable[str],
        max_bytes: int = DEFAULT_MAX_LOG_BYTES,
    ) -> None:
        self.store = store
        self.key = (run_id, task_id, attempt)
        self.masker = LogMasker(secrets)
        self.max_bytes = max_bytes
        self.kept = 0  # bytes stored, or held to be stored
        self.dropped = 0  # bytes of output past the cap
        self._ends_line = True  # whether what was kept ends with a newline (or is empty)
        self._pending = ""  # output not yet written because the store was unavailable

    def write(self, text: str) -> None:
        """Append one chunk (the executor already batches output)."""
        if self.dropped:  # past the cap: neither masked nor kept, only counted
            self.dropped += utf8_size(text)
            return
        self._append(self._cap(self.masker.feed(text)))

    def close(self) -> None:
        """Write what the masker held back, and what an outage held up (waiting for the store to return)."""
        text = self._cap(self.masker.flush())
        if self.dropped:
            text += ("" if self._ends_line else "\n") + truncation_note(self.dropped, self.max_bytes)
        self._append(text)
        delay = RETRY_SECS
        while self._pending:
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECS)
            self._append("")

    def _cap(self, text: str) -> str:
        """The part of `text` that fits under the cap; the rest is counted in `dropped`."""
        if not text:
            return text
        size = utf8_size(text)
        room = 0 if self.dropped else max(self.max_bytes - self.kept, 0)
        if size > room:
            data = text.encode("utf-8", "surrogatepass")
            text = data[:room].decode("utf-8", "ignore")  # no character cut in half
            size = utf8_size(text)
            self.dropped += len(data) - size
        self.kept += size
        if text:
            self._ends_line = text.endswith("\n")
        return text

    def _append(self, text: str) -> None:
        text = self._pending + text
        if not text:
            return
        try:
            self.store.append_log(*self.key, text)
            self._pending = ""
        except Unavailable as exc:
            if not self._pending:
                log.warning(
                    "could not store log output (%s); keeping it to write later",
                    exc,
                    extra={"run_id": self.key[0], "task_id": self.key[1], "attempt": self.key[2]},
                )
            # Kept, up to a bound, and written with the next chunk or on close.
            self._pending = text[-MAX_PENDING_LOG_CHARS:]
        except Exception:  # a log write must never kill the task's bookkeeping
            self._pending = ""
            log.exception(
                "could not store log chunk",
                extra={"run_id": self.key[0], "task_id": self.key[1], "attempt": self.key[2]},
            )
