"""An API answer as the client hands it out: the JSON the API sent, read by attribute.

The API validates every answer against its model (`flowforge.api.models`) before it sends it, so
the client does not validate again: building pydantic models costs a CLI command more start-up time
than everything else it does (about 60 ms). An answer is a `dict` (JSON objects decode straight into
`Answer`, nested ones included) whose keys read as attributes, under the names the models give them;
the client's methods are typed with those models, which is what a caller may rely on.
`model_dump(mode="json")` gives back the JSON, as a model's would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flowforge.client.errors import ApiError


class UnknownShape(ApiError, AttributeError):
    """An answer without a field its model has: a server this client does not know."""

    def __init__(self, field: str) -> None:
        ApiError.__init__(
            self,
            200,
            "bad_response",
            f"the API answered with a shape this client does not know (no field {field!r})",
        )


class Answer(dict[str, Any]):
    """One JSON object of an answer, its keys readable as attributes."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__"):  # copy, pickle and friends probe for these
                raise AttributeError(name) from None
            raise UnknownShape(name) from None

    def model_dump(self, *, mode: str = "json", exclude: Iterable[str] = ()) -> dict[str, Any]:
        """The JSON object (without the `exclude` keys), as `BaseModel.model_dump(mode="json")`."""
        left_out = set(exclude)
        return {k: v for k, v in self.items() if k not in left_out}


def parse(text: str | bytes) -> Any:
    """JSON text with every object an `Answer` (ValueError when it is not JSON)."""
    return json.loads(text, object_hook=Answer)
