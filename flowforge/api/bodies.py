"""Request bodies as middleware sees them: read whole, typed, and how deep their JSON nests."""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.types import Receive, Scope

# A JSON string (to its closing quote, or to the end when there is none), matched in linear time.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPEN_CLOSE = bytes.maketrans(b"{}", b"[]")


def json_nesting_over(body: bytes, limit: int) -> bool:
    """True when arrays and objects in `body` (JSON) nest more than `limit` deep, open ones included.

    Linear in the body and never recursive: strings are dropped, brackets kept, then the
    innermost pairs removed `limit` times; a pair (or more than `limit` open brackets) left means
    deeper nesting.
    """
    skeleton = _JSON_STRING.sub(b"", body).translate(_OPEN_CLOSE, _NOT_BRACKETS)
    for _ in range(limit):
        inner_gone = skeleton.replace(b"[]", b"")
        if inner_gone == skeleton:
            break
        skeleton = inner_gone
    return b"[]" in skeleton or skeleton.count(b"[") > limit


def is_json(scope: Scope) -> bool:
    """True when the request says its body is JSON (application/json or a +json type)."""
    media = Headers(scope=scope).get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
