"""Reading a task's output pipe: decoded text handed to a sink in batches of bounded size.

The thread that waits for the task reads its output itself, so that no thread is started per task:
with a pidfd (Linux 5.3 and later) one `poll` waits for output and for the process to end, and
without one the process is asked whether it has ended each time the wait comes back (at least
every CHECK_SECS). `poll`, unlike `select`, takes a descriptor of any number: a process holding
more than 1,024 files (sockets of the API in `flowforge up`) reads its tasks' output like any other.
"""

from __future__ import annotations

import codecs
import logging
import math
import os
import select
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
# Without a pidfd, how often a task whose pipe is still open is asked whether it has ended (a
# process that left its group may hold the pipe after the task's own process exited).
CHECK_SECS = 0.1
_READABLE = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


def _storable(text: str) -> str:
    """Text a store keeps as it is: NUL (which PostgreSQL text refuses) shown as U+FFFD, like invalid UTF-8."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def pidfd_of(pid: int) -> int | None:
    """A descriptor that becomes readable when process `pid` (a child not yet waited for) ends; None where none can be had."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        return None


def _ms(secs: float) -> int:
    return max(0, math.ceil(secs * 1000))


class OutputReader:
    """Reads one pipe, in the calling thread, until EOF or until told to stop; then closes it.

    Text is decoded as UTF-8, bytes that are not shown as U+FFFD, and handed to `sink` once
    FLUSH_CHARS characters wait or FLUSH_INTERVAL_SECS have passed, whichever comes first.
    `follow` reads while the task's process runs, `drain` what is left once it has ended.
    """

    def __init__(self, pipe: IO[bytes], sink: Callable[[str], None]) -> None:
        self.pipe = pipe
        self.fd = pipe.fileno()
        self.sink = sink
        self.eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []
        self._size = 0
        self._last_flush = time.monotonic()

    def follow(self, pidfd: int | None, ended: Callable[[], bool]) -> None:
        """Read until EOF or until the process has ended, whichever comes first.

        `pidfd` (`pidfd_of`) is waited on with the pipe; without one, `ended()` is asked.
        """
        poller = select.poll()
        poller.register(self.fd, _READABLE)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        wait_ms = _ms(FLUSH_INTERVAL_SECS if pidfd is not None else CHECK_SECS)
        while True:
            exited = False
            for fd, _ in poller.poll(wait_ms):
                if fd != self.fd:
                    exited = True
                elif not self._read():
                    self._end()  # what the task printed before closing its output is handed on now
                    return
            self._flush_if_due()
            if exited or (pidfd is None and ended()):
                return

    def drain(self, timeout: float) -> None:
        """Read on until EOF, for at most `timeout` seconds; hand on what is left and close the pipe.

        EOF does not come while a process that left the task's group still holds the pipe: its
        further output is not the task's any more.
        """
        try:
            deadline = time.monotonic() + timeout
            poller = select.poll()
            poller.register(self.fd, _READABLE)
            while not self.eof and (left := deadline - time.monotonic()) > 0:
                if poller.poll(_ms(min(left, FLUSH_INTERVAL_SECS))) and not self._read():
                    break
                self._flush_if_due()
            self._end()
        finally:
            self.pipe.close()

    def _read(self) -> bool:
        """Read one chunk into the pending text; False at EOF."""
        chunk = os.read(self.fd, READ_SIZE)
        if not chunk:
            self.eof = True
            return False
        text = self._decoder.decode(chunk)
        if text:
            self._pending.append(text)
            self._size += len(text)
        return True

    def _end(self) -> None:
        """Hand on every character still held (an incomplete one at the end shown as U+FFFD)."""
        self._pending.append(self._decoder.decode(b"", final=True))
        self._flush()

    def _flush_if_due(self) -> None:
        if self._pending and (
            self._size >= FLUSH_CHARS or time.monotonic() - self._last_flush >= FLUSH_INTERVAL_SECS
        ):
            self._flush()

    def _flush(self) -> None:
        text = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        self._last_flush = time.monotonic()
        self._hand(text)

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
