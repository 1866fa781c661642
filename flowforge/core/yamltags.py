"""YAML tags in a DAG file, and the tag a plain (unquoted, untagged) scalar resolves to.

Resolution is YAML 1.1's, as PyYAML's SafeLoader does it (so `yes` is true and `0x10` is 16 where
a DAG field wants a value), but faster for the common words and linear on long scalars: PyYAML's
number patterns backtrack through every `:` of a long base-60 number, here read with patterns that
cannot backtrack.
"""

from __future__ import annotations

import re

from yaml.resolver import Resolver

STD = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, TIMESTAMP = (
    STD + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)
MERGE, SEQ_TAG, MAP_TAG = STD + "merge", STD + "seq", STD + "map"
# Standard tags a DAG file has no use for: reported, never constructed.
UNSUPPORTED_STD = {STD + t for t in ("binary", "omap", "pairs", "set", "value", "yaml")}
KNOWN_STD = {STR, INT, FLOAT, BOOL, NULL, TIMESTAMP, MERGE, SEQ_TAG, MAP_TAG}
# A number written with more characters than this is not computed (base-60 `1:2:3:…` integers take
# quadratic time): it reads as infinity, which every numeric field refuses as too large.
MAX_NUMBER_CHARS = 100

# YAML 1.1 words that PyYAML's SafeLoader reads as true/false/null: a dict lookup is much faster
# than its regexes for the many plain values (ids like `n0123`) that start with these letters.
_WORDS = {
    **dict.fromkeys(("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), BOOL),
    **dict.fromkeys(("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), BOOL),
    **dict.fromkeys(["~", "null", "Null", "NULL", ""], NULL),
}
_WORD_STARTS = frozenset("yYnNtTfFoO~")
# YAML 1.1's integers and floats (decimal, binary, octal, hex, base 60, exponents), for scalars
# longer than MAX_NUMBER_CHARS: possessive, so a failing match never backtracks.
_LONG_NUMBER = re.compile(
    r"[-+]?(?:0b[01_]++|0x[0-9a-fA-F_]++|[0-9][0-9_]*+(?::[0-5]?[0-9])*+(?:\.[0-9_]*+)?(?:[eE][-+][0-9]++)?"
    r"|\.[0-9][0-9_]*+(?:[eE][-+][0-9]++)?)"
)


def show_tag(tag: str) -> str:
    """A tag as the user wrote it: `!!python/object` rather than `tag:yaml.org,2002:python/object`."""
    return "!!" + tag[len(STD) :] if tag.startswith(STD) else tag


def resolve(text: str) -> str:
    """The tag PyYAML's SafeLoader gives a plain (unquoted, untagged) scalar."""
    if not text or text[0] in _WORD_STARTS:
        return _WORDS.get(text, STR)
    if len(text) > MAX_NUMBER_CHARS:  # no word or date is this long: a number, or text
        return FLOAT if _LONG_NUMBER.fullmatch(text) else STR
    for tag, regexp in Resolver.yaml_implicit_resolvers.get(text[0], ()):
        if regexp.match(text):
            return str(tag)
    return STR
