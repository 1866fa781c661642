"""Text from outside the dashboard (names, run triggers, errors, task output) made safe to draw.

Anything a DAG file, an API caller or a task wrote can hold terminal control sequences (clear the
screen, set the window title, ring the bell) or Rich markup. Textual passes an ESC through to the
terminal, and parses markup in plain strings handed to most widgets. So a name is drawn as a
`Text` (never parsed as markup) with its control characters written out as visible escapes
(`\\x1b`, as the CLI writes them), and task output loses its escape sequences (colours, cursor
moves, titles) on the way into the log pane, its other control characters written out the same
way. Every pass is one regular-expression scan: linear in the text.
"""

from __future__ import annotations

import re

from rich.text import Text

from flowforge.core.visible import MARKS, escape_char, visible

__all__ = ["MAX_HELD_CHARS", "LogCleaner", "label", "visible"]

# In task output, newlines and tabs are text; carriage returns are taken as line ends below.
_LOG_CONTROL = re.compile(rf"[\x00-\x08\x0b-\x1f{MARKS}]")
# Escape sequences as terminals read them (ECMA-48): CSI (ESC [ … final byte), OSC (ESC ] … BEL
# or ESC \), other string commands (DCS, SOS, PM, APC: ESC P/X/^/_ … ESC \) and two-byte ESC x.
# A string command's body stops at the next ESC, so a scan never runs past one: linear.
_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[PX^_][^\x1b]*\x1b\\"
    r"|\x1b[ -/]*[0-~]"
)
# An escape sequence (or a CR before its LF) cut off at the end of a chunk: held back until the
# next chunk completes it.
_UNFINISHED = re.compile(r"(?:\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[PX^_][^\x1b]*|[ -/]*)?|\r)\Z")
MAX_HELD_CHARS = 512  # an unfinished sequence longer than this is no sequence: shown as text


def label(value: str, style: str = "") -> Text:
    """A name, id or message as text to draw: never read as markup, its control characters visible."""
    return Text(visible(value), style=style)


class LogCleaner:
    """Cleans one log as it arrives in chunks: escape sequences dropped, line ends made `\\n`.

    A sequence split between two chunks is held back (up to MAX_HELD_CHARS) until the next one.
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        """The part of the log up to `chunk`'s end that is ready to show, cleaned."""
        text = self._held + chunk
        self._held = ""
        cut = _UNFINISHED.search(text, max(0, len(text) - MAX_HELD_CHARS))
        if cut is not None:
            text, self._held = text[: cut.start()], text[cut.start() :]
        return self._clean(text)

    def flush(self) -> str:
        """What was held back, cleaned (the log ended: it will not be completed)."""
        text, self._held = self._held, ""
        return self._clean(text)

    @staticmethod
    def _clean(text: str) -> str:
        text = _SEQUENCE.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
        return _LOG_CONTROL.sub(lambda m: escape_char(m.group()), text)
