"""One frozen Settings, from flags > FLOWFORGE_* environment variables > defaults."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

DEFAULT_API_URL = "http://127.0.0.1:8080"
MAX_RETENTION_DAYS = 36_525  # 100 years

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
    "FLOWFORGE_WORKER_TOKEN",
    "FLOWFORGE_WORKER_TOKEN_FILE",
    "FLOWFORGE_LOG_FORMAT",
    "FLOWFORGE_LOG_LEVEL",
    "FLOWFORGE_HEARTBEAT_SECS",
    "FLOWFORGE_MAX_LOST_ATTEMPTS",
    "FLOWFORGE_MAX_LOG_BYTES",
    "FLOWFORGE_METRICS_PORT",
    "FLOWFORGE_METRICS_HOST",
    "FLOWFORGE_ALLOWED_HOSTS",
    "FLOWFORGE_MAX_STREAMS",
    "FLOWFORGE_MAX_CONNECTIONS",
    "FLOWFORGE_DAGS_DIR",
    "FLOWFORGE_RETENTION_DAYS",
    "FLOWFORGE_DB_POOL_MAX",
)
# The settings that may hold a secret. A server command never keeps them in its environment block
# (which any process of the same user can read in /proc/PID/environ): see `exec_without_secrets`.
SECRET_ENV_VARS = (
    "FLOWFORGE_API_TOKEN",
    "FLOWFORGE_API_READ_TOKEN",
    "FLOWFORGE_WORKER_TOKEN",
    "FLOWFORGE_DB",
    "FLOWFORGE_QUEUE",
)
# The secret settings that are tokens: secret whatever their value looks like.
TOKEN_ENV_VARS = ("FLOWFORGE_API_TOKEN", "FLOWFORGE_API_READ_TOKEN", "FLOWFORGE_WORKER_TOKEN")
# Names the pipe through which a server command hands the secret settings to itself across exec.
HANDOVER_FD_VAR = "FLOWFORGE_SECRETS_FD"


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
    # The execution API's token (/api/v1/worker/...): the API checks it, an API-mode worker sends it.
    worker_token: str | None = None
    metrics_port: int | None = None  # `scheduler` and `worker` serve their metrics here when set
    metrics_host: str = "127.0.0.1"
    max_lost_attempts: int = 3  # per task instance, retried without using a retry (the scheduler's)
    max_log_bytes: int = 50 * 1024 * 1024  # of an attempt's output stored; the rest is dropped (worker)
    allowed_hosts: tuple[str, ...] = ()  # Host names the API answers besides those it is bound to
    max_streams: int = 100  # open event streams and followed logs at once (the API's)
    max_connections: int = 2048  # open connections to the API at once; past it, requests get 503
    dags_dir: Path | None = None  # a folder of DAG files kept in step with the store (up, scheduler)
    # The leading scheduler deletes runs that ended more than this many days ago (0: keep forever),
    # about every `retention_every_secs` and once shortly after it starts.
    retention_days: int = 0
    retention_every_secs: float = 3600.0
    # The most PostgreSQL connections this process holds; None: sized after its role (`db_pool_size`).
    db_pool_max: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment, with explicit (non-None) overrides winning.

        The secret settings (SECRET_ENV_VARS) are read from `environ` when given (what
        `take_handed_over_secrets` returned, merged over the environment), else from the
        environment. `token_file` (a path) overrides FLOWFORGE_API_TOKEN with the file's stripped text;
        `worker_token_file` overrides FLOWFORGE_WORKER_TOKEN (and FLOWFORGE_WORKER_TOKEN_FILE) so.
        """
        env = os.environ if environ is None else environ
        home = Path(str(overrides.pop("home"))) if overrides.get("home") else default_home()
        overrides.pop("home", None)
        token_file = overrides.pop("token_file", None)
        api_token = read_token_file(Path(str(token_file))) if token_file else env.get("FLOWFORGE_API_TOKEN")
        api_read_token = env.get("FLOWFORGE_API_READ_TOKEN") or None
        if api_read_token and not api_token:
            raise ValueError(
                "FLOWFORGE_API_READ_TOKEN is set but no API token is: with only a read-only token nothing "
                "could change anything. Set FLOWFORGE_API_TOKEN (or --token-file) too."
            )
        worker_token = _worker_token(env, overrides.pop("worker_token_file", None))
        if worker_token and worker_token in (api_token, api_read_token):
            raise ValueError(
                "FLOWFORGE_WORKER_TOKEN is the same as an API token: give workers a token of their own "
                "(make one with: openssl rand -hex 32)"
            )
        base = cls(
            home=home,
            db_url=env.get("FLOWFORGE_DB") or f"sqlite:///{home / 'flowforge.db'}",
            queue_url=env.get("FLOWFORGE_QUEUE") or "memory://",
            concurrency=os.cpu_count() or 2,
            api_token=api_token or None,
            api_read_token=api_read_token,
            worker_token=worker_token,
            # Workers heartbeat this often and the scheduler declares a worker dead after three
            # missed beats: every process of one deployment must agree, hence an env variable.
            heartbeat_secs=_positive_float("FLOWFORGE_HEARTBEAT_SECS", cls.heartbeat_secs),
            max_lost_attempts=_count("FLOWFORGE_MAX_LOST_ATTEMPTS", cls.max_lost_attempts),
            max_log_bytes=_count("FLOWFORGE_MAX_LOG_BYTES", cls.max_log_bytes),
            allowed_hosts=host_names(
                os.environ.get("FLOWFORGE_ALLOWED_HOSTS", "").split(","), "FLOWFORGE_ALLOWED_HOSTS"
            ),
            max_streams=_positive_int("FLOWFORGE_MAX_STREAMS", cls.max_streams),
            max_connections=_positive_int("FLOWFORGE_MAX_CONNECTIONS", cls.max_connections),
            dags_dir=Path(env["FLOWFORGE_DAGS_DIR"]).expanduser() if env.get("FLOWFORGE_DAGS_DIR") else None,
            retention_days=_retention_days(),
            db_pool_max=_positive_int("FLOWFORGE_DB_POOL_MAX", 0) or None,
        )
        if overrides.get("allowed_hosts"):
            overrides["allowed_hosts"] = host_names(overrides["allowed_hosts"], "--allowed-host")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None and v != []})


# -- PostgreSQL connections: each process holds a pool sized after what it does at once ----------------
API_THREADS = 16  # requests the API serves at once in threads, each holding at most one connection
SCHEDULER_CONNECTIONS = 3  # the scheduler loop, the DAG folder's thread, one to spare
ROLES = ("api", "scheduler", "worker", "up")


def db_pool_size(settings: Settings, role: str) -> int:
    """The most PostgreSQL connections a process of `role` holds: FLOWFORGE_DB_POOL_MAX, else what it
    does at once (the API: its request threads; the scheduler: 3; a worker: a slot each and its
    heartbeat; `up`: all three). An API-mode worker holds none."""
    if settings.db_pool_max:
        return settings.db_pool_max
    sizes = {
        "api": API_THREADS,
        "scheduler": SCHEDULER_CONNECTIONS,
        "worker": settings.concurrency + 1,
        "up": API_THREADS + SCHEDULER_CONNECTIONS + settings.concurrency + 1,
    }
    if role not in sizes:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return sizes[role]


def api_threads(settings: Settings, role: str) -> int:
    """How many requests the API serves at once in threads: as many as its connections when it runs
    alone (no request then waits for a connection), else API_THREADS."""
    return db_pool_size(settings, "api") if role == "api" else API_THREADS


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


def _worker_token(env: Mapping[str, str], token_file: Any) -> str | None:
    """The worker token: from `token_file` (a flag), else FLOWFORGE_WORKER_TOKEN, else FLOWFORGE_WORKER_TOKEN_FILE."""
    if token_file:
        return read_token_file(Path(str(token_file)))
    if env.get("FLOWFORGE_WORKER_TOKEN"):
        return env["FLOWFORGE_WORKER_TOKEN"].strip() or None
    path = env.get("FLOWFORGE_WORKER_TOKEN_FILE")
    return read_token_file(Path(path)) if path else None


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


def _count(name: str, default: int) -> int:
    """A whole number >= 0 from environment variable `name`, else `default`; ValueError naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name} must be a whole number (0 or more), not {raw!r}")
    return int(raw)


def _retention_days() -> int:
    """FLOWFORGE_RETENTION_DAYS: whole days, 0 (keep forever) to 36525 (100 years); ValueError naming it."""
    days = _count("FLOWFORGE_RETENTION_DAYS", 0)
    if days > MAX_RETENTION_DAYS:
        raise ValueError(
            f"FLOWFORGE_RETENTION_DAYS must be at most {MAX_RETENTION_DAYS} (100 years), not {days}"
        )
    return days


def _positive_int(name: str, default: int) -> int:
    """A whole number >= 1 from environment variable `name`, else `default`; ValueError naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValueError(f"{name} must be a whole number (1 or more), not {raw!r}")
    return int(raw)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1): reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_HOST_NAME = re.compile(r"(\*|(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*)")


def host_names(raw: list[str] | tuple[str, ...], setting: str) -> tuple[str, ...]:
    """Host names as the API compares them (lower case, IPv6 without brackets); ValueError naming `setting`.

    Each is a DNS name, an IP address, `*.example.com` (every name under it) or `*` (any name).
    """
    names = []
    for item in (part.strip().lower().rstrip(".") for part in raw):
        if not item:
            continue
        bare = item[1:-1] if item.startswith("[") and item.endswith("]") else item
        try:
            names.append(str(ipaddress.ip_address(bare)))
            continue
        except ValueError:
            pass
        if not _HOST_NAME.fullmatch(item):
            raise ValueError(
                f"{setting}: {item!r} is not a host name (give a name such as flowforge.example.com, "
                "an IP address, or *.example.com; no scheme, port or path)"
            )
        names.append(item)
    return tuple(dict.fromkeys(names))


# -- secrets: redacted in text, kept out of the environment block -----------------------------------
# A password in a URL's user part: scheme://user:PASSWORD@host, up to the last "@" of the URL (a
# password may hold "@" or "/" that nobody escaped).
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)\S*(?=@[^\s@]*(?:\s|$))", re.IGNORECASE)
# key=value where the key names a secret: libpq DSNs (password='…'), URL queries (?sslpassword=…),
# settings in a message (FLOWFORGE_API_TOKEN=…).
_SECRET_VALUE = re.compile(
    r"""(\b[\w.-]*(?:password|passwd|pwd|secret|token)[\w.-]*\s*=\s*)"""
    r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&;,'"]*)""",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """`text` (a database or queue URL or DSN, or a message holding some) with every password as `***`.

    Covers `scheme://user:PASSWORD@host`, `redis://:PASSWORD@host`, query parameters and libpq
    `key=value` pairs whose key names a secret (`password`, `sslpassword`, `…token`, `…secret`).
    """
    text = _URL_PASSWORD.sub(r"\1***", text)
    return _SECRET_VALUE.sub(r"\1***", text)


def secret_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The secret settings `environ` holds: the tokens, and the store and queue URLs that carry a password."""
    found = {}
    for name in SECRET_ENV_VARS:
        value = environ.get(name, "")
        if value and (name in TOKEN_ENV_VARS or redact_url(value) != value):
            found[name] = value
    return found


def exec_without_secrets(argv: list[str]) -> None:
    """When the environment holds secret settings, replace this process (exec) by `argv` without them.

    /proc/PID/environ shows a process's environment as it was at exec, to every process of the
    same user, tasks included; so the new program gets an environment without the secrets and
    reads them once from an inherited pipe named by FLOWFORGE_SECRETS_FD (`take_handed_over_secrets`).
    Returns only when there is nothing to hide; ValueError when the secrets do not fit the pipe.
    """
    secrets = secret_settings(os.environ)
    if not secrets:
        return
    data = json.dumps(secrets).encode()
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)
        view = memoryview(data)
        while view:  # the pipe buffer (64 KiB on Linux) holds them all: nobody reads before exec
            view = view[os.write(write_end, view) :]
    except BlockingIOError:
        os.close(read_end)
        raise ValueError(f"the secret settings ({', '.join(secrets)}) are too long to hand over") from None
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    env[HANDOVER_FD_VAR] = str(read_end)
    os.execve(argv[0], argv, env)


def take_handed_over_secrets() -> dict[str, str]:
    """The secret settings `exec_without_secrets` handed over (the pipe is read once and closed); {} if none."""
    raw = os.environ.pop(HANDOVER_FD_VAR, "")
    if not raw:
        return {}
    try:
        with os.fdopen(int(raw), "rb") as pipe:
            handed = json.loads(pipe.read())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{HANDOVER_FD_VAR}={raw}: no secret settings to read there ({exc})") from None
    return {k: str(v) for k, v in handed.items() if k in SECRET_ENV_VARS}
