"""One frozen Settings, from flags > FLOWFORGE_* environment variables > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_API_URL = "http://127.0.0.1:8080"

# Environment variables that configure FlowForge itself. Tasks never see them: the worker drops
# every FLOWFORGE_* variable from a task's environment (see `engine.executor.task_env`).
SETTINGS_ENV_VARS = (
    "FLOWFORGE_DB",
    "FLOWFORGE_QUEUE",
    "FLOWFORGE_HOME",
    "FLOWFORGE_API_URL",
    "FLOWFORGE_API_TOKEN",
    "FLOWFORGE_API_READ_TOKEN",
    "FLOWFORGE_API_TOKEN_FILE",
    "FLOWFORGE_LOG_FORMAT",
    "FLOWFORGE_LOG_LEVEL",
    "FLOWFORGE_HEARTBEAT_SECS",
    "FLOWFORGE_METRICS_PORT",
    "FLOWFORGE_METRICS_HOST",
)


def default_home() -> Path:
    """Data directory: FLOWFORGE_HOME, else ~/.flowforge."""
    env = os.environ.get("FLOWFORGE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".flowforge"


@dataclass(frozen=True)
class Settings:
    """Everything a FlowForge process needs to build its store, queue and loops."""

    home: Path
    db_url: str
    queue_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    concurrency: int = 2
    tick_secs: float = 1.0  # scheduler safety-net tick
    heartbeat_secs: float = 5.0
    kill_grace_secs: float = 5.0  # SIGTERM → SIGKILL on timeout
    grace_secs: float = 30.0  # on shutdown, how long running tasks may go on before being killed
    max_yaml_bytes: int = 1024 * 1024
    api_token: str | None = None  # with a token, every API request but /health needs it
    api_read_token: str | None = None  # good for GET and HEAD only; needs api_token too
    metrics_port: int | None = None  # `scheduler` and `worker` serve their metrics here when set
    metrics_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from the environment, with explicit (non-None) overrides winning.

        `token_file` (a path) overrides FLOWFORGE_API_TOKEN with the file's stripped text.
        """
        home = Path(str(overrides.pop("home"))) if overrides.get("home") else default_home()
        overrides.pop("home", None)
        token_file = overrides.pop("token_file", None)
        api_token = (
            read_token_file(Path(str(token_file))) if token_file else os.environ.get("FLOWFORGE_API_TOKEN")
        )
        api_read_token = os.environ.get("FLOWFORGE_API_READ_TOKEN") or None
        if api_read_token and not api_token:
            raise ValueError(
                "FLOWFORGE_API_READ_TOKEN is set but no API token is: with only a read-only token nothing "
                "could change anything. Set FLOWFORGE_API_TOKEN (or --token-file) too."
            )
        base = cls(
            home=home,
            db_url=os.environ.get("FLOWFORGE_DB") or f"sqlite:///{home / 'flowforge.db'}",
            queue_url=os.environ.get("FLOWFORGE_QUEUE") or "memory://",
            concurrency=os.cpu_count() or 2,
            api_token=api_token or None,
            api_read_token=api_read_token,
            # Workers heartbeat this often and the scheduler declares a worker dead after three
            # missed beats: every process of one deployment must agree, hence an env variable.
            heartbeat_secs=_positive_float("FLOWFORGE_HEARTBEAT_SECS", cls.heartbeat_secs),
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def read_token_file(path: Path) -> str:
    """The API token kept in a file (surrounding whitespace stripped); ValueError naming the file."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"--token-file {path}: cannot read it ({reason})") from exc
    if not token:
        raise ValueError(f"--token-file {path} is empty: write the API token in it")
    if "\n" in token or "\r" in token:
        raise ValueError(f"--token-file {path} has more than one line: write only the API token in it")
    return token


def _positive_float(name: str, default: float) -> float:
    """A positive number from environment variable `name`, else `default`; ValueError naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {raw!r}")
    return value


def redact_url(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) shown as `***`."""
    parts = urlsplit(url)
    if parts.password is None and "password=" not in parts.query.lower():
        return url  # untouched: urlunsplit would drop the empty host of sqlite:///path
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() == "password" for k, _ in query):
        query = [(k, "***" if k.lower() == "password" else v) for k, v in query]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))
    return urlunsplit(parts._replace(netloc=netloc))
