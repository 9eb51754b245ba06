"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every 4xx names what went wrong (``type``, ``title``, ``detail``) and, where one field is at
fault, which one: ``errors: [{"field": ..., "message": ...}]``. The library's typed errors map
to statuses here, in one table, so that a route only raises them.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.errors import (
    ArgumentsMismatch,
    BackendError,
    ConfigurationError,
    ConveyorError,
    DatabaseBusy,
    DependencyCycle,
    DependencyError,
    EnqueueError,
    IdempotencyConflict,
    InvalidArguments,
    InvalidTransition,
    JobNotFound,
    PayloadTooLarge,
    QueueFull,
    ScheduleNotFound,
    UnknownBreaker,
    UnknownParent,
    UnknownTask,
    WorkerNotFound,
    WorkflowNotFound,
)

MEDIA_TYPE = "application/problem+json"

#: (status, type slug, title), first match wins: subclasses before their bases.
_TABLE: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (UnknownTask, 422, "unknown-task", "Unknown task"),
    (ArgumentsMismatch, 422, "arguments-mismatch", "Arguments do not fit the task"),
    (InvalidArguments, 422, "invalid-arguments", "Arguments are not plain JSON"),
    (PayloadTooLarge, 413, "payload-too-large", "Job payload too large"),
    (QueueFull, 429, "queue-full", "Queue full"),
    (UnknownParent, 422, "unknown-parent", "A parent job does not exist"),
    (DependencyCycle, 422, "dependency-cycle", "Jobs depend on each other in a cycle"),
    (EnqueueError, 422, "invalid-job", "Invalid job"),
    (UnknownBreaker, 404, "breaker-not-found", "Breaker not found"),
    (ScheduleNotFound, 404, "schedule-not-found", "Schedule not found"),
    (ConfigurationError, 422, "invalid-value", "Invalid value"),
    (JobNotFound, 404, "job-not-found", "Job not found"),
    (WorkerNotFound, 404, "worker-not-found", "Worker not found"),
    (WorkflowNotFound, 404, "workflow-not-found", "Workflow not found"),
    (IdempotencyConflict, 409, "idempotency-conflict", "Idempotency key held by a live job"),
    (InvalidTransition, 409, "invalid-transition", "Not allowed in the job's state"),
    (DatabaseBusy, 503, "database-busy", "Database busy"),
    (BackendError, 503, "database-unavailable", "Database unavailable"),
)

#: Fields of a job named at the start of the library's messages ("priority must be ...").
_FIELD_WORDS = {
    "task name": "task",
    "queue name": "queue",
    "breaker name": "name",
    "idempotency_key": "idempotency_key",
    "priority": "priority",
    "unknown priority": "priority",
    "delay": "delay",
    "run_at": "run_at",
    "give either delay or run_at": "run_at",
    "max_attempts": "max_attempts",
    "timeout": "timeout",
    "max_running": "max_running",
    "depends_on": "depends_on",
    "on_parent_failure": "on_parent_failure",
    "workflow_id": "workflow_id",
    "limit": "limit",
    "before_id": "cursor",
    "a job id": "id",
    "job ids": "ids",
    "worker id": "worker_ids",
}
_FIELD_AT_START = re.compile(
    "^(" + "|".join(re.escape(w) for w in sorted(_FIELD_WORDS, key=len, reverse=True)) + r")\b"
)


class Problem(Exception):
    """Raised by a route for a problem of its own (not a library error)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.field = field
        self.extra = extra or {}
        self.headers = headers


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank" if slug == "about:blank" else f"urn:conveyor:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def field_of(exc: BaseException) -> str | None:
    """The request field a library error is about, when its message names one."""
    if isinstance(exc, UnknownTask):
        return "task"
    if isinstance(exc, ArgumentsMismatch | InvalidArguments):
        return "kwargs" if str(exc).startswith("kwargs") else "args"
    if isinstance(exc, QueueFull):
        return "queue"
    if isinstance(exc, DependencyError):
        return "depends_on"
    found = _FIELD_AT_START.match(str(exc))
    return _FIELD_WORDS[found.group(1)] if found else None


def classify(exc: ConveyorError) -> tuple[int, str, str]:
    """The status, type slug and title of a library error."""
    return next(
        ((s, u, t) for kind, s, u, t in _TABLE if isinstance(exc, kind)),
        (422, "invalid-request", "Invalid request"),
    )


def conveyor_problem(exc: ConveyorError, prefix: str = "") -> JSONResponse:
    """The problem document of a library error; ``prefix`` places its field (``jobs[3].``)."""
    status, slug, title = classify(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, QueueFull):
        extra = {"queue": exc.queue, "depth": exc.depth, "limit": exc.limit}
    elif isinstance(exc, PayloadTooLarge):
        extra = {"size": exc.size, "limit": exc.limit}
    elif isinstance(exc, InvalidTransition):
        extra = {"job_id": exc.job_id, "state": exc.state}
    elif isinstance(exc, JobNotFound):
        extra = {"job_id": exc.job_id}
    elif isinstance(exc, UnknownParent):
        extra = {"job_ids": exc.job_ids}
    elif isinstance(exc, DependencyCycle):
        extra = {"positions": exc.positions}
    elif isinstance(exc, WorkflowNotFound):
        extra = {"workflow_id": exc.workflow_id}
    elif isinstance(exc, UnknownBreaker):
        extra = {"breaker": exc.name}
    elif isinstance(exc, ScheduleNotFound):
        extra = {"schedule": exc.name}
    field = field_of(exc)
    errors = None if field is None else [{"field": prefix + field, "message": str(exc)}]
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return problem_response(
        status, slug, title, str(exc), errors=errors, extra=extra, headers=headers
    )


class PlacedError(Exception):
    """A library error about one job of a batch: its field is ``jobs[i].<field>``."""

    def __init__(self, error: ConveyorError, index: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.index = index


def install(api: FastAPI) -> None:
    """Answer every error the routes can meet with a problem document."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        errors = None if exc.field is None else [{"field": exc.field, "message": exc.detail}]
        return problem_response(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            errors=errors,
            extra=exc.extra,
            headers=exc.headers,
        )

    async def on_conveyor(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ConveyorError)
        return conveyor_problem(exc)

    async def on_placed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PlacedError)
        return conveyor_problem(exc.error, f"jobs[{exc.index}].")

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": _location(error.get("loc", ())), "message": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(
            422, "invalid-request", "Invalid request", detail or "invalid request", errors=errors
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            exc.status_code,
            "about:blank",
            _reason(exc.status_code),
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )

    async def on_too_deep(request: Request, exc: Exception) -> JSONResponse:
        # json.loads of a body nested thousands of levels deep.
        return problem_response(
            422, "invalid-request", "Invalid request", "the JSON body is nested too deeply"
        )

    api.add_exception_handler(Problem, on_problem)
    api.add_exception_handler(PlacedError, on_placed)
    api.add_exception_handler(ConveyorError, on_conveyor)
    api.add_exception_handler(RequestValidationError, on_validation)
    api.add_exception_handler(StarletteHTTPException, on_http)
    api.add_exception_handler(RecursionError, on_too_deep)


def _location(loc: Any) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
