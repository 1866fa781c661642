"""Safe YAML reading that remembers where every value starts in the file.

We build the value tree straight from the parser's events instead of letting PyYAML compose
and construct it:
- nothing is ever constructed from a tag, so `!!python/object…` or `!custom` is only reported;
- anchors and aliases share one built node, and the *expanded* size is counted (values and bytes),
  so an alias bomb ("billion laughs"), or a few aliases of one large value, is rejected without
  being expanded;
- a scalar read as a number, true/false or null keeps the text it was written as (`YNode.text`),
  and mapping keys are always that text: `on:` is the key 'on', not True;
- the tree is built with an explicit stack: the C composer recurses once per nesting level and
  crashes the interpreter (a segfault, not an exception) on ~100,000 nested `[`;
- it is faster than `yaml.compose`, because implicit tags are resolved with a lean lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

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

from flowforge.core.errors import Problem, Problems, shown
from flowforge.core.yamltags import (
    BOOL,
    FLOAT,
    INT,
    KNOWN_STD,
    MAP_TAG,
    MAX_NUMBER_CHARS,
    MERGE,
    NULL,
    SEQ_TAG,
    STR,
    TIMESTAMP,
    UNSUPPORTED_STD,
    resolve,
    show_tag,
)

# The C parser when libyaml is there (several times faster); the events are the same.
Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

SCALAR, SEQ, MAP = "scalar", "seq", "map"

MAX_DEPTH = 64
MAX_EXPANDED_NODES = 1_000_000
# The document with every alias written out: 4 MiB, four times the file limit, so anchors may
# share a block of defaults over thousands of tasks, but cannot turn a small file into a huge DAG.
MAX_EXPANDED_BYTES = 4 * 1_048_576


@dataclass(slots=True, eq=False)
class YNode:
    """A YAML value and the 1-based line/column where it starts."""

    kind: str  # SCALAR, SEQ or MAP
    value: Any  # scalar: str/int/float/bool/None; SEQ: list[YNode]; MAP: dict[key, YNode]
    line: int
    column: int
    text: str | None = None  # a scalar read as a number, bool or null: the text as written
    keys: dict[Any, YNode] | None = None  # MAP: each key's own node, to point at problems with keys
    size: int = 1  # nodes this value stands for once aliases are expanded
    merge: bool = False  # the `<<` merge key
    bad: bool = False  # already reported (a refused tag): checks of its meaning would only repeat that


class _Abort(Exception):
    """Reading stopped early; `problem` says why and where."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(slots=True)
class _Frame:
    """A sequence or mapping whose end event has not come yet."""

    node: YNode
    anchor: str | None
    start: int = 0  # character index where the collection starts in the text
    aliased: int = 0  # bytes added by aliases before it started
    pairs: list[tuple[YNode, YNode]] = field(default_factory=list)
    merges: list[YNode] = field(default_factory=list)
    key: YNode | None = None  # MAP: a key waiting for its value


class _Builder:
    """Turns the parser's event stream into a YNode tree, collecting non-fatal problems."""

    def __init__(self, text: str, problems: Problems, max_nodes: int, max_bytes: int) -> None:
        self.text = text
        self.problems = problems
        self.anchors: dict[str, YNode] = {}
        self.anchor_bytes: dict[str, int] = {}  # the expanded size of each anchored value
        self.stack: list[_Frame] = []
        self.root: YNode | None = None
        self.expanded = 0
        self.max_nodes = max_nodes
        # Bytes of the document with its aliases written out: the text, plus each alias's value.
        self.size = len(text.encode("utf-8", "surrogatepass"))
        self.aliased = 0
        self.max_bytes = max_bytes
        self.constructor = SafeConstructor()

    def path(self) -> str:
        """Dotted path of the value being read, e.g. `tasks[2].depends_on[0]`."""
        out = ""
        for f in self.stack:
            if f.node.kind == SEQ:
                out += f"[{len(f.node.value)}]"
            elif f.key is not None:
                key = shown(_key_of(f.key))
                out += f".{key}" if out else key
        return out

    def problem(self, message: str, line: int, column: int, path: str | None = None) -> None:
        self.problems.append(Problem(message, self.path() if path is None else path, line, column))

    def abort(self, message: str, line: int, column: int) -> NoReturn:
        """Stop reading: `message` is the one problem to report, at the value being read."""
        raise _Abort(Problem(message, self.path(), line, column))

    def count(self, n: int, line: int, column: int) -> None:
        self.expanded += n
        if self.expanded > self.max_nodes:
            self.abort(
                f"the document expands to more than {self.max_nodes:,} values through "
                "aliases (*name); this looks like an alias bomb and is rejected",
                line,
                column,
            )

    def start_collection(self, ev: Any, is_map: bool, line: int, column: int) -> None:
        """A sequence or mapping begins: counted, depth-checked, and open until its end event."""
        self.count(1, line, column)
        if len(self.stack) >= MAX_DEPTH:
            self.abort(_too_deep(), line, column)
        bad = self.check_tag(ev.tag, MAP_TAG if is_map else SEQ_TAG, line, column)
        node = YNode(MAP if is_map else SEQ, {} if is_map else [], line, column, bad=bad)
        self.stack.append(_Frame(node, ev.anchor, ev.start_mark.index, self.aliased))

    def anchored(self, anchor: str, start: int, end: int, aliased_before: int) -> None:
        """Remember what an alias of `anchor` adds: its text, with the aliases inside it expanded."""
        span = self.text[start:end]
        size = len(span) if span.isascii() else len(span.encode("utf-8", "surrogatepass"))
        self.anchor_bytes[anchor] = size + self.aliased - aliased_before

    def alias(self, anchor: str, line: int, column: int) -> None:
        """`*name`: the anchored node again, counted at its expanded size."""
        target = self.anchors.get(anchor)
        if target is None:
            # Anchors are registered when their node ends, so this also catches an alias
            # inside the node it names (a recursive structure).
            self.abort(
                f"the alias *{shown(anchor)} refers to no anchor &{shown(anchor)} defined before it "
                "(or to a value that contains the alias itself)",
                line,
                column,
            )
        self.count(target.size, line, column)
        self.aliased += self.anchor_bytes[anchor]
        if self.size + self.aliased > self.max_bytes:
            self.abort(
                f"with its aliases (*name) written out the document would be more than "
                f"{self.max_bytes:,} bytes; the alias *{shown(anchor)} is where it crosses "
                "the limit (write the values out, or share less)",
                line,
                column,
            )
        f = self.stack[-1] if self.stack else None
        if f is not None and f.node.kind == MAP and f.key is None and target.kind == SCALAR:
            # A key is reported where the alias stands (a duplicate key, say), not at its anchor.
            target = replace(target, line=line, column=column)
        self.add(target, None)

    def check_tag(self, tag: str | None, default: str, line: int, column: int) -> bool:
        """Report a tag a DAG file cannot use on this kind of value; True when one was reported."""
        if tag is None or tag == "!" or tag == default:
            return False
        if tag in UNSUPPORTED_STD:
            self.problem(f"the YAML tag {show_tag(tag)} is not supported in a DAG file", line, column)
        elif tag not in KNOWN_STD:  # `!!python/…` too: it only looks standard
            self.problem(
                f"the YAML tag {show_tag(tag)} is not allowed: a DAG file holds plain data only, "
                "so custom and language-specific tags are refused (nothing was run)",
                line,
                column,
            )
        else:
            what = {STR: "a plain value", SEQ_TAG: "a list", MAP_TAG: "a mapping"}[default]
            self.problem(f"the YAML tag {show_tag(tag)} cannot be used on {what}", line, column)
        return True

    def scalar(self, ev: ScalarEvent, line: int, column: int) -> YNode:
        tag, text = ev.tag, ev.value
        if tag is None or tag == "!":
            tag = resolve(text) if ev.implicit[0] else STR
        value: Any = text
        bad = False
        if tag in (STR, MERGE, TIMESTAMP):
            pass  # timestamps stay text: no DAG field is a date, and str(date) would differ
        elif tag == NULL:
            value = None
        elif tag in (INT, FLOAT) and len(text) > MAX_NUMBER_CHARS:
            value = -math.inf if text.startswith("-") else math.inf
        elif tag in (INT, FLOAT, BOOL):
            fn = self.constructor.yaml_constructors[tag]
            try:
                value = fn(self.constructor, yaml.ScalarNode(tag, text))
            except (ValueError, KeyError, ConstructorError):
                self.problem(f"'{shown(text)}' cannot be read as {show_tag(tag)}", line, column)
                bad = True
        else:
            bad = self.check_tag(tag, STR, line, column)
        written = None if isinstance(value, str) else text
        return YNode(SCALAR, value, line, column, text=written, merge=tag == MERGE, bad=bad)

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
            key = k.value if k.text is None else k.text  # `_key_of`, inline: once per key read
            if key in explicit:
                where = self.path()
                self.problem(
                    f"duplicate key '{shown(key)}' (first at line {explicit[key].line}); "
                    "YAML would silently keep only the last one",
                    k.line,
                    k.column,
                    f"{where}.{shown(key)}" if where else shown(key),
                )
            explicit[key] = k
            values[key] = v
            keys[key] = k
        f.node.value, f.node.keys = values, keys


def _key_of(node: YNode) -> Any:
    """A mapping key as written: `on`, `0755` and `~` are the keys 'on', '0755' and '~'."""
    return node.value if node.text is None else node.text


def read_yaml(
    text: str,
    *,
    max_nodes: int = MAX_EXPANDED_NODES,
    max_bytes: int = MAX_EXPANDED_BYTES,
    problems: Problems | None = None,
) -> tuple[YNode | None, Problems]:
    """Parse one YAML document into a YNode tree; the root is None when reading had to stop.

    Problems go to `problems` (a new collector when None), which is returned.
    """
    b = _Builder(text, Problems() if problems is None else problems, max_nodes, max_bytes)
    loader = Loader(text)
    try:
        _build(loader, b)
    except yaml.MarkedYAMLError as e:
        b.problems.append(_syntax_problem(e))
        return None, b.problems
    except yaml.YAMLError as e:  # e.g. a control character the reader refuses, without a mark
        b.problems.append(Problem(f"YAML error: {shown(str(e), 300)}"))
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
            if ev.anchor is not None:
                b.anchored(ev.anchor, mark.index, ev.end_mark.index, b.aliased)
            if ev.tag is None and (not ev.implicit[0] or resolve(value) == STR):
                b.add(YNode(SCALAR, value, line, column), ev.anchor)  # fast path: plain text
            else:
                b.add(b.scalar(ev, line, column), ev.anchor)
        elif cls is MappingEndEvent or cls is SequenceEndEvent:
            f = b.stack.pop()
            if cls is MappingEndEvent:
                b.end_mapping(f)
            if f.anchor is not None:
                b.anchored(f.anchor, f.start, ev.end_mark.index, f.aliased)
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
