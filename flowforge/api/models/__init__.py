"""Pydantic models of every request and answer of the REST API, so that /openapi.json says exactly what is sent.

The models live in four modules (`base`, `dags`, `runs`, `system`) and are all importable from
here. views.py builds each answer from a record's `to_dict()` (plus masking), in one place; these
models describe those forms field for field and do not rename anything. A form with a key its
model does not know fails its request (a 500), so a field added to a record or a route must be
added here too; `tests/test_api_fuzz.py` calls every route and `tests/test_api_models.py`
compares the records with the models, so that shows in the tests first. Times are Unix epoch
seconds (float) unless a field says it is an ISO-8601 string.
"""

from __future__ import annotations

from flowforge.api.models.base import (
    LIST_LIMIT_MAX,
    SAFE_INT_MAX,
    Answer,
    BackfillRequest,
    ErrorBody,
    ErrorResponse,
    Health,
    Page,
    Ready,
    RequestBody,
    RetryRequest,
    SubmitDagRequest,
    TriggerRequest,
    describe_auth_and_errors,
    errors,
)
from flowforge.api.models.dags import (
    BackfillResult,
    BackfillTick,
    DagDetail,
    DagList,
    DagSubmitted,
    DagSummary,
    DagVersionDetail,
    DagVersionList,
    DagVersionOut,
    SchedulePreview,
    ScheduleTick,
    TaskSpecOut,
)
from flowforge.api.models.runs import (
    AttemptOut,
    ExplainReason,
    LogPage,
    RunDetail,
    RunList,
    RunOut,
    RunRetried,
    TaskDetail,
    TaskExplanation,
    TaskInstanceOut,
    TaskList,
    TriggeredRun,
)
from flowforge.api.models.system import (
    DagFolderProblem,
    DagFolderState,
    Status,
    WorkerCounts,
    WorkerList,
    WorkerOut,
)

__all__ = [
    "LIST_LIMIT_MAX",
    "SAFE_INT_MAX",
    "Answer",
    "AttemptOut",
    "BackfillRequest",
    "BackfillResult",
    "BackfillTick",
    "DagDetail",
    "DagFolderProblem",
    "DagFolderState",
    "DagList",
    "DagSubmitted",
    "DagSummary",
    "DagVersionDetail",
    "DagVersionList",
    "DagVersionOut",
    "ErrorBody",
    "ErrorResponse",
    "ExplainReason",
    "Health",
    "LogPage",
    "Page",
    "Ready",
    "RequestBody",
    "RetryRequest",
    "RunDetail",
    "RunList",
    "RunOut",
    "RunRetried",
    "SchedulePreview",
    "ScheduleTick",
    "Status",
    "SubmitDagRequest",
    "TaskDetail",
    "TaskExplanation",
    "TaskInstanceOut",
    "TaskList",
    "TaskSpecOut",
    "TriggerRequest",
    "TriggeredRun",
    "WorkerCounts",
    "WorkerList",
    "WorkerOut",
    "describe_auth_and_errors",
    "errors",
]
