"""Run params: the DAG's declared defaults overridden by what the trigger gives."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flowforge.core.errors import InvalidRequest, shown
from flowforge.core.fields import closest

# Suggestions cost a comparison with every declared name: a few are enough to point at typos.
_MAX_SUGGESTIONS = 25


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # NaN/Infinity would not survive JSON or an env var
    return isinstance(value, str | int | bool)


def _unpassable(value: Any) -> str | None:
    """Why no process can receive this text (a NUL character, an unpaired surrogate), or None."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "contains a NUL character (\\0), which cannot be passed to a task"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (\\ud800-\\udfff), which is not text a task can receive"
    return None


def _undeclared(declared: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Refuse names the DAG does not declare, suggesting the declared name each is a typo of."""
    unknown = sorted(k for k in given if k not in declared) if declared else []
    if not unknown:
        return
    names = sorted(declared)
    details: list[dict[str, object]] = []
    for i, k in enumerate(unknown):
        near = closest(k, names) if i < _MAX_SUGGESTIONS else None
        hint = f"; did you mean '{near}'?" if near is not None else ""
        details.append({"param": shown(k), "message": f"not declared by the DAG{hint}"})
    listed = ", ".join(f"{d['param']} ({d['message']})" for d in details[:_MAX_SUGGESTIONS])
    more = f" and {len(unknown) - _MAX_SUGGESTIONS:,} more" if len(unknown) > _MAX_SUGGESTIONS else ""
    raise InvalidRequest(
        "invalid_params",
        f"param(s) not declared by the DAG: {listed}{more}; "
        f"declared: {', '.join(shown(n) for n in names[:_MAX_SUGGESTIONS])}",
        details[:_MAX_SUGGESTIONS],
    )


def resolve_params(declared: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The params of a run: defaults, then `given`.

    A DAG that declares params refuses one it does not declare (a typo guard, with "did you
    mean"); a DAG that declares none takes any. Values must be scalars: they reach tasks as
    environment variables (FLOWFORGE_PARAM_<NAME>), never pasted into the command, so text with a
    NUL character is refused too. Raises InvalidRequest.
    """
    _undeclared(declared, given)
    bad = sorted(k for k, v in given.items() if not _is_scalar(v))
    unpassable = {k: why for k, v in given.items() if (why := _unpassable(v))}
    bad_names = sorted(k for k in given if not k.replace("_", "a").isalnum() or not k.isascii())
    if bad or bad_names or unpassable:
        details: list[dict[str, object]] = [
            {"param": shown(k), "message": "must be a string, number or boolean"} for k in bad
        ]
        details += [{"param": shown(k), "message": why} for k, why in sorted(unpassable.items())]
        details += [{"param": shown(k), "message": "name must use letters, digits and _"} for k in bad_names]
        names = sorted(set(bad) | set(bad_names) | set(unpassable))
        raise InvalidRequest(
            "invalid_params",
            "params must be named with letters, digits and _ and be a string, number or boolean "
            "a task can receive: " + ", ".join(shown(n) for n in names[:_MAX_SUGGESTIONS]),
            details[: 3 * _MAX_SUGGESTIONS],
        )
    return {**declared, **given}
