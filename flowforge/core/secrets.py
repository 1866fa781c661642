"""Which values are secrets, and masking them in answers and in task logs (README: REST API, tokens)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

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


class LogMasker:
    """Replaces secret values in a stream of text chunks, also when a chunk boundary splits one.

    `feed` returns the text that is safe to write now and holds back a tail that might be the
    start of a secret; `flush` returns the rest once the stream ends.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s]
        self._pattern = re.compile("|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        self._hold = max((len(s) for s in self.secrets), default=1) - 1
        self._pending = ""

    def feed(self, text: str) -> str:
        """Masked text that can be written now."""
        if self._pattern is None:
            return text
        data = self._pattern.sub(MASK, self._pending + text)
        # Keep back the longest tail that could still grow into a secret with the next chunk.
        cut = len(data)
        for size in range(min(self._hold, len(data)), 0, -1):
            tail = data[-size:]
            if any(s.startswith(tail) for s in self.secrets):
                cut = len(data) - size
                break
        self._pending = data[cut:]
        return data[:cut]

    def flush(self) -> str:
        """Whatever was held back (it turned out not to be a secret)."""
        rest, self._pending = self._pending, ""
        return rest
