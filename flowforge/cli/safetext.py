"""Text from tasks and DAG files shown safely on a terminal: control characters as visible escapes.

A DAG name, a task's error or its log may hold terminal escape sequences that would move the
cursor, retitle the window, rewrite the clipboard or hide text. Table cells show every control
character as an escape (`\\x1b`, `\\n`, `\\u202e`). A log sent to a terminal keeps its lines,
tabs and colours (SGR sequences such as `ESC[31m`, which can only restyle text) and shows every
other control character as an escape; a log sent to a pipe or a file is written as the task wrote it.
Both run in one pass over the text (linear in its size).
"""

from __future__ import annotations

import re

from flowforge.core.visible import MARKS, escape_char, visible

__all__ = ["SGR_RESET", "TerminalLog", "escape_char", "visible"]

# In a log: an SGR sequence (kept), CR LF (kept), any other control but LF and TAB (escaped).
_LOG_TOKEN = re.compile(rf"(\x1b\[[0-9;:]{{0,64}}m)|(\r\n)|([\x00-\x08\x0b-\x1f{MARKS}])")
# The end of a chunk that may be the start of a token finished by the next chunk.
_OPEN_TAIL = re.compile(r"(\x1b(\[[0-9;:]{0,64})?|\r)\Z")
SGR_RESET = "\x1b[0m"


class TerminalLog:
    """Makes a task's log safe for a terminal, chunk by chunk, without splitting a sequence across chunks.

    `feed(chunk)` returns what can be shown now, `finish()` the rest. `coloured` tells whether the
    log changed colours: then SGR_RESET after it keeps the shell prompt from being left coloured.
    """

    def __init__(self) -> None:
        self._held = ""
        self.coloured = False

    def _replace(self, m: re.Match[str]) -> str:
        if m.group(1):
            self.coloured = True
            return m.group(1)
        if m.group(2):
            return "\r\n"
        return escape_char(m.group(3))

    def feed(self, chunk: str) -> str:
        """The safe text of what has come so far; an unfinished sequence at the end waits for the next chunk."""
        text = self._held + chunk
        tail = _OPEN_TAIL.search(text)
        self._held = tail.group() if tail else ""
        if tail:
            text = text[: tail.start()]
        return _LOG_TOKEN.sub(self._replace, text)

    def finish(self) -> str:
        """What was held back (an unfinished sequence, a lone CR at the very end), escaped."""
        text = _LOG_TOKEN.sub(self._replace, self._held)
        self._held = ""
        return text
