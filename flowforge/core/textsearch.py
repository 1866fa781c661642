"""Finding many literal strings in a text in one linear pass (Aho-Corasick), for masking secrets.

A regular expression `a|b|c` of escaped literals tries every alternative at every position, and a
long secret such as `aaaa…b` against a text of `a`s costs the secret's length at each position:
quadratic. The automaton here reads each character once whatever the secrets are, and reports
the spans to mask as regions: overlapping occurrences are merged into one region (so no part of
a secret shows), while occurrences that only touch stay separate.

The trie is stored compactly, since a secret may be long: a node's only child is the next node
(`_chain`), and only nodes with several children hold a dict (`_branch`).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable
from functools import lru_cache

Region = tuple[int, int]  # [start, end) character offsets
# Up to this many patterns, `scan` first asks C's substring search whether any occurs at all.
FAST_PATH_MAX_PATTERNS = 32


class Patterns:
    """An automaton recognising every one of a set of non-empty strings."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._chain: list[str] = [""]  # node i -> the character leading to node i + 1, or ""
        self._branch: dict[int, dict[str, int]] = {}
        self._depth = array("q", [0])
        self._longest = array("q", [0])  # length of the longest pattern ending at this node
        self.count = 0
        strings = [p for p in dict.fromkeys(patterns) if p]
        for p in strings:
            self._insert(p)
            self.count += 1
        # For the fast path of `scan`: with a few patterns, C's `in` rules out a match at once.
        self._few = tuple(strings) if len(strings) <= FAST_PATH_MAX_PATTERNS else None
        self._tail = max(map(len, strings), default=1) - 1
        self._fail = array("q", bytes(8 * len(self._chain)))
        self._open = array("q", bytes(8 * len(self._chain)))  # see `open_depth`
        self._link()
        starts = self._children(0)
        self._first = re.compile("[" + "".join(re.escape(c) for c, _ in starts) + "]") if starts else None

    def _insert(self, pattern: str) -> None:
        s, i, n = 0, 0, len(pattern)
        while i < n:  # down the trie while it already holds the pattern's start
            t = self._goto(s, pattern[i])
            if t is None:
                break
            s, i = t, i + 1
        if i < n:  # the rest of the pattern is a new chain of nodes, numbered in a row
            t = len(self._chain)
            if s == t - 1 and not self._chain[s] and s not in self._branch:
                self._chain[s] = pattern[i]  # the first child of the newest node: one step down the chain
            else:
                self._split(s)[pattern[i]] = t
            self._chain.extend(pattern[i + 1 :])
            self._chain.append("")
            depth = self._depth[s]
            self._depth.extend(range(depth + 1, depth + 1 + n - i))
            self._longest.frombytes(bytes(8 * (n - i)))
            s = t + n - i - 1
        self._longest[s] = self._depth[s]

    def _split(self, s: int) -> dict[str, int]:
        """The dict of node s's children, made when a second child comes (or a first out of line)."""
        children = self._branch.get(s)
        if children is None:
            children = self._branch[s] = {self._chain[s]: s + 1} if self._chain[s] else {}
            self._chain[s] = ""
        return children

    def _goto(self, s: int, ch: str) -> int | None:
        children = self._branch.get(s)
        if children is not None:
            return children.get(ch)
        return s + 1 if self._chain[s] == ch else None

    def _children(self, s: int) -> list[tuple[str, int]]:
        children = self._branch.get(s)
        if children is not None:
            return list(children.items())
        return [(self._chain[s], s + 1)] if self._chain[s] else []

    def _link(self) -> None:
        """Failure links, a level at a time: each node's longest proper suffix that is a trie node."""
        fail, longest, chain, branch = self._fail, self._longest, self._chain, self._branch
        open_, depth = self._open, self._depth
        level = [t for _, t in self._children(0)]
        for t in level:
            open_[t] = 1 if chain[t] or t in branch else 0
        while level:
            below: list[int] = []
            push = below.append
            for s in level:
                children = branch.get(s)
                if children is None:
                    if not chain[s]:
                        continue
                    pairs: Iterable[tuple[str, int]] = ((chain[s], s + 1),)
                else:
                    pairs = children.items()
                for ch, t in pairs:
                    push(t)
                    f = fail[s]
                    while True:  # `_goto`, inline: building is linear, but its constant matters
                        kids = branch.get(f)
                        g = kids.get(ch) if kids is not None else f + 1 if chain[f] == ch else None
                        if g is not None or f == 0:
                            break
                        f = fail[f]
                    g = g or 0
                    fail[t] = g
                    if not longest[t]:
                        longest[t] = longest[g]
                    open_[t] = depth[t] if chain[t] or t in branch else open_[g]
            level = below

    def open_depth(self, state: int) -> int:
        """How many of the last characters read may still begin an occurrence that ends later.

        The depth of the deepest node, on the way down the failure links from `state`, that has
        children: a node without any (a whole secret just read) cannot grow further.
        """
        return self._open[state]

    def scan(self, text: str, state: int, offset: int, regions: list[Region]) -> int:
        """Read `text` from `state`, adding the regions it matches (at `offset` + index) merged into
        `regions`; returns the state to go on from."""
        if self._first is None:
            return 0
        few = self._few
        if state == 0 and few is not None and len(text) > 2 * self._tail and not any(p in text for p in few):
            # No occurrence here: only the last characters can begin one that ends later, and
            # the state after the whole text is the state after them (read from the root).
            start = len(text) - self._tail
            text, offset = text[start:], offset + start
        first, fail, longest = self._first.search, self._fail, self._longest
        branch, chain = self._branch, self._chain
        i, n, s = 0, len(text), state
        while i < n:
            if s == 0:  # skip, at the speed of `re`, to the next character that starts a pattern
                m = first(text, i)
                if m is None:
                    return 0
                i = m.start()
            ch = text[i]
            i += 1
            while True:  # `_goto`, inline: this loop is the hot path of masking
                children = branch.get(s)
                t = children.get(ch) if children is not None else s + 1 if chain[s] == ch else None
                if t is not None:
                    s = t
                    break
                if s == 0:
                    break
                s = fail[s]
            size = longest[s]
            if size:
                _merge(regions, offset + i - size, offset + i)
        return s

    def regions(self, text: str) -> list[Region]:
        """Every region of `text` covered by a pattern, merged, in order."""
        regions: list[Region] = []
        self.scan(text, 0, 0, regions)
        return regions


def patterns_of(strings: Iterable[str]) -> Patterns:
    """The automaton of these strings, shared while the same set comes again: one answer masks a
    DAG's source and its fields with the same secrets, and every attempt of a task masks its log."""
    return _built(tuple(sorted({s for s in strings if s})))


@lru_cache(maxsize=4)
def _built(strings: tuple[str, ...]) -> Patterns:
    return Patterns(strings)


def _merge(regions: list[Region], start: int, end: int) -> None:
    """Add [start, end) to sorted, disjoint regions whose ends are all at most `end`."""
    while regions and regions[-1][1] > start:
        start = min(start, regions.pop()[0])
    regions.append((start, end))


def replace_regions(text: str, regions: Iterable[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, replacement) applied; regions sorted and disjoint."""
    out: list[str] = []
    at = 0
    for start, end, replacement in regions:
        out.append(text[at:start])
        out.append(replacement)
        at = end
    out.append(text[at:])
    return "".join(out)
