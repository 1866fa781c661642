"""Which values are secrets, and masking them in answers and in task logs (README: REST API, tokens).

Masking reads each character once (`textsearch`), however many and however long the secrets are:
a task's output and a DAG's source are hostile input like any other.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from flowforge.core.textsearch import Region, patterns_of, replace_regions

MASK = "***"
SECRET_KEY_WORDS = "PASSWORD|PASSWD|SECRET|TOKEN|KEY"  # a key holding one of these (any case) is secret
_SECRET_KEY = re.compile(SECRET_KEY_WORDS, re.IGNORECASE)
# Values this short would mask ordinary words and digits all over a log; they are still masked
# in API answers, where the key says what they are.
MIN_LOG_SECRET_LEN = 4


def is_secret_key(key: str) -> bool:
    """True when a key's name says its value is a secret (PASSWORD, SECRET, TOKEN, KEY …)."""
    return bool(_SECRET_KEY.search(key))


def mask_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with the values of secret-looking keys replaced by `***`."""
    return {k: (MASK if is_secret_key(k) else v) for k, v in values.items()}


def secret_values(*mappings: Mapping[str, Any]) -> list[str]:
    """The values of secret-looking keys in these mappings, longest first, worth masking in logs."""
    found = {str(v) for m in mappings for k, v in m.items() if is_secret_key(k) and v is not None}
    return sorted((v for v in found if len(v) >= MIN_LOG_SECRET_LEN), key=len, reverse=True)


class SecretText:
    """Masks a DAG's secret values wherever an answer shows its text: a command that passes the
    password, a non-secret variable that holds the same value, a description that quotes it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found = [s for s in secrets if s]
        self._patterns = patterns_of(found) if found else None

    def text(self, value: Any) -> Any:
        """A text with every secret value in it replaced by `***`; other values as they are."""
        if self._patterns is None or not isinstance(value, str):
            return value
        regions = self._patterns.regions(value)
        return replace_regions(value, [(a, b, MASK) for a, b in regions]) if regions else value

    def mapping(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`mask_mapping`, and secret values masked in the values of the other keys too."""
        return {k: (MASK if is_secret_key(k) else self.text(v)) for k, v in values.items()}


class LogMasker:
    """Replaces secret values in a stream of text chunks, also when a chunk boundary splits one.

    `feed` returns the text that is safe to write now and holds back a tail that might be the
    start of a secret (or of a longer occurrence that overlaps one); `flush` returns the rest once
    the stream ends. Overlapping occurrences become one `***`.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s]
        self._patterns = patterns_of(self.secrets) if self.secrets else None
        self._state = 0
        self._read = 0  # characters fed so far
        self._written = 0  # characters given back (as themselves or inside a ***)
        self._held: deque[str] = deque()  # the chunks holding characters read but not written
        self._skip = 0  # characters of the first held chunk already written
        self._regions: list[Region] = []  # to mask, past `_written`

    def feed(self, text: str) -> str:
        """Masked text that can be written now."""
        if self._patterns is None or not text:
            return text
        self._state = self._patterns.scan(text, self._state, self._read, self._regions)
        self._read += len(text)
        self._held.append(text)
        # Later occurrences start at `safe` or after, and only grow a region they overlap.
        safe = self._read - self._patterns.open_depth(self._state)
        done = bisect.bisect_right(self._regions, safe, key=lambda r: r[1])
        if done < len(self._regions):
            safe = min(safe, self._regions[done][0])
        return self._write(safe, done)

    def flush(self) -> str:
        """Whatever was held back, masked where it held a secret; the stream starts afresh."""
        if self._patterns is None:
            return ""
        rest = self._write(self._read, len(self._regions))
        self._state = 0
        return rest

    def _write(self, upto: int, regions: int) -> str:
        """The text up to `upto`, with the first `regions` regions masked."""
        out = []
        for start, end in self._regions[:regions]:
            out.append(self._advance(start, keep=True))
            out.append(MASK)
            self._advance(end, keep=False)
        del self._regions[:regions]
        out.append(self._advance(upto, keep=True))
        return "".join(out)

    def _advance(self, upto: int, *, keep: bool) -> str:
        """Move `_written` to `upto`, returning the characters passed when `keep`."""
        parts = []
        need = upto - self._written
        while need > 0:
            chunk = self._held[0]
            n = min(len(chunk) - self._skip, need)
            if keep:
                parts.append(chunk[self._skip : self._skip + n])
            need -= n
            self._written += n
            self._skip += n
            if self._skip == len(chunk):
                self._held.popleft()
                self._skip = 0
        return "".join(parts)
