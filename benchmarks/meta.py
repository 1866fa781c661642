"""What a result was measured on: which commit, when, which machine and how busy it was, which versions.

A result names the commit it measured, so figures are saved only from a clean working tree (see
`tree_state`). The 1-minute load average and the CPU count are read at the start and at the end
of each section; a section that started on a busy machine (load above BUSY_LOAD) is marked
"machine busy" instead of being judged against its goals.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import REPO_DIR
from benchmarks.make import make_version
from flowforge import __version__

BUSY_LOAD = 1.0  # a 1-minute load average above this at the start: the figures are not judged
SHOWN_CHANGES = 5


def load1() -> float | None:
    """The 1-minute load average, or None where the system has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def busy(meta: dict[str, Any]) -> bool:
    """True when the section started with the machine busier than BUSY_LOAD.

    Results written before the load was recorded this way carry `load_before` (1, 5, 15 minutes).
    """
    start = meta.get("load1_start")
    if start is None and meta.get("load_before"):
        start = meta["load_before"][0]
    return start is not None and start > BUSY_LOAD


def _git(repo: Path, *args: str) -> str | None:
    # No optional locks: `git status` must not rewrite the index while others work in the tree.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        result = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=True, env=env
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout


def commit(repo: Path = REPO_DIR) -> str | None:
    """The commit checked out in `repo` (`git rev-parse HEAD`), or None outside a git checkout."""
    out = _git(repo, "rev-parse", "HEAD")
    return out.strip() if out else None


def tree_state(repo: Path = REPO_DIR, *, ignore: tuple[str, ...] = ()) -> tuple[str | None, str | None]:
    """(the commit checked out, why figures measured on it cannot be saved; None when they can).

    They can when `git status --porcelain` shows nothing but the paths in `ignore` (the results
    files themselves): then the commit is exactly what was measured.
    """
    sha = commit(repo)
    status = _git(repo, "status", "--porcelain")
    if sha is None or status is None:
        return sha, f"{repo} is not a git checkout, so no commit can name what was measured"
    changes = [line for line in status.splitlines() if line[3:].strip() not in ignore]
    if not changes:
        return sha, None
    shown = ", ".join(line.strip() for line in changes[:SHOWN_CHANGES])
    more = f" and {len(changes) - SHOWN_CHANGES} more" if len(changes) > SHOWN_CHANGES else ""
    return sha, f"the working tree of {repo} differs from commit {sha[:12]} ({shown}{more})"


def meta(repo: Path = REPO_DIR, **extra: Any) -> dict[str, Any]:
    """A section's metadata at its start; `finish` adds the end."""
    load = load1()
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit(repo),
        "cpus_start": os.cpu_count(),
        "load1_start": load,
        "busy": load is not None and load > BUSY_LOAD,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "flowforge": __version__,
        "make": make_version(),
        **extra,
    }


def finish(section_meta: dict[str, Any]) -> dict[str, Any]:
    """Add the end of a section to its metadata: time, CPU count and 1-minute load average."""
    section_meta.update(
        ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), cpus_end=os.cpu_count(), load1_end=load1()
    )
    return section_meta
