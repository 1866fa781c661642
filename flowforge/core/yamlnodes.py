"""Safe YAML reading that remembers where every value starts in the file.

We build the value tree straight from the parser's events instead of letting PyYAML compose
and construct it:
- nothing is ever constructed from a tag, so `!!python/object…` or `!custom` is only reported;
- anchors and aliases share one built node, and the *expanded* size is counted, so an alias
  bomb ("billion laughs") is rejected without being expanded;
- the tree is built with an explicit stack: the C composer recurses once per nesting level and
  crashes the interpreter (a segfault, not an exception) on ~100,000 nested `[`;
- it is faster than `yaml.compose`, because implicit tags are resolved with a lean lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    StreamEndEvent,
)
from yaml.resolver import Resolver

from flowforge.core.errors import Problem

# The C parser when libyaml is there (several times faster); the events are the same.
_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SCALAR, SEQ, MAP = "scalar", "seq", "map"
_STD = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP = (
    _STD + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)
_MERGE, _SEQ_TAG, _MAP_TAG = _STD + "merge", _STD + "seq", _STD + "map"
# Standard tags a DAG file has no use for: reported, never constructed.
_UNSUPPORTED_STD = {_STD + t for t in ("binary", "omap", "pairs", "set", "value", "yaml")}
_KNOWN_STD = {_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _MERGE, _SEQ_TAG, _MAP_TAG}

MAX_DEPTH = 64
MAX_EXPANDED_NODES = 1_000_000


@dataclass(slots=True, eq=False)
class YNode:
    """A YAML value and the 1-based line/column where it starts."""

    kind: str  # SCALAR, SEQ or MAP
    value: Any  # scalar: str/int/float/bool/None; SEQ: list[YNode]; MAP: dict[key, YNode]
    line: int
    column: int
    keys: dict[Any, YNode] | None = None  # MAP: each key's own node, to point at problems with keys
    size: int = 1  # nodes this value stands for once aliases are expanded
    merge: bool = False  # the `<<` merge key
    bad: bool = False  # already reported (a refused tag): checks of its meaning would only repeat that


class _Abort(Exception):
    """Reading stopped early; `problem` says why and where."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def show_tag(tag: str) -> str:
    """A tag as the user wrote it: `!!python/object` rather than `tag:yaml.org,2002:python/object`."""
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


@dataclass(slots=True)
class _Frame:
    """A sequence or mapping whose end event has not come yet."""

    node: YNode
    anchor: str | None
    pairs: list[tuple[YNode, YNode]] = field(default_factory=list)
    merges: list[YNode] = field(default_factory=list)
    key: YNode | None = None  # MAP: a key waiting for its value


class _Builder:
    """Turns the parser's event stream into a YNode tree, collecting non-fatal problems."""

    def __init__(self, max_nodes: int) -> None:
        self.problems: list[Problem] = []
        self.anchors: dict[str, YNode] = {}
        self.stack: list[_Frame] = []
        self.root: YNode | None = None
        self.expanded = 0
        self.max_nodes = max_nodes
        self.constructor = SafeConstructor()

    def path(self) -> str:
        """Dotted path of the value being read, e.g. `tasks[2].depends_on[0]`."""
        out = ""
        for f in self.stack:
            if f.node.kind == SEQ:
                out += f"[{len(f.node.value)}]"
            elif f.key is not None:
                out += f".{f.key.value}" if out else str(f.key.value)
        return out

    def problem(self, message: str, line: int, column: int, path: str | None = None) -> None:
        self.problems.append(Problem(message, self.path() if path is None else path, line, column))

    def count(self, n: int, line: int, column: int) -> None:
        self.expanded += n
        if self.expanded > self.max_nodes:
            raise _Abort(
                Problem(
                    f"the document expands to more than {self.max_nodes:,} values through "
                    "aliases (*name); this looks like an alias bomb and is rejected",
                    self.path(),
                    line,
                    column,
                )
            )

    def start_collection(self, ev: Any, is_map: bool, line: int, column: int) -> None:
        """A sequence or mapping begins: counted, depth-checked, and open until its end event."""
        self.count(1, line, column)
        if len(self.stack) >= MAX_DEPTH:
            raise _Abort(Problem(_too_deep(), self.path(), line, column))
        bad = self.check_tag(ev.tag, _MAP_TAG if is_map else _SEQ_TAG, line, column)
        node = YNode(MAP if is_map else SEQ, {} if is_map else [], line, column, bad=bad)
        self.stack.append(_Frame(node, ev.anchor))

    def alias(self, anchor: str, line: int, column: int) -> None:
        """`*name`: the anchored node again, counted at its expanded size."""
        target = self.anchors.get(anchor)
        if target is None:
            # Anchors are registered when their node ends, so this also catches an alias
            # inside the node it names (a recursive structure).
            raise _Abort(
                Problem(
                    f"the alias *{anchor} refers to no anchor &{anchor} defined before it "
                    "(or to a value that contains the alias itself)",
                    self.path(),
                    line,
                    column,
                )
            )
        self.count(target.size, line, column)
        self.add(target, None)

    def check_tag(self, tag: str | None, default: str, line: int, column: int) -> bool:
        """Report a tag a DAG file cannot use on this kind of value; True when one was reported."""
        if tag is None or tag == "!" or tag == default:
            return False
        if tag in _UNSUPPORTED_STD:
            self.problem(f"the YAML tag {show_tag(tag)} is not supported in a DAG file", line, column)
        elif tag not in _KNOWN_STD:  # `!!python/…` too: it only looks standard
            self.problem(
                f"the YAML tag {show_tag(tag)} is not allowed: a DAG file holds plain data only, "
                "so custom and language-specific tags are refused (nothing was run)",
                line,
                column,
            )
        else:
            what = {_STR: "a plain value", _SEQ_TAG: "a list", _MAP_TAG: "a mapping"}[default]
            self.problem(f"the YAML tag {show_tag(tag)} cannot be used on {what}", line, column)
        return True

    def scalar(self, ev: ScalarEvent, line: int, column: int) -> YNode:
        tag, text = ev.tag, ev.value
        if tag is None or tag == "!":
            tag = _resolve(text) if ev.implicit[0] else _STR
        value: Any = text
        bad = False
        if tag in (_STR, _MERGE, _TIMESTAMP):
            pass  # timestamps stay text: no DAG field is a date, and str(date) would differ
        elif tag == _NULL:
            value = None
        elif tag in (_INT, _FLOAT, _BOOL):
            fn = self.constructor.yaml_constructors[tag]
            try:
                value = fn(self.constructor, yaml.ScalarNode(tag, text))
            except (ValueError, KeyError, ConstructorError):
                self.problem(f"'{text}' cannot be read as {show_tag(tag)}", line, column)
                bad = True
        else:
            bad = self.check_tag(tag, _STR, line, column)
        return YNode(SCALAR, value, line, column, merge=tag == _MERGE, bad=bad)

    def add(self, node: YNode, anchor: str | None) -> None:
        """Attach a finished node to its parent (or make it the root)."""
        if anchor is not None:
            self.anchors[anchor] = node
        if not self.stack:
            self.root = node
            return
        f = self.stack[-1]
        if f.node.kind == SEQ:
            f.node.value.append(node)
            f.node.size += node.size
        elif f.key is None:
            if node.kind != SCALAR:
                self.problem(
                    "a mapping key must be a plain value, not a list or mapping", node.line, node.column
                )
            f.key = node
        else:
            if f.key.merge:
                f.merges.append(node)
            else:
                f.pairs.append((f.key, node))
            f.node.size += node.size + 1
            f.key = None

    def end_mapping(self, f: _Frame) -> None:
        values: dict[Any, YNode] = {}
        keys: dict[Any, YNode] = {}
        # `<<: *base` merges: earlier merged maps win over later ones, explicit keys over all.
        for m in f.merges:
            sources = m.value if m.kind == SEQ else [m]
            for src in reversed(sources):
                if src.kind != MAP:
                    self.problem(
                        "a merge key (<<) needs a mapping or a list of mappings", src.line, src.column
                    )
                    continue
                values.update(src.value)
                keys.update(src.keys or {})
        explicit: dict[Any, YNode] = {}
        for k, v in f.pairs:
            if k.kind != SCALAR:
                continue  # reported in add(); keeping it would only add an "unknown key" problem
            key = k.value
            if key in explicit:
                where = self.path()
                self.problem(
                    f"duplicate key '{key}' (first at line {explicit[key].line}); "
                    "YAML would silently keep only the last one",
                    k.line,
                    k.column,
                    f"{where}.{key}" if where else str(key),
                )
            explicit[key] = k
            values[key] = v
            keys[key] = k
        f.node.value, f.node.keys = values, keys


# YAML 1.1 words that PyYAML's SafeLoader reads as true/false/null: a dict lookup is much faster
# than its regexes for the many plain values (ids like `n0123`) that start with these letters.
_WORDS = {
    **dict.fromkeys(("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), _BOOL),
    **dict.fromkeys(("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), _BOOL),
    **dict.fromkeys(["~", "null", "Null", "NULL", ""], _NULL),
}
_WORD_STARTS = frozenset("yYnNtTfFoO~")


def _resolve(text: str) -> str:
    """The tag PyYAML's SafeLoader gives a plain (unquoted, untagged) scalar."""
    if not text or text[0] in _WORD_STARTS:
        return _WORDS.get(text, _STR)
    for tag, regexp in Resolver.yaml_implicit_resolvers.get(text[0], ()):
        if regexp.match(text):
            return str(tag)
    return _STR


def read_yaml(text: str, *, max_nodes: int = MAX_EXPANDED_NODES) -> tuple[YNode | None, list[Problem]]:
    """Parse one YAML document into a YNode tree; the root is None when reading had to stop."""
    b = _Builder(max_nodes)
    loader = _Loader(text)
    try:
        _build(loader, b)
    except yaml.MarkedYAMLError as e:
        b.problems.append(_syntax_problem(e))
        return None, b.problems
    except yaml.YAMLError as e:  # e.g. a control character the reader refuses, without a mark
        b.problems.append(Problem(f"YAML error: {e}"))
        return None, b.problems
    except _Abort as e:
        b.problems.append(e.problem)
        return None, b.problems
    finally:
        loader.dispose()
    return b.root, b.problems


def _build(loader: Any, b: _Builder) -> None:
    """Feed the parser's events to the builder until the stream ends (the hot loop of reading)."""
    while True:
        ev = loader.get_event()
        cls = type(ev)
        if cls is StreamEndEvent:
            return
        mark = ev.start_mark
        line, column = mark.line + 1, mark.column + 1
        if cls is ScalarEvent:
            # Plain values are bounded by the file size, so only aliases need the limit check.
            b.expanded += 1
            value = ev.value
            if ev.tag is None and (not ev.implicit[0] or _resolve(value) == _STR):
                b.add(YNode(SCALAR, value, line, column), ev.anchor)  # fast path: plain text
            else:
                b.add(b.scalar(ev, line, column), ev.anchor)
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            f = b.stack.pop()
            if cls is MappingEndEvent:
                b.end_mapping(f)
            b.add(f.node, f.anchor)
        elif isinstance(ev, CollectionStartEvent):
            b.start_collection(ev, cls is MappingStartEvent, line, column)
        elif cls is AliasEvent:
            b.alias(ev.anchor, line, column)
        elif cls is DocumentStartEvent and b.root is not None:
            message = "the file holds more than one YAML document (---); a DAG file holds one"
            raise _Abort(Problem(message, "", line, column))


def _syntax_problem(e: yaml.MarkedYAMLError) -> Problem:
    """The parser's own error as a located problem."""
    m = e.problem_mark or e.context_mark
    line, column = (m.line + 1, m.column + 1) if m else (None, None)
    what = e.problem or str(e)
    if "nesting depth" in what:
        # Newer PyYAML parsers stop deep nesting themselves, before our own check sees it:
        # the user gets the same message whichever parser is installed.
        return Problem(_too_deep(), "", line, column)
    if e.context:
        what = f"{what} ({e.context}"
        what += f" at line {e.context_mark.line + 1})" if e.context_mark else ")"
    return Problem(f"YAML syntax error: {what}", "", line, column)


def _too_deep() -> str:
    return f"values are nested more than {MAX_DEPTH} levels deep"
