"""`flowforge up`, `api`, `scheduler`, `worker`: the commands that start FlowForge's own processes.

They are registered on the app by `flowforge.cli`; each runs a process of `flowforge.roles`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowforge import __version__
from flowforge.cli.state import EXIT_BAD_INPUT, fail

if TYPE_CHECKING:  # the roles pull in the engine, the API and uvicorn: imported when a command runs
    from flowforge.settings import Settings

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add these commands to the app, in the order `--help` lists them."""
    for command in (up, api, scheduler, worker):
        app.command()(command)


LogLevelOpt = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        envvar="FLOWFORGE_LOG_LEVEL",
        help="debug, info, warning, error or critical (default: info). Logs are JSON lines unless "
        "stderr is a terminal; FLOWFORGE_LOG_FORMAT=json or console chooses.",
    ),
]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=1,
        max=65535,
        envvar="FLOWFORGE_METRICS_PORT",
        help="Serve this process's Prometheus metrics on this port (default: not served).",
    ),
]
MetricsHostOpt = Annotated[
    str | None,
    typer.Option(
        "--metrics-host",
        envvar="FLOWFORGE_METRICS_HOST",
        help="Address for --metrics-port (default: 127.0.0.1).",
    ),
]

HostOpt = Annotated[str | None, typer.Option(help="Address to bind the API to (default: 127.0.0.1).")]
PortOpt = Annotated[int | None, typer.Option(min=1, max=65535, help="Port of the API (default: 8080).")]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option("--concurrency", "-c", min=1, help="Worker slots, i.e. tasks at once (default: CPU count)."),
]
HomeOpt = Annotated[
    Path | None, typer.Option(help="Data directory (default: $FLOWFORGE_HOME or ~/.flowforge).")
]
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="Allow a non-loopback --host without FLOWFORGE_API_TOKEN.")
]
AllowedHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        help="A host name the API answers besides the address it is bound to (repeat for more; "
        "*.example.com for every name under it); requests for other names get 421. Also "
        "FLOWFORGE_ALLOWED_HOSTS=name,name.",
    ),
]
MaxStreamsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-streams",
        min=1,
        help="Event streams and followed logs open at once; past it they get 503 "
        "(default: 100; FLOWFORGE_MAX_STREAMS).",
    ),
]
MaxConnectionsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-connections",
        min=1,
        help="Open connections to the API at once; past it requests get 503 "
        "(default: 2048; FLOWFORGE_MAX_CONNECTIONS).",
    ),
]
GraceOpt = Annotated[
    float | None,
    typer.Option(
        "--grace",
        min=0,
        help="On SIGTERM/Ctrl-C: seconds running tasks may take to finish; the rest are killed and "
        "given back to run again (default: 30).",
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar="FLOWFORGE_API_TOKEN_FILE",
        help="Read the API token from this file (instead of FLOWFORGE_API_TOKEN).",
    ),
]
DagsOpt = Annotated[
    Path | None,
    typer.Option(
        "--dags",
        metavar="DIR",
        help="Load every *.yaml / *.yml file in DIR at start and keep the DAGs in step with the "
        "folder while running (FLOWFORGE_DAGS_DIR).",
    ),
]


def up(
    host: HostOpt = None,
    port: PortOpt = None,
    concurrency: ConcurrencyOpt = None,
    examples: Annotated[
        bool, typer.Option("--examples/--no-examples", help="Also submit the bundled example DAGs.")
    ] = False,
    home: HomeOpt = None,
    insecure: InsecureOpt = False,
    token_file: TokenFileOpt = None,
    grace: GraceOpt = None,
    allowed_host: AllowedHostOpt = None,
    max_streams: MaxStreamsOpt = None,
    max_connections: MaxConnectionsOpt = None,
    dags: DagsOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Start everything in one process: API, web page, scheduler and workers. Ctrl-C stops it."""
    from flowforge.roles import run_all_in_one

    settings = _settings(
        home=home,
        host=host,
        port=port,
        concurrency=concurrency,
        token_file=token_file,
        grace_secs=grace,
        allowed_hosts=allowed_host,
        max_streams=max_streams,
        max_connections=max_connections,
        dags_dir=dags,
    )
    _refuse_open_bind(settings, insecure)
    _logging(log_level)
    paths = find_examples() if examples else []
    if examples and not paths:
        log.warning("no example DAGs found in the installed package (flowforge/examples)")
    _start(lambda: run_all_in_one(settings, paths))


def api(
    host: HostOpt = None,
    port: PortOpt = None,
    home: HomeOpt = None,
    insecure: InsecureOpt = False,
    token_file: TokenFileOpt = None,
    allowed_host: AllowedHostOpt = None,
    max_streams: MaxStreamsOpt = None,
    max_connections: MaxConnectionsOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Serve the REST API and the web page (no scheduler, no workers). Ctrl-C stops it."""
    from flowforge.roles import run_api

    settings = _settings(
        home=home,
        host=host,
        port=port,
        token_file=token_file,
        allowed_hosts=allowed_host,
        max_streams=max_streams,
        max_connections=max_connections,
    )
    _refuse_open_bind(settings, insecure)
    _logging(log_level)
    _start(lambda: run_api(settings))


def scheduler(
    home: HomeOpt = None,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = None,
    dags: DagsOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Run the scheduler: start runs, queue ready tasks, retry, reap dead workers. Ctrl-C stops it."""
    from flowforge.roles import run_scheduler

    settings = _settings(home=home, metrics_port=metrics_port, metrics_host=metrics_host, dags_dir=dags)
    _require_shared_queue(settings, "scheduler")
    _logging(log_level)
    log.info("FlowForge %s scheduler (%s)", __version__, _backends(settings))
    _start(lambda: run_scheduler(settings))


WorkerApiUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        metavar="URL",
        help="Work through the API at URL (its execution routes) instead of the database and queue: the "
        "worker then needs only the worker token (FLOWFORGE_WORKER_TOKEN or --token-file), no FLOWFORGE_DB "
        "or FLOWFORGE_QUEUE.",
    ),
]
WorkerTokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        envvar="FLOWFORGE_WORKER_TOKEN_FILE",
        help="With --api-url: read the worker token from this file (instead of FLOWFORGE_WORKER_TOKEN).",
    ),
]


def worker(
    concurrency: ConcurrencyOpt = None,
    home: HomeOpt = None,
    grace: GraceOpt = None,
    api_url: WorkerApiUrlOpt = None,
    token_file: WorkerTokenFileOpt = None,
    metrics_port: MetricsPortOpt = None,
    metrics_host: MetricsHostOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Run a worker with N task slots; SIGTERM/Ctrl-C lets running tasks finish (within --grace)."""
    from flowforge.roles import run_remote_worker, run_worker

    settings = _settings(
        home=home,
        concurrency=concurrency,
        grace_secs=grace,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        worker_token_file=token_file if api_url else None,
    )
    if api_url is not None:
        _logging(log_level)
        url = _worker_api_url(api_url, settings)
        log.info("FlowForge %s worker: %d slot(s) (API %s)", __version__, settings.concurrency, url)
        _start(lambda: run_remote_worker(settings, url))
        return
    if token_file is not None:
        fail("--token-file is the worker token of --api-url: give --api-url URL too", EXIT_BAD_INPUT)
    _require_shared_queue(settings, "worker")
    _logging(log_level)
    log.info("FlowForge %s worker: %d slot(s) (%s)", __version__, settings.concurrency, _backends(settings))
    _start(lambda: run_worker(settings))


def _worker_api_url(raw: str, settings: Settings) -> str:
    """The API URL of an API-mode worker (exit 2 when it is no http(s) URL, or no worker token is set)."""
    from urllib.parse import urlsplit

    from flowforge.settings import is_loopback

    url = raw.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError as exc:
        fail(f"--api-url {raw!r}: {exc}", EXIT_BAD_INPUT)
    if parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment:
        fail(f"--api-url {raw!r}: give the API's base URL, e.g. http://flowforge-api:8080", EXIT_BAD_INPUT)
    if not settings.worker_token:
        fail(
            "--api-url needs the worker token: set FLOWFORGE_WORKER_TOKEN to the API server's worker token, "
            "or give --token-file FILE",
            EXIT_BAD_INPUT,
        )
    if parts.scheme == "http" and not is_loopback(host):
        log.warning(
            "--api-url %s: plain HTTP; the worker token and task logs cross the network unencrypted", url
        )
    return url


def _logging(level: str | None) -> None:
    """Set up this process's logs (JSON lines or console); a bad level exits 2 naming the setting."""
    from flowforge.logsetup import setup_logging

    try:
        setup_logging(level)
    except ValueError as exc:
        fail(str(exc), EXIT_BAD_INPUT)


def _settings(**overrides: Any) -> Settings:
    """Settings from flags and environment; a bad value exits 2 with its one-line reason.

    Run as the `flowforge` program with secret settings in its environment, the process first
    starts itself again without them (see `settings.exec_without_secrets`): tasks, and anything
    else of the same user, can read a process's environment in /proc, never its memory's copy.
    """
    from flowforge.settings import Settings, exec_without_secrets, take_handed_over_secrets

    try:
        if _started_as_flowforge():
            exec_without_secrets([sys.executable, *sys.orig_argv[1:]])
        environ = {**os.environ, **take_handed_over_secrets()}
        return Settings.from_env(environ, **overrides)
    except (ValueError, OSError) as exc:
        fail(str(exc), EXIT_BAD_INPUT)


def _started_as_flowforge() -> bool:
    """True in the `flowforge` program (its script, or `python -m flowforge`), not in a caller of the CLI."""
    main = Path(sys.argv[0])
    return main.name == "flowforge" or (main.name == "__main__.py" and main.parent.name == "flowforge")


def _backends(settings: Settings) -> str:
    from flowforge.settings import redact_url

    return f"store {redact_url(settings.db_url)}, queue {redact_url(settings.queue_url)}"


def _start(role: Callable[[], None]) -> None:
    """Run a role; a start-up failure becomes one line (setting, what was tried) and exit 2 or 3."""
    from flowforge.roles import StartupError

    try:
        role()
    except StartupError as exc:
        fail(str(exc), exc.exit_code)


def _require_shared_queue(settings: Settings, role: str) -> None:
    """Exit 2 when the queue is in-process: a lone scheduler or worker would wait forever."""
    if settings.queue_url.startswith("memory:"):
        fail(
            f"FLOWFORGE_QUEUE={settings.queue_url}: an in-process queue reaches no other process, so a "
            f"separate {role} would never hear from the others. Set FLOWFORGE_QUEUE=redis://HOST:6379/0, "
            "or run everything in one process with 'flowforge up'.",
            EXIT_BAD_INPUT,
        )


MIN_PUBLIC_TOKEN_CHARS = 16


def _refuse_open_bind(settings: Settings, insecure: bool) -> None:
    """Exit 2 rather than serve a remote shell to the network without a token (unless --insecure),
    or with a token short enough to guess."""
    from flowforge.settings import is_loopback

    if is_loopback(settings.host):
        return
    if not settings.api_token and not insecure:
        fail(
            f"refusing to serve on {settings.host} without FLOWFORGE_API_TOKEN: anyone who can reach it "
            "could run shell commands. Set a token (or --token-file PATH), or pass --insecure.",
            EXIT_BAD_INPUT,
        )
    tokens = (
        ("API token", settings.api_token),
        ("FLOWFORGE_API_READ_TOKEN", settings.api_read_token),
        ("FLOWFORGE_WORKER_TOKEN", settings.worker_token),
    )
    for name, token in tokens:
        if token and len(token) < MIN_PUBLIC_TOKEN_CHARS:
            fail(
                f"refusing to serve on {settings.host} with a {len(token)}-character {name}: on a "
                f"non-loopback address it needs at least {MIN_PUBLIC_TOKEN_CHARS} characters "
                "(make one with: openssl rand -hex 32)",
                EXIT_BAD_INPUT,
            )


def find_examples() -> list[Path]:
    """The example DAG files shipped inside the package (`flowforge/examples/*.yaml`)."""
    folder = Path(str(resources.files("flowforge") / "examples"))
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []
