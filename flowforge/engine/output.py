"""Reading a task's output pipe: decoded text handed to a sink in batches of bounded size.

The pipe is waited on with `poll`, which, unlike `select`, takes a descriptor of any number: a
process holding more than 1,024 files (sockets of the API in `flowforge up`) reads its tasks'
output like any other. Reading goes on whatever the sink does with the text, so that a task never
blocks on a full pipe.
"""

from __future__ import annotations

import codecs
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import IO

log = logging.getLogger("flowforge.executor")

# Output is handed to the sink at least this often while a task is quiet but alive,
# so that a followed log shows a line soon after the task prints it.
FLUSH_INTERVAL_SECS = 0.5
# ... and as soon as this many characters wait, so that a fast task's output is never held whole.
FLUSH_CHARS = 1024 * 1024
READ_SIZE = 65536
_FLUSH_INTERVAL_MS = int(FLUSH_INTERVAL_SECS * 1000)
_READABLE = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


def _storable(text: str) -> str:
    """Text a store keeps as it is: NUL (which PostgreSQL text refuses) shown as U+FFFD, like invalid UTF-8."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class OutputPump:
    """Reads one pipe until EOF (or until told to stop) in a thread of its own, then closes it.

    Text is decoded as UTF-8, bytes that are not shown as U+FFFD, and handed to `sink` once
    FLUSH_CHARS characters wait or FLUSH_INTERVAL_SECS have passed, whichever comes first.
    """

    def __init__(self, pipe: IO[bytes], sink: Callable[[str], None], name: str) -> None:
        self.pipe = pipe
        self.fd = pipe.fileno()
        self.sink = sink
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def finish(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for EOF; then stop reading (within FLUSH_INTERVAL_SECS) and wait for that.

        EOF does not come while a process that left the task's group still holds the pipe: its
        further output is not the task's any more.
        """
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stopping.set()
            self._thread.join()

    def _run(self) -> None:
        try:
            self._read_all()
        finally:
            self.pipe.close()

    def _read_all(self) -> None:
        poller = select.poll()
        poller.register(self.fd, _READABLE)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending: list[str] = []
        size = 0
        last_flush = time.monotonic()
        while not self._stopping.is_set():
            if poller.poll(_FLUSH_INTERVAL_MS):
                chunk = os.read(self.fd, READ_SIZE)
                if not chunk:
                    break
                text = decoder.decode(chunk)
                if text:
                    pending.append(text)
                    size += len(text)
            if pending and (size >= FLUSH_CHARS or time.monotonic() - last_flush >= FLUSH_INTERVAL_SECS):
                self._hand("".join(pending))
                pending.clear()
                size = 0
                last_flush = time.monotonic()
        pending.append(decoder.decode(b"", final=True))
        self._hand("".join(pending))

    def _hand(self, text: str) -> None:
        """Give `text` to the sink; a sink that fails gets nothing more, but the pipe is still drained."""
        if not text:
            return
        try:
            self.sink(_storable(text))
        except Exception:
            log.exception("task output could not be handed on; the rest of it is discarded")
            self.sink = _discard


def _discard(text: str) -> None:
    """A sink that keeps nothing."""
