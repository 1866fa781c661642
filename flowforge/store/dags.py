"""DAGs and their versions (tables `dags`, `dag_versions`): store, read, flag.

A stored version's spec never changes, so parsed specs are cached per (dag_id, version).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from flowforge.core.errors import NotFound
from flowforge.core.model import DagSpec
from flowforge.core.records import DagRecord, DagVersion
from flowforge.store.db import Columns, Dialect
from flowforge.store.events import EventLog

# The spec column holds the spec's JSON; `_dag` parses it (through the cache).
DAG_COLUMNS = Columns(
    DagRecord,
    "dags d JOIN dag_versions v ON v.dag_id = d.dag_id AND v.version = d.latest_version",
    "d.dag_id, d.latest_version AS version, v.spec_json AS spec, v.source, d.active, d.paused,"
    " d.created_at, d.updated_at, d.schedule_after",
    active=bool,
    paused=bool,
)
DAG_ID, VERSION, SPEC = (DAG_COLUMNS.index(name) for name in ("dag_id", "version", "spec"))
GET_DAG = DAG_COLUMNS.select + " WHERE d.dag_id = ?"
LIST_DAGS = DAG_COLUMNS.select + " WHERE (? OR d.active) ORDER BY d.dag_id"
DAG_LATEST = (
    "SELECT d.latest_version, d.active, v.spec_json FROM dags d"
    " JOIN dag_versions v ON v.dag_id = d.dag_id AND v.version = d.latest_version WHERE d.dag_id = ?"
)
INSERT_DAG = (
    "INSERT INTO dags (dag_id, latest_version, active, paused, schedule_after, created_at, updated_at)"
    " VALUES (?, 1, TRUE, FALSE, ?, ?, ?)"
)
UPDATE_DAG_VERSION = "UPDATE dags SET latest_version = ?, active = TRUE, updated_at = ? WHERE dag_id = ?"
# Reactivating a deactivated DAG starts its schedule afresh: no replay of the ticks it was gone.
REACTIVATE_DAG = (
    "UPDATE dags SET active = TRUE, schedule_after = ?, updated_at = ? WHERE dag_id = ? AND NOT active"
)
INSERT_VERSION = (
    "INSERT INTO dag_versions (dag_id, version, spec_json, source, created_at) VALUES (?, ?, ?, ?, ?)"
)
GET_SPEC = "SELECT spec_json FROM dag_versions WHERE dag_id = ? AND version = ?"
LIST_VERSIONS = (
    "SELECT version, spec_json, created_at FROM dag_versions WHERE dag_id = ?"
    " ORDER BY version DESC LIMIT ? OFFSET ?"
)
GET_VERSION = "SELECT spec_json, created_at, source FROM dag_versions WHERE dag_id = ? AND version = ?"

# The scheduler lists the DAGs on every tick, and parsing a big spec each time cost milliseconds.
SPEC_CACHE_SIZE = 128

SpecCache = dict[tuple[str, int], DagSpec]


def canonical(spec: DagSpec) -> str:
    """The spec's JSON as stored: sorted keys, no spaces, so equal specs give equal text."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def _spec(dag_id: str, version: int, spec_json: str, cache: SpecCache | None) -> DagSpec:
    spec = None if cache is None else cache.get((dag_id, version))
    if spec is None:
        spec = DagSpec.from_dict(json.loads(spec_json))
        if cache is not None:
            if len(cache) >= SPEC_CACHE_SIZE:
                cache.clear()
            cache[(dag_id, version)] = spec
    return spec


def spec_hash(spec_json: str) -> str:
    """The SHA-256 of a stored spec's JSON, in hex."""
    return hashlib.sha256(spec_json.encode("utf-8")).hexdigest()


def _dag(row: Sequence[Any], cache: SpecCache | None = None) -> DagRecord:
    values = DAG_COLUMNS.values(row)
    values[SPEC] = _spec(values[DAG_ID], values[VERSION], values[SPEC], cache)
    return DagRecord(*values)


class Dags(EventLog):
    """Storing DAG versions and reading them, with the DAGs' active/paused flags."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect)
        self._specs: SpecCache = {}

    def put_dag(self, spec: DagSpec, source: str, now: float) -> DagRecord:
        """Store a DAG; a new version only when the spec differs from the latest."""
        spec_json = canonical(spec)
        with self._transaction() as cur:
            row = self._exec(cur, DAG_LATEST, (spec.id,)).fetchone()
            if row is None:
                self._exec(cur, INSERT_DAG, (spec.id, now, now, now))
                self._exec(cur, INSERT_VERSION, (spec.id, 1, spec_json, source, now))
            else:
                version, _active, old_json = row
                self._exec(cur, REACTIVATE_DAG, (now, now, spec.id))
                # Compare through from_dict/to_dict so a spec stored by an older FlowForge (fewer
                # fields) does not count as changed.
                if canonical(DagSpec.from_dict(json.loads(old_json))) != spec_json:
                    self._exec(cur, INSERT_VERSION, (spec.id, version + 1, spec_json, source, now))
                    self._exec(cur, UPDATE_DAG_VERSION, (version + 1, now, spec.id))
            self._emit_dag(cur, spec.id, now)
            return _dag(self._exec(cur, GET_DAG, (spec.id,)).fetchone())

    def get_dag(self, dag_id: str) -> DagRecord:
        """The DAG with its latest version (active or not); raises NotFound."""
        return _dag(self._one(GET_DAG, (dag_id,), f"no DAG {dag_id!r}"), self._specs)

    def list_dags(self, include_inactive: bool = False) -> list[DagRecord]:
        """All DAGs ordered by id, latest version each; inactive ones only when asked."""
        return [_dag(r, self._specs) for r in self._all(LIST_DAGS, (include_inactive,))]

    def get_dag_spec(self, dag_id: str, version: int) -> DagSpec:
        """The spec of one stored version; raises NotFound."""
        cached = self._specs.get((dag_id, version))
        if cached is not None:
            return cached
        row = self._one(GET_SPEC, (dag_id, version), f"no version {version} of DAG {dag_id!r}")
        return _spec(dag_id, version, row[0], self._specs)

    def list_dag_versions(self, dag_id: str, limit: int, offset: int = 0) -> list[DagVersion]:
        """A page of a DAG's stored versions, newest first, without their sources ([] for none)."""
        rows = self._all(LIST_VERSIONS, (dag_id, limit, offset))
        return [DagVersion(dag_id, version, spec_hash(spec_json), at) for version, spec_json, at in rows]

    def get_dag_version(self, dag_id: str, version: int) -> DagVersion:
        """One stored version with its YAML source; raises NotFound."""
        missing = f"no version {version} of DAG {dag_id!r}"
        spec_json, at, source = self._one(GET_VERSION, (dag_id, version), missing)
        return DagVersion(dag_id, version, spec_hash(spec_json), at, source)

    def set_dag_flags(
        self,
        dag_id: str,
        *,
        active: bool | None = None,
        paused: bool | None = None,
        schedule_after: float | None = None,
    ) -> DagRecord:
        """Change a DAG's active/paused flags and where its cron ticks count from; raises NotFound."""
        changes = (("active", active), ("paused", paused), ("schedule_after", schedule_after))
        sets = [f"{name} = ?" for name, value in changes if value is not None]
        params = [value for _, value in changes if value is not None]
        with self._transaction() as cur:
            if sets:
                sql = f"UPDATE dags SET {', '.join(sets)} WHERE dag_id = ?"
                if self._exec(cur, sql, (*params, dag_id)).rowcount:
                    self._emit_dag(cur, dag_id, time.time())
            row = self._exec(cur, GET_DAG, (dag_id,)).fetchone()
        if row is None:
            raise NotFound(f"no DAG {dag_id!r}")
        return _dag(row)
