"""FlowForge's own secrets out of a task's reach: no token or password in the environment block of
any ancestor of a task (`/proc/PID/environ`, readable by every process of the same user).

Each server command that finds secret settings in its environment starts itself again without
them and reads them from an inherited pipe; a task walks its ancestors' environments and prints
them, and none of the secrets may appear in its log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from flowforge.settings import HANDOVER_FD_VAR, secret_settings
from tests.cluster import Cluster
from tests.harness import TERMINAL_RUN_STATES, clean_env, start_up, wait_until

pytestmark = pytest.mark.e2e

# Every ancestor's environment, from the task's parent up to (not including) pid 1.
WALK_DAG = r"""id: walk
tasks:
  - id: t
    command: |
      pid=$PPID
      while [ "$pid" -gt 1 ]; do
        echo "== $pid"
        tr '\0' '\n' < /proc/$pid/environ
        pid=$(awk '/^PPid:/ {print $2}' /proc/$pid/status)
      done
"""


def secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def walked_log(url: str, headers: dict[str, str]) -> str:
    """Submit and run the walking DAG through the API at `url`; its task's log."""
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        assert client.post("/api/v1/dags", json={"yaml": WALK_DAG}).status_code == 201
        run_id = client.post("/api/v1/runs", json={"dag_id": "walk"}).json()["run_id"]

        def ended() -> bool:
            return client.get(f"/api/v1/runs/{run_id}").json()["state"] in TERMINAL_RUN_STATES

        wait_until("the walking task to end", ended, 60)
        assert client.get(f"/api/v1/runs/{run_id}").json()["state"] == "success"
        return str(client.get(f"/api/v1/runs/{run_id}/tasks/t/logs").json()["text"])


def test_no_ancestor_of_a_task_in_up_holds_a_token(tmp_path: Path) -> None:
    token, read_token = secret("tok"), secret("read")
    home = tmp_path / "home"
    env = clean_env(FLOWFORGE_API_TOKEN=token, FLOWFORGE_API_READ_TOKEN=read_token, FLOWFORGE_HOME=str(home))
    proc = start_up(home, "--concurrency", "1", env=env)
    try:
        log = walked_log(proc.url, {"Authorization": f"Bearer {token}"})
        # The secrets still work: they reached the server through the pipe.
        read = httpx.get(f"{proc.url}/api/v1/dags", headers={"Authorization": f"Bearer {read_token}"})
        assert read.status_code == 200
    finally:
        proc.stop()
    assert f"== {proc.pid}\n" in log and f"FLOWFORGE_HOME={home}" in log, (
        "the walk read FlowForge's own environment"
    )
    assert f"{HANDOVER_FD_VAR}=" in log
    assert token not in log and read_token not in log
    assert token not in proc.output() and read_token not in proc.output()


def with_password(url: str, password: str) -> str:
    """`url` with `password` in its user part (the test services accept any password)."""
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """api + scheduler + worker on PostgreSQL and Redis URLs with passwords, and a token."""
    secrets = {"db": secret("dbpw"), "queue": secret("redispw"), "token": secret("tok")}
    c = Cluster(
        tmp_path,
        db_url=with_password(pg_url, secrets["db"]),
        queue_url=with_password(redis_url, secrets["queue"]),
        env={"FLOWFORGE_API_TOKEN": secrets["token"]},
    )
    try:
        c.start_api()
        c.start_scheduler()
        c.start_worker("worker", 1)
        c.wait_workers(["worker"])
        yield c, secrets
    finally:
        c.close()


def test_no_ancestor_of_a_distributed_worker_task_holds_a_password(
    cluster: tuple[Cluster, dict[str, str]],
) -> None:
    c, secrets = cluster
    log = walked_log(c.url, {"Authorization": f"Bearer {secrets['token']}"})
    assert f"== {c.procs['worker'].pid}\n" in log and "FLOWFORGE_QUEUE" not in log
    for value in secrets.values():
        assert value not in log
        for name in ("api", "scheduler", "worker"):
            assert value not in c.procs[name].output(), name
    for name in ("api", "scheduler", "worker"):
        environ = Path(f"/proc/{c.procs[name].pid}/environ").read_bytes().decode(errors="replace")
        assert not any(value in environ for value in secrets.values()), name


def test_which_settings_are_secret() -> None:
    env = {
        "FLOWFORGE_API_TOKEN": "t",
        "FLOWFORGE_API_READ_TOKEN": "",
        "FLOWFORGE_DB": "sqlite:////var/lib/ff.db",
        "FLOWFORGE_QUEUE": "redis://:pw@cache:6379/0",
        "FLOWFORGE_HOME": "/x",
    }
    assert secret_settings(env) == {"FLOWFORGE_API_TOKEN": "t", "FLOWFORGE_QUEUE": "redis://:pw@cache:6379/0"}
    assert secret_settings({"FLOWFORGE_DB": "host=db password=x"}) == {"FLOWFORGE_DB": "host=db password=x"}
    assert secret_settings({"FLOWFORGE_DB": "postgresql://ff@db/ff"}) == {}


def test_without_secrets_nothing_is_handed_over(tmp_path: Path) -> None:
    proc = start_up(tmp_path / "home", "--concurrency", "1")
    try:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().decode(errors="replace")
        assert HANDOVER_FD_VAR not in environ  # started once: nothing to hide, no second exec
    finally:
        proc.stop()
