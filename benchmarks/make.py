"""The floor: GNU make -j2 running the same DAG, one `sh -c true` per task."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.workloads import makefile
from flowforge.core.model import DagSpec


def make_version() -> str | None:
    """`GNU Make 4.3`, or None when make is not installed."""
    exe = shutil.which("make")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "make"


class MakeRunner:
    """Runs one DAG's Makefile with `make -jN` and times it from start to exit."""

    def __init__(self, spec: DagSpec, folder: Path, jobs: int = 2) -> None:
        self.jobs = jobs
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "Makefile"
        self.path.write_text(makefile(spec), encoding="utf-8")
        exe = shutil.which("make")
        if exe is None:
            raise RuntimeError("GNU make is not installed; it is the floor every figure is compared with")
        self.argv = [exe, f"-j{jobs}", "-s", "-f", str(self.path), "all"]
        # No inherited MAKEFLAGS (a jobserver from an outer make would change -j).
        self.env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def run(self) -> float:
        """Wall seconds of one `make -jN all`; RuntimeError when make fails."""
        started = time.perf_counter()
        result = subprocess.run(self.argv, cwd=self.folder, env=self.env, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"make failed ({result.returncode}): {result.stderr.decode(errors='replace')}")
        return elapsed
