"""Requests and answers of the execution API (`/api/v1/worker/...`), what API-mode workers call.

Times a worker sends are its own clock's; the server reads them against its own clock (see
`routes_worker`). Lease tokens travel here, and only here: they are the worker's fencing tokens.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flowforge.api.models.base import SAFE_INT_MAX, Answer, RequestBody

MAX_LEASE_SECS = 3600.0  # the longest lease a worker may ask for
MAX_LOG_CHUNKS = 1000  # chunks in one log batch
MAX_LEASES = 10_000  # leases renewed in one request
_ID = Field(min_length=1, max_length=200)
_WORKER_ID = Field(min_length=1, max_length=200, description="the worker's id (host-pid-random)")
_ATTEMPT = Field(ge=1, le=SAFE_INT_MAX)
_TOKEN = Field(min_length=1, max_length=200, description="the attempt's lease token, from its claim")


class WorkerBeat(RequestBody):
    """Body of POST /api/v1/worker/register and /heartbeat: the worker as `flowforge workers` shows it."""

    worker_id: str = _WORKER_ID
    host: str = Field(max_length=255)
    pid: int = Field(ge=0, le=SAFE_INT_MAX)
    slots: int = Field(ge=1, le=100_000)
    started_at: float = Field(description="when the worker started, by its clock")
    last_heartbeat: float = Field(description="now, by the worker's clock (the server records its own time)")
    running: list[str] = Field(default_factory=list, max_length=100_000, description='"run_id/task_id" held')
    state: Literal["alive", "stopped"] = "alive"


class Registered(Answer):
    """Answer of register and heartbeat: the settings a worker must share with the scheduler."""

    worker_id: str
    heartbeat_secs: float = Field(description="heartbeat every this long; three missed beats and it is dead")


class ClaimRequest(RequestBody):
    """Body of POST /api/v1/worker/claim."""

    worker_id: str = _WORKER_ID
    lease_secs: float = Field(gt=0, le=MAX_LEASE_SECS, description="the lease the claim takes")


class ClaimedTask(Answer):
    """A claimed attempt: the worker now holds its lease and must run it, renew it and finish it."""

    run_id: str
    task_id: str
    attempt: int
    lease_token: str
    lease_expires_at: float | None
    queued_at: float | None
    started_at: float | None
    lost_attempts: int = Field(description="attempts lost to the platform so far (they used no retry)")


class ReleaseRequest(RequestBody):
    """Body of POST /api/v1/worker/release."""

    worker_id: str = _WORKER_ID


class Released(Answer):
    """Answer of release: how many waiting claims of the worker ended (with no task)."""

    released: int


class Lease(RequestBody):
    """One held attempt's lease."""

    run_id: str = _ID
    task_id: str = _ID
    attempt: int = _ATTEMPT
    lease_token: str = _TOKEN


class RenewRequest(RequestBody):
    """Body of POST /api/v1/worker/renew: every lease the worker holds, renewed in one transaction."""

    worker_id: str = _WORKER_ID
    lease_secs: float = Field(gt=0, le=MAX_LEASE_SECS)
    leases: list[Lease] = Field(max_length=MAX_LEASES)


class Renewed(Answer):
    """Answer of renew when every lease was renewed (a lost one makes it a 409 listing them)."""

    renewed: int


class LogChunk(RequestBody):
    """A piece of an attempt's output, secrets already masked by the worker."""

    run_id: str = _ID
    task_id: str = _ID
    attempt: int = _ATTEMPT
    text: str


class LogBatch(RequestBody):
    """Body of POST /api/v1/worker/logs: chunks appended in order."""

    chunks: list[LogChunk] = Field(max_length=MAX_LOG_CHUNKS)


class LogsAppended(Answer):
    """Answer of logs: how many chunks were appended, and those refused (their attempt is unknown)."""

    appended: int
    refused: list[dict[str, Any]] = Field(description="{run_id, task_id, attempt, message} per chunk")


class FinishRequest(RequestBody):
    """Body of POST /api/v1/worker/finish: the arguments of the store's finish, as the worker computed them."""

    run_id: str = _ID
    task_id: str = _ID
    attempt: int = _ATTEMPT
    worker_id: str = _WORKER_ID
    lease_token: str = _TOKEN
    state: Literal["success", "failed", "up_for_retry"]
    now: float = Field(description="the worker's clock when it decided; retry_at is read against it")
    exit_code: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    error: str | None = Field(None, max_length=100_000)
    retry_at: float | None = None
    attempt_state: Literal["success", "failed", "lost"] | None = None
    outputs: dict[str, str] | None = Field(None, description="what the task wrote to $FLOWFORGE_OUTPUT")


class Finished(Answer):
    """Answer of finish: the result is recorded (a stale lease makes it a 409, recording nothing)."""

    recorded: Literal[True]
    next: ClaimedTask | None = Field(
        None, description="with ?claim=LEASE_SECS: the next ready task, claimed for this worker, if one was"
    )
