"""A folder of DAG files kept in step with the store (`flowforge up --dags DIR`, `scheduler --dags DIR`).

Every `*.yaml` and `*.yml` file directly in the folder (hidden files and subfolders left out) is
submitted at start; then the folder is polled: only files whose modification time or size changed
are read again. A changed file is submitted (the store makes a new version only when the spec
differs); a file that became invalid is reported with its place and the last good version of its
DAG stays as it was; a DAG that came from this folder and that no file declares any more (its
file was removed, or now declares another id) is deactivated. DAGs submitted otherwise are never
touched. `activate_dag` is the explicit counterpart of `operations.deactivate_dag`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowforge.core.dagfile import dag_files_in, load_dag_file
from flowforge.core.errors import DagValidationError, Problem
from flowforge.core.records import DagRecord
from flowforge.operations import deactivate_dag, submit_dag_file
from flowforge.queues.base import Queue
from flowforge.services import Services, StartupError
from flowforge.store.base import Store

log = logging.getLogger(__name__)

POLL_SECS = 2.0
MAX_FOLDER_FILES = 10_000  # past it the rest are reported, not read: a poll stays cheap


def activate_dag(store: Store, queue: Queue, dag_id: str) -> DagRecord:
    """Let a deactivated DAG run again, at its latest version; NotFound for an unknown DAG.

    Like unpausing, the ticks missed while it was inactive are replayed only with `catchup: true`.
    """
    record = store.get_dag(dag_id)
    skip_missed = not record.active and not record.spec.catchup
    record = store.set_dag_flags(dag_id, active=True, schedule_after=time.time() if skip_missed else None)
    queue.wake_scheduler()
    return record


@dataclass(frozen=True)
class FolderProblem:
    """A file of the folder that could not be loaded: `text` is FILE:LINE:COLUMN: FIELD: MESSAGE."""

    file: str
    text: str


class DagFolder:
    """One folder of DAG files and what this process stored from it since it started."""

    def __init__(self, store: Store, queue: Queue, path: Path) -> None:
        self.store, self.queue, self.path = store, queue, path
        self._stamps: dict[Path, tuple[int, int]] = {}  # file -> (mtime_ns, size) last read
        self._dag_of: dict[Path, str] = {}  # file -> the DAG id its last good text declared
        self._file_of: dict[str, Path] = {}  # the other way round
        self._problems: dict[Path, list[str]] = {}
        self._loaded: set[str] = set()  # DAG ids stored from this folder and not deactivated since
        self._lock = threading.Lock()  # `status` reads while `scan` writes

    def check(self) -> None:
        """StartupError (exit 2) when the folder is not a readable folder."""
        if not self.path.is_dir():
            raise StartupError(f"--dags {self.path}: not a folder (FLOWFORGE_DAGS_DIR)", 2)
        try:
            dag_files_in(self.path)
        except OSError as exc:
            raise StartupError(f"--dags {self.path}: cannot read it ({exc.strerror or exc})", 2) from None

    def scan(self) -> None:
        """Bring the store in step with the folder once: read changed files, deactivate gone DAGs."""
        try:
            files = dag_files_in(self.path)
        except OSError as exc:  # the folder went away: keep everything as it is, say so
            self._set_problems({self.path: [f"{self.path}: cannot read the folder ({exc.strerror or exc})"]})
            return
        skipped = files[MAX_FOLDER_FILES:]
        files = files[:MAX_FOLDER_FILES]
        with self._lock:
            self._problems.pop(self.path, None)
            gone = set(self._stamps) - set(files)
            for path in gone:
                self._forget(path)
            if gone:  # a file that clashed with a removed one may be good now: read them again
                for path in self._problems:
                    self._stamps.pop(path, None)
            for path in files:
                self._read_if_changed(path)
            if skipped:
                self._problems[self.path] = [
                    f"{self.path}: {len(skipped)} file(s) past the first {MAX_FOLDER_FILES} left out"
                ]
            self._deactivate_gone()

    def status(self) -> dict[str, Any]:
        """What `GET /api/v1/status` shows of the folder: its path, files, DAGs and problems."""
        with self._lock:
            problems = [
                {"file": str(path), "text": text} for path, texts in self._problems.items() for text in texts
            ]
            return {
                "path": str(self.path),
                "files": len(self._stamps),
                "dags": sorted(self._file_of),
                "problems": problems,
            }

    def run(self, stop: threading.Event, every: float = POLL_SECS) -> None:
        """Scan until `stop` is set; a failing store is logged and the scan tried again next time."""
        while not stop.wait(every):
            try:
                self.scan()
            except Exception:
                log.warning("DAG folder %s: scan failed; trying again", self.path, exc_info=True)

    # -- one file ---------------------------------------------------------------------------------
    def _read_if_changed(self, path: Path) -> None:
        try:
            st = path.stat()
        except OSError:
            self._forget(path)
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if self._stamps.get(path) == stamp:
            return
        try:
            self._load(path)
        except Exception:  # the store failed (unavailable, conflict): read the file again next time
            self._stamps.pop(path, None)
            raise
        self._stamps[path] = stamp

    def _load(self, path: Path) -> None:
        try:
            spec = load_dag_file(path)
        except DagValidationError as exc:
            self._report(path, [p.format(str(path)) for p in exc.problems])
            return
        owner = self._file_of.get(spec.id)
        if owner is not None and owner != path:
            problem = Problem(f"DAG id {spec.id!r} is also declared by {owner}", "id")
            self._report(path, [problem.format(str(path))])
            return
        submission = submit_dag_file(self.store, self.queue, path)
        self._problems.pop(path, None)
        self._unlink(path)
        self._dag_of[path] = spec.id
        self._file_of[spec.id] = path
        self._loaded.add(spec.id)
        record = submission.record
        if submission.created or submission.changed:
            log.info("DAG folder: stored %s version %d from %s", record.dag_id, record.version, path)

    def _report(self, path: Path, texts: list[str]) -> None:
        self._problems[path] = texts
        kept = self._dag_of.get(path)
        for text in texts:
            log.warning("DAG folder: %s", text)
        if kept:
            log.warning("DAG folder: %s is invalid; DAG %s keeps its last good version", path, kept)

    def _forget(self, path: Path) -> None:
        self._stamps.pop(path, None)
        self._problems.pop(path, None)
        self._unlink(path)

    def _unlink(self, path: Path) -> None:
        dag_id = self._dag_of.pop(path, None)
        if dag_id is not None and self._file_of.get(dag_id) == path:
            del self._file_of[dag_id]

    def _deactivate_gone(self) -> None:
        for dag_id in sorted(self._loaded - self._file_of.keys()):
            deactivate_dag(self.store, dag_id)
            self._loaded.discard(dag_id)
            log.info("DAG folder: deactivated %s (no file in %s declares it any more)", dag_id, self.path)

    def _set_problems(self, problems: dict[Path, list[str]]) -> None:
        with self._lock:
            self._problems.update(problems)
        for texts in problems.values():
            for text in texts:
                log.warning("DAG folder: %s", text)


_watched: list[DagFolder] = []  # the folder this process keeps in step, for the status answer


def watch(folder: DagFolder) -> None:
    """Make `folder` the one `watched_status` reports (a process watches one folder at most)."""
    _watched[:] = [folder]


def watched_status() -> dict[str, Any] | None:
    """The status of the folder this process keeps in step; None when it keeps none."""
    return _watched[0].status() if _watched else None


def keep_in_step(services: Services, stop: threading.Event) -> threading.Thread | None:
    """With --dags DIR: load the folder now, then keep it in step in a thread until `stop` is set.

    StartupError (exit 2) when DIR is not a readable folder; None without --dags.
    """
    path = services.settings.dags_dir
    if path is None:
        return None
    folder = DagFolder(services.store, services.queue, path)
    folder.check()
    folder.scan()
    watch(folder)
    state = folder.status()
    log.info(
        "DAG folder %s: %d file(s), %d DAG(s), %d problem(s); watching it for changes",
        path,
        state["files"],
        len(state["dags"]),
        len(state["problems"]),
    )
    thread = threading.Thread(target=folder.run, args=(stop,), name="dag-folder", daemon=True)
    thread.start()
    return thread
