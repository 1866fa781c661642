"""A PostgreSQL server of a test's own: `initdb` into a temporary directory, `pg_ctl` on a free port.

A scenario that stops and starts PostgreSQL itself must never touch the server other tests share,
so it runs its own cluster: trust authentication on 127.0.0.1 only, its socket in its data
directory, no fsync (nothing here must survive a power cut). `initdb` and `postgres` refuse to
run as root, so a root test runs them as the `postgres` user through `runuser`, in a directory
that user owns; any other user runs them as itself.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.harness import free_port, wait_until

SUPERUSER = "postgres"  # the cluster's superuser role, whoever runs it
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}


def pg_bin_dir() -> Path | None:
    """The newest PostgreSQL's binaries (Debian's /usr/lib/postgresql/N/bin), else `pg_ctl` on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name)
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


class PostgresServer:
    """A private PostgreSQL cluster: `init()` once, then `start()`, `stop()`, `start()` … and `destroy()`."""

    def __init__(self) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None or not (bin_dir / "initdb").exists():
            pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
        self.bin = bin_dir
        self.as_user: str | None = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            try:
                self.owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no postgres user to run a PostgreSQL server as")
            self.as_user = "postgres"
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="flowforge-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode:
            raise AssertionError(
                f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}\n{self.server_log()}"
            )
        return done

    def init(self) -> PostgresServer:
        """initdb a fresh cluster (trust authentication, superuser `postgres`)."""
        if self.as_user:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)
        initdb = str(self.bin / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> float:
        """Start the server and wait until it accepts connections; returns that moment (epoch)."""
        options = [f"-p {self.port}", f"-k {self.data}"]
        options += [f"-c {name}={value}" for name, value in SERVER_SETTINGS.items()]
        pg_ctl = str(self.bin / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", " ".join(options), "-w", "start")
        wait_until("PostgreSQL to accept connections", self.accepts, timeout=30, poll=0.02)
        return time.time()

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m MODE`: fast disconnects every session and shuts down cleanly."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def accepts(self) -> bool:
        """True when a new connection succeeds and answers a query."""
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name`; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def server_log(self, tail: int = 4000) -> str:
        """The end of the server's own log."""
        try:
            return self.log.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop the server however it is (immediate shutdown, else SIGKILL) and delete its files."""
        if self.running():
            try:
                self.stop("immediate")
            except (AssertionError, subprocess.TimeoutExpired):
                self._kill_postmaster()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass
