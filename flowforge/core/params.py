"""Run params: the DAG's declared defaults overridden by what the trigger gives."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flowforge.core.errors import InvalidRequest


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # NaN/Infinity would not survive JSON or an env var
    return isinstance(value, str | int | bool)


def resolve_params(declared: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The params of a run: defaults, then `given`.

    A DAG that declares params refuses one it does not declare (a typo guard); a DAG that
    declares none takes any. Values must be scalars: they reach tasks as environment
    variables (FLOWFORGE_PARAM_<NAME>), never pasted into the command. Raises InvalidRequest.
    """
    unknown = sorted(k for k in given if k not in declared) if declared else []
    if unknown:
        raise InvalidRequest(
            "invalid_params",
            f"param(s) not declared by the DAG: {', '.join(unknown)} (declared: {', '.join(sorted(declared))})",
            [{"param": k, "message": "not declared by the DAG"} for k in unknown],
        )
    bad = sorted(k for k, v in given.items() if not _is_scalar(v))
    bad_names = sorted(k for k in given if not k.replace("_", "a").isalnum() or not k.isascii())
    if bad or bad_names:
        details: list[dict[str, object]] = [
            {"param": k, "message": "must be a string, number or boolean"} for k in bad
        ]
        details += [{"param": k, "message": "name must use letters, digits and _"} for k in bad_names]
        raise InvalidRequest(
            "invalid_params",
            "params must be named with letters, digits and _ and be a string, number or boolean: "
            + ", ".join(sorted(set(bad) | set(bad_names))),
            details,
        )
    return {**declared, **given}
