"""A DAG file's YAML source with its secrets masked, whatever YAML form they are written in.

The parser, not a pattern over lines, says which values are secret: the value of every key named
like a secret (`secrets.is_secret_key`), at any depth, written plain, quoted, folded (`>-`), on the
next line, as `? KEY : value`, in a JSON-style flow mapping, or as an alias of a value anchored
elsewhere (then the anchored value is masked where it is written). Each such value's source text
is replaced by `'***'`, and every other literal occurrence of a secret value of
`MIN_LOG_SECRET_LEN` characters or more (in a command, a comment) by `***`. One pass of the
parser and one of `textsearch`: linear in the source, whatever it holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    ScalarEvent,
    StreamEndEvent,
)

from flowforge.core.secrets import MASK, MIN_LOG_SECRET_LEN, SECRET_KEY_WORDS, is_secret_key
from flowforge.core.textsearch import patterns_of, replace_regions
from flowforge.core.yamlnodes import Loader

# Shown instead of a source the parser cannot read, which could hide a secret anywhere.
UNREADABLE = "# the source is not shown: it could not be read to mask its secrets\n"
_QUOTED_MASK = f"'{MASK}'"
# Cheap first look: a key can only be named like a secret if these words are in the text, or if
# an escape (`"DB_P\x41SSWORD"`) spells one.
_MAY_HOLD = re.compile(rf"{SECRET_KEY_WORDS}|\\", re.IGNORECASE)
# `&anchor` and `!tag` written before a value: kept, so the masked source still reads the same.
_PROPERTIES = re.compile(r"(?:[&!]\S*\s+)*")


@dataclass(slots=True)
class _Level:
    """A mapping or sequence being read: whether its values are secret, and where its key stands."""

    is_map: bool
    secret: bool  # under a secret-named key: everything inside is secret
    as_key: bool  # it is itself a mapping key (`? [a, b] : v`)
    start: int
    anchor: str | None
    at_key: bool = True  # mapping: the next node is a key
    key_secret: bool = False  # mapping: the key just read is named like a secret


@dataclass
class _Found:
    """What the pass over the events found."""

    spans: list[tuple[int, int]] = field(default_factory=list)  # source text of secret values
    values: set[str] = field(default_factory=set)  # secret scalar values, to find elsewhere
    anchors: dict[str, tuple[int, int, str | None]] = field(default_factory=dict)  # name -> span, scalar


def mask_source(source: str) -> str:
    """The YAML source with every secret value replaced (see the module's docstring)."""
    if not _MAY_HOLD.search(source):
        return source
    try:
        found = _find(source)
    except yaml.YAMLError:
        return UNREADABLE
    if not found.spans and not found.values:
        return source
    edits = [(*_value_part(source, a, b), _QUOTED_MASK) for a, b in found.spans]
    literal = patterns_of(v for v in found.values if len(v) >= MIN_LOG_SECRET_LEN)
    edits += [(a, b, MASK) for a, b in literal.regions(source)]
    return replace_regions(source, _disjoint(edits))


def _value_part(source: str, start: int, end: int) -> tuple[int, int]:
    """A value's span without the anchor or tag before it and the line breaks after it."""
    m = _PROPERTIES.match(source, start, end)
    start = m.end() if m else start
    while end > start and source[end - 1] in " \t\r\n":
        end -= 1
    return start, end


def _disjoint(edits: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Edits sorted and merged where they overlap; a merge that held a whole value stays quoted."""
    out: list[tuple[int, int, str]] = []
    for start, end, text in sorted(edits):
        if out and start < out[-1][1]:
            s0, e0, t0 = out.pop()
            end, text = max(end, e0), _QUOTED_MASK if _QUOTED_MASK in (t0, text) else MASK
            start = s0
        out.append((start, end, text))
    return out


def _find(source: str) -> _Found:
    """Walk the parser's events, noting the secret values and where their text is."""
    found = _Found()
    stack: list[_Level] = []
    loader = Loader(source)
    try:
        while True:
            ev = loader.get_event()
            if isinstance(ev, (ScalarEvent, AliasEvent, CollectionStartEvent)):
                _node(ev, stack, found)
            elif isinstance(ev, CollectionEndEvent):
                level = stack.pop()
                _ended(level, ev.end_mark.index, found)
                if stack:
                    _after(stack[-1], level.as_key, secret_key=False)
            elif isinstance(ev, StreamEndEvent):
                return found
    finally:
        loader.dispose()


def _node(ev: Any, stack: list[_Level], found: _Found) -> None:
    """A scalar, an alias, or the start of a collection, as a key or as a value."""
    parent = stack[-1] if stack else None
    is_key = parent is not None and parent.is_map and parent.at_key
    if parent is None:
        secret = False
    else:  # inside a secret value, or the value of a secret-named key
        secret = parent.secret or (parent.is_map and not is_key and parent.key_secret)
    start, end = ev.start_mark.index, ev.end_mark.index
    if isinstance(ev, CollectionStartEvent):
        stack.append(_Level(isinstance(ev, MappingStartEvent), secret, is_key, start, ev.anchor))
        return  # its parent moves on when it ends
    if isinstance(ev, AliasEvent):
        span = found.anchors.get(ev.anchor)
        text = span[2] if span else None
        if secret and span:
            found.spans.append((span[0], span[1]))
            if text is not None:
                found.values.add(text)
    else:
        text = ev.value
        if ev.anchor is not None:
            found.anchors[ev.anchor] = (start, end, text)
        if secret:
            found.spans.append((start, end))
            found.values.add(text)
    if parent is not None:
        _after(parent, is_key, secret_key=is_key and text is not None and is_secret_key(text))


def _ended(level: _Level, end: int, found: _Found) -> None:
    """A collection ended: a secret one is masked whole."""
    if level.anchor is not None:
        found.anchors[level.anchor] = (level.start, end, None)
    if level.secret:
        found.spans.append((level.start, end))


def _after(parent: _Level, was_key: bool, *, secret_key: bool) -> None:
    """A mapping's next node is a value after a key, and a key after a value."""
    if parent.is_map:
        parent.at_key = not was_key
        parent.key_secret = secret_key
