"""The routes of flow control (conveyor/limits/): circuit breakers, the gates of queues (pause,
quiet hours, rate limits), periodic schedules, and why a job waits -- what the CLI's
``conveyor breakers``, ``conveyor queues pause|resume|quiet|rate|gates``, ``conveyor
schedules`` and ``conveyor jobs why`` do, with the same library calls."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body

from conveyor import bounds
from conveyor.app import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.limits import QueueGate
from conveyor.limits.quiet import QuietHours, check_timezone, parse_days
from conveyor.limits.rates import parse_rate
from conveyor.limits.times import moment
from conveyor.limits.why import document

from .models import PauseIn, QuietHoursIn, RateLimitIn
from .problems import Problem

T = TypeVar("T")


def router(app: Conveyor, write: Sequence[Any]) -> APIRouter:
    """The routes; ``write`` are the dependencies of those that change something."""
    api = APIRouter()

    # --- circuit breakers ---------------------------------------------------------------

    @api.get("/breakers", tags=["breakers"], summary="Every circuit breaker and its state")
    def list_breakers() -> dict[str, Any]:
        """Declared (with ``--app``) or stored breakers: state, failures in the window, when
        it opened, when the next probe may start, the tasks behind it."""
        return {"breakers": [found.to_dict() for found in app.breakers()]}

    @api.post(
        dependencies=write,
        path="/breakers/{name}/open",
        tags=["breakers"],
        summary="Open a breaker by hand",
        responses={404: {"description": "no such breaker"}},
    )
    def open_breaker(name: str) -> dict[str, Any]:
        """Fleet-wide, until closed by hand: none of its tasks' jobs starts, and no probe."""
        return app.open_breaker(name).to_dict()

    @api.post(
        dependencies=write,
        path="/breakers/{name}/close",
        tags=["breakers"],
        summary="Close a breaker by hand",
        responses={404: {"description": "no such breaker"}},
    )
    def close_breaker(name: str) -> dict[str, Any]:
        """Its jobs run again; its failures are forgotten."""
        return app.close_breaker(name).to_dict()

    # --- queue gates --------------------------------------------------------------------

    @api.get("/queues/{name}/gates", tags=["queues"], summary="A queue's gates")
    def get_gates(name: str) -> dict[str, Any]:
        """Its cap, pause, quiet hours and rate limit (all null for a queue without gates)."""
        return gate_of(app, name).to_dict()

    @api.post(
        dependencies=write,
        path="/queues/{name}/pause",
        tags=["queues"],
        summary="Pause a queue",
    )
    def pause(name: str, body: Annotated[PauseIn | None, Body()] = None) -> dict[str, Any]:
        """Start no job of the queue on any worker until resumed, or until ``until``. Running
        jobs finish; enqueue goes on; workers follow within about a second."""
        return pause_queue(app, name, None if body is None else body.until).to_dict()

    @api.post(
        dependencies=write,
        path="/queues/{name}/resume",
        tags=["queues"],
        summary="Resume a paused queue",
    )
    def resume(name: str) -> dict[str, Any]:
        app.resume_queue(name)
        return gate_of(app, name).to_dict()

    @api.put(
        dependencies=write,
        path="/queues/{name}/rate-limit",
        tags=["queues"],
        summary="Limit a queue's job starts per period",
    )
    def put_rate_limit(name: str, body: RateLimitIn) -> dict[str, Any]:
        """At most so many starts per period across every worker (``"100/m"``, ``"5/s"``,
        ``"1000/h"``, ``"3/10s"``), spaced evenly."""
        return set_rate_limit(app, name, body.rate).to_dict()

    @api.delete(
        dependencies=write,
        path="/queues/{name}/rate-limit",
        tags=["queues"],
        summary="Remove a queue's rate limit",
    )
    def delete_rate_limit(name: str) -> dict[str, Any]:
        app.set_rate_limit(name, None)
        return gate_of(app, name).to_dict()

    @api.put(
        dependencies=write,
        path="/queues/{name}/quiet-hours",
        tags=["queues"],
        summary="Set a queue's quiet hours",
    )
    def put_quiet_hours(name: str, body: QuietHoursIn) -> dict[str, Any]:
        """No job of the queue starts during ``windows`` of local time (``"08:00-18:00"``,
        several separated by commas) on ``days`` (``"mon-fri"``; null: every day) in
        ``timezone`` (an IANA name)."""
        _field("timezone", lambda: check_timezone(body.timezone))
        _field("days", lambda: parse_days(body.days))
        _field(
            "windows",
            lambda: QuietHours.parse(body.windows, days=body.days, timezone=body.timezone),
        )
        app.set_quiet_hours(name, body.windows, days=body.days, timezone=body.timezone)
        return gate_of(app, name).to_dict()

    @api.delete(
        dependencies=write,
        path="/queues/{name}/quiet-hours",
        tags=["queues"],
        summary="Remove a queue's quiet hours",
    )
    def delete_quiet_hours(name: str) -> dict[str, Any]:
        app.set_quiet_hours(name, None)
        return gate_of(app, name).to_dict()

    # --- schedules ----------------------------------------------------------------------

    @api.get("/schedules", tags=["schedules"], summary="Every periodic schedule")
    def list_schedules() -> dict[str, Any]:
        """Declared (with ``--app``) or recorded schedules, with their last and next ticks."""
        return {"schedules": [info.to_dict() for info in app.schedules_info()]}

    @api.post(
        dependencies=write,
        path="/schedules/{name}/pause",
        tags=["schedules"],
        summary="Pause a schedule",
        responses={404: {"description": "no such schedule"}},
    )
    def pause_schedule(name: str) -> dict[str, Any]:
        """No tick is enqueued until resumed, fleet-wide; ticks passed meanwhile are
        dropped."""
        app.pause_schedule(name)
        return _schedule(app, name)

    @api.post(
        dependencies=write,
        path="/schedules/{name}/resume",
        tags=["schedules"],
        summary="Resume a paused schedule",
        responses={404: {"description": "no such schedule"}},
    )
    def resume_schedule(name: str) -> dict[str, Any]:
        app.resume_schedule(name)
        return _schedule(app, name)

    # --- why a job waits ----------------------------------------------------------------

    @api.get(
        "/jobs/{job_id}/why",
        tags=["jobs"],
        summary="Why a job is not running",
        responses={404: {"description": "no such job"}},
    )
    def why(job_id: int) -> dict[str, Any]:
        """Every gate holding the waiting job (its run_at, parents, a paused or quiet queue,
        a cap, a rate limit, an open breaker, no live worker for its queue); an empty
        ``held_by`` when nothing holds it, or it is not waiting."""
        return why_document(app, job_id)

    return api


def _field(name: str, parse: Callable[[], T]) -> T:
    """``parse()``, its ConfigurationError answered as a 422 naming the field ``name``."""
    try:
        return parse()
    except ConfigurationError as exc:
        raise Problem(422, "invalid-value", "Invalid value", str(exc), field=name) from None


def pause_queue(app: Conveyor, name: str, until: dt.datetime | float | None) -> QueueGate:
    """Pause ``name`` until ``until`` (an aware datetime or UNIX seconds, in the future; None:
    until resumed); the queue's gates after. The API's and the dashboard's pause."""
    at = _field("until", lambda: moment(until))
    if at is not None and at <= app.backend.now():
        raise Problem(
            422,
            "invalid-value",
            "Invalid value",
            "until must be in the future (leave it out to pause until resumed)",
            field="until",
        )
    app.pause_queue(name, at)
    return gate_of(app, name)


def set_rate_limit(app: Conveyor, name: str, rate: str) -> QueueGate:
    """Limit ``name`` to ``rate`` (``"100/m"`` ...); the queue's gates after."""
    app.set_rate_limit(name, _field("rate", lambda: parse_rate(rate)))
    return gate_of(app, name)


def why_document(app: Conveyor, job_id: int) -> dict[str, Any]:
    """Every gate holding the job, as ``GET /api/jobs/{id}/why`` answers."""
    job_id = bounds.job_id(job_id)
    holds = app.why(job_id)
    return document(app.get_job(job_id), holds)


def gate_of(app: Conveyor, queue: str) -> QueueGate:
    found = next((g for g in app.queue_gates() if g.queue == queue), None)
    return QueueGate(queue) if found is None else found


def _schedule(app: Conveyor, name: str) -> dict[str, Any]:
    return next(info.to_dict() for info in app.schedules_info() if info.name == name)
