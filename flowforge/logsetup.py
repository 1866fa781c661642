"""Process logging: one JSON object a line for machines, readable coloured lines for people.

JSON when FLOWFORGE_LOG_FORMAT=json, or when stderr is not a terminal (a service manager, a
container, a pipe); Rich console lines on a terminal. Context given with `extra=` (run_id,
task_id, attempt, worker_id, dag_id …) becomes fields of the JSON object. A password in a
message or a traceback (a database or queue URL or DSN, `password=…`) is shown as `***`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from flowforge.core.secrets import MASK, SECRET_KEY_WORDS
from flowforge.settings import redact_url

# Attributes every LogRecord has; anything else on a record came from `extra=` and is context.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
CONTEXT_ORDER = ("run_id", "task_id", "attempt", "dag_id", "worker_id")
LEVELS = ("debug", "info", "warning", "error", "critical")


_SECRET_WORDS = tuple(word.lower() for word in SECRET_KEY_WORDS.split("|"))


@functools.lru_cache(maxsize=256)
def _secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record, known context keys first, secret-named ones masked."""
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    ordered = {k: extra.pop(k) for k in CONTEXT_ORDER if k in extra}
    ordered.update(extra)
    return {k: (MASK if _secret_field(k) else v) for k, v in ordered.items()}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...context, "exc"?}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object, no newlines inside."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_url(record.getMessage()),
        }
        entry.update(context_of(record))
        if record.exc_info:
            entry["exc"] = redact_url(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS level logger: message key=value …` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """The message with its context appended."""
        text = record.getMessage()
        context = " ".join(f"{k}={v}" for k, v in context_of(record).items())
        line = f"{text}  {context}" if context else text
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact_url(line)


def wants_json(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """JSON unless FLOWFORGE_LOG_FORMAT says console, or (unset) the stream is a terminal."""
    fmt = (env if env is not None else os.environ).get("FLOWFORGE_LOG_FORMAT", "").strip().lower()
    if fmt in ("json", "console"):
        return fmt == "json"
    return not stream.isatty()


def setup_logging(level: str | None = None, stream: TextIO | None = None) -> None:
    """Configure the root logger once for a FlowForge process (`up`, `api`, `scheduler`, `worker`).

    `level` comes from --log-level, else FLOWFORGE_LOG_LEVEL, else info. Raises ValueError
    naming the setting for an unknown level.
    """
    name = (level or os.environ.get("FLOWFORGE_LOG_LEVEL") or "info").strip().lower()
    if name not in LEVELS:
        raise ValueError(
            f"log level must be one of {', '.join(LEVELS)}, not {name!r} (--log-level / FLOWFORGE_LOG_LEVEL)"
        )
    stream = stream or sys.stderr
    handler: logging.Handler
    if wants_json(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(file=stream), show_path=False, rich_tracebacks=False, markup=False
        )
        handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name.upper())
    # Libraries speak only when something is wrong.
    for noisy in ("httpx", "httpcore", "uvicorn.access", "psycopg.pool", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
