"""Control characters made visible: the one rule the CLI and the TUI share for text from outside.

A DAG name, a task's error or its output may hold terminal control characters (clear the screen,
retitle the window) or Unicode marks that reorder or hide text. Shown as a name or a table cell,
each becomes an escape a reader can see: `\\n`, `\\x1b`, `\\u202e`. One regular-expression pass:
linear in the text.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode marks that reorder or hide text (bidi overrides,
# isolates, zero-width characters), as a character-class body for other patterns to build on.
MARKS = r"\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
_CONTROL = re.compile(rf"[\x00-\x1f{MARKS}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_char(ch: str) -> str:
    """One control character as a visible escape: `\\n`, `\\x1b`, `\\u202e`."""
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control character (newlines and tabs too) as a visible escape."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: escape_char(m.group()), text)
