"""One frozen Settings, from flags > FLOWFORGE_* environment variables > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:8080"

# Environment variables that configure FlowForge itself. Tasks never see them (DESIGN §5).
SETTINGS_ENV_VARS = (
    "FLOWFORGE_DB",
    "FLOWFORGE_QUEUE",
    "FLOWFORGE_HOME",
    "FLOWFORGE_API_URL",
    "FLOWFORGE_API_TOKEN",
    "FLOWFORGE_API_READ_TOKEN",
    "FLOWFORGE_LOG_FORMAT",
    "FLOWFORGE_LOG_LEVEL",
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

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from the environment, with explicit (non-None) overrides winning."""
        home = Path(str(overrides.pop("home"))) if overrides.get("home") else default_home()
        overrides.pop("home", None)
        base = cls(
            home=home,
            db_url=os.environ.get("FLOWFORGE_DB") or f"sqlite:///{home / 'flowforge.db'}",
            queue_url=os.environ.get("FLOWFORGE_QUEUE") or "memory://",
            concurrency=os.cpu_count() or 2,
            api_token=os.environ.get("FLOWFORGE_API_TOKEN") or None,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
