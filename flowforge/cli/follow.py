"""Reading task logs: page by page or followed live, the tail of a log, and writing a log to stdout.

To a pipe or a file a log is written exactly as the task wrote it (a user piping logs wants
them as written); to a terminal through `safetext.TerminalLog` (colours kept, every other
control character shown as an escape). With timestamps, each line starts with the time this
command received it: FlowForge keeps no write time per log line.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowforge.cli.render import is_tty
from flowforge.cli.safetext import SGR_RESET, TerminalLog, visible
from flowforge.cli.times import Clock
from flowforge.client import ApiClient
from flowforge.core.model import TASK_TERMINAL

if TYPE_CHECKING:
    from flowforge.api.models import LogPage

FOLLOW_POLL_SECS = 0.5
TAIL_LINE_CHARS = 10_000  # a longer line in a tail shows its end only


@dataclass(frozen=True)
class LogChunk:
    """New text of a task's log: a page read at a cursor (`page`), or text streamed as it is written."""

    run_id: str
    task_id: str
    attempt: int
    text: str
    page: LogPage | None = None
    received: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """What `--json` prints: the API's log answer, or the streamed text with where it belongs."""
        if self.page is not None:
            return self.page.model_dump(mode="json")
        return {"run_id": self.run_id, "task_id": self.task_id, "attempt": self.attempt, "text": self.text}


def log_chunks(
    client: ApiClient,
    run_id: str,
    task_id: str,
    attempt: int | None = None,
    *,
    follow: bool = False,
    poll: float = FOLLOW_POLL_SECS,
    on_new_attempt: Callable[[int], None] | None = None,
) -> Iterator[LogChunk]:
    """Yield a task's log in pieces with text in them, reading on with the cursor.

    Without `follow`, stops when nothing more is written now. With `follow`, stops when the
    attempt is done; when no attempt was given it follows the task's retries on to the last one.
    """
    cursor = 0
    pinned = attempt
    streamed: int | None = None  # an attempt already followed to its end
    while True:
        done = True  # an attempt followed to its end has nothing more to read
        if pinned is None or pinned != streamed:
            page = client.logs(run_id, task_id, attempt=pinned, after=cursor)
            if pinned is None and page.attempt > 0:
                pinned = page.attempt  # a cursor belongs to one attempt: pin it before reading on
            cursor, done = page.cursor, page.done
            if page.text:
                yield LogChunk(run_id, task_id, page.attempt, page.text, page, time.time())
                continue
        if not follow:
            return
        if pinned is not None and not done:
            # The server streams the attempt's log as it is written, until the attempt ends.
            for text in client.follow_log(run_id, task_id, pinned, after=cursor):
                yield LogChunk(run_id, task_id, pinned, text, received=time.time())
            done, streamed = True, pinned
        if done:
            if attempt is not None:
                return
            task = client.get_task(run_id, task_id)
            if pinned is not None and task.attempt > pinned:
                pinned, cursor = task.attempt, 0
                if on_new_attempt:
                    on_new_attempt(pinned)
                continue
            if task.state in TASK_TERMINAL:
                return
        time.sleep(poll)


def log_tail(client: ApiClient, run_id: str, task_id: str, lines: int = 20) -> list[str]:
    """The last `lines` lines of a task's latest attempt (memory bounded by `lines`, not the log)."""
    tail: deque[str] = deque(maxlen=lines)
    partial = ""
    for chunk in log_chunks(client, run_id, task_id):
        text = partial + chunk.text
        *complete, partial = text.split("\n")
        tail.extend(line[-TAIL_LINE_CHARS:] for line in complete[-lines:])
        partial = partial[-TAIL_LINE_CHARS:]
    if partial:
        tail.append(partial)
    return list(tail)


class LogOutput:
    """Writes log text to stdout: as written to a pipe or file, made safe for a terminal.

    With a `clock`, each line starts with the time its text was received (ISO 8601).
    """

    def __init__(self, clock: Clock | None = None, terminal: bool | None = None) -> None:
        self.terminal = TerminalLog() if (is_tty() if terminal is None else terminal) else None
        self.clock = clock
        self.line_start = True

    def write(self, text: str, received: float | None = None) -> None:
        """Write a piece of a log."""
        if self.terminal is not None:
            text = self.terminal.feed(text)
        self._emit(text, received)

    def _emit(self, text: str, received: float | None) -> None:
        if not text:
            return
        if self.clock is not None:
            text = self._stamped(text, f"{self.clock.stamp(received or time.time())} ")
        else:
            self.line_start = text.endswith("\n")
        sys.stdout.write(text)
        sys.stdout.flush()

    def _stamped(self, text: str, prefix: str) -> str:
        out = []
        pieces = text.split("\n")
        for piece in pieces[:-1]:
            out.append((prefix if self.line_start else "") + piece + "\n")
            self.line_start = True
        if pieces[-1]:
            out.append((prefix if self.line_start else "") + pieces[-1])
            self.line_start = False
        return "".join(out)

    def end(self) -> None:
        """The end of one log: what the terminal filter held back, a newline if the log had none,
        and a colour reset on a terminal when the log changed colours."""
        terminal = self.terminal
        if terminal is not None:
            self._emit(terminal.finish(), None)
        if not self.line_start:
            sys.stdout.write("\n")
            self.line_start = True
        if terminal is not None and terminal.coloured:
            sys.stdout.write(SGR_RESET)
            self.terminal = TerminalLog()
        sys.stdout.flush()

    def heading(self, text: str) -> None:
        """A line of FlowForge's own between logs (`==> task (attempt 1, failed) <==`)."""
        self.end()
        sys.stdout.write(visible(text) + "\n")
        sys.stdout.flush()
