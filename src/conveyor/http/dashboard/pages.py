"""The pages that read: overview (and its live part), jobs, one job, dead letters, queues,
workers. Reads run on worker threads; every figure comes through the app and the backend
contract, as the JSON API's do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from conveyor import bounds, history
from conveyor.errors import ConveyorError
from conveyor.job import Job, JobState
from conveyor.worker_info import WorkerHealth

from ..counts import Counts
from ..flow import why_document
from ..jobs import job_page
from ..observe import queues_document
from ..workflows import dependencies_document, workflow_document
from .chart import chart
from .web import Dashboard, Refused, Visit

PageHandler = Callable[[Dashboard, Visit], Awaitable[Response]]

#: Jobs on one page of the jobs and dead-letter lists.
PAGE = 50
#: Messages a form's redirect may show (by name: no text of the request reaches the page).
NOTICES = {
    "cancelled": "Cancelled (a running job is asked to stop).",
    "requeued": "Requeued.",
    "capped": "Cap saved.",
    "uncapped": "Cap removed.",
    "stopping": "Asked to stop: the workers finish what they run, then exit.",
    "bulk-requeued": "Dead jobs requeued.",
    "bulk-discarded": "Dead jobs discarded.",
    "paused": "Queue paused: running jobs finish, nothing new starts.",
    "resumed": "Queue resumed.",
    "rate-set": "Rate limit saved.",
    "rate-removed": "Rate limit removed.",
    "breaker-opened": "Breaker opened: its jobs wait until it is closed.",
    "breaker-closed": "Breaker closed.",
    "schedule-paused": "Schedule paused.",
    "schedule-resumed": "Schedule resumed.",
    "workflow-cancelled": "Workflow cancelled (running jobs are asked to stop).",
}


def notice(visit: Visit) -> str | None:
    done = visit.query("done")
    return NOTICES.get(done) if done else None


async def overview(dash: Dashboard, visit: Visit) -> Response:
    return dash.render(visit, "overview.html", **await run_in_threadpool(_overview, dash))


async def overview_live(dash: Dashboard, visit: Visit) -> Response:
    return dash.render(visit, "overview_live.html", **await run_in_threadpool(_overview, dash))


@dataclass(frozen=True)
class Oldest:
    """The queue whose oldest ready job has waited longest, and how long (seconds)."""

    queue: str
    age: float


def oldest_waiting(counted: Counts) -> Oldest | None:
    """From ``Backend.oldest_ready`` (one indexed read per queue, the whole table)."""
    if not counted.oldest_ready:
        return None
    queue, run_at = min(counted.oldest_ready.items(), key=lambda item: item[1])
    return Oldest(queue, max(0.0, counted.counted_at - run_at))


def _overview(dash: Dashboard) -> dict[str, Any]:
    """The figures of the API's /api/queues and /api/stats, from the same cached read: the
    last hour comes from the per-minute aggregates of the whole fleet (they survive pruning)."""
    app = dash.app
    counted = dash.counts.get()
    workers = app.workers()
    return {
        "queues": queues_document(app, counted),
        "chart": chart(history.throughput(counted.minutes, counted.counted_at)),
        "oldest": oldest_waiting(counted),
        "alive": sum(1 for w in workers if w.health is WorkerHealth.ALIVE),
        "workers": workers,
        "counted_at": counted.counted_at,
    }


@dataclass(frozen=True)
class Filters:
    state: JobState | None
    queue: str | None
    task: str | None
    search: str | None

    def link(self, **more: object) -> str:
        pairs = {
            "state": self.state.value if self.state else None,
            "queue": self.queue,
            "task": self.task,
            "q": self.search,
            **more,
        }
        return urlencode({k: v for k, v in pairs.items() if v is not None})


def filters(visit: Visit, state: JobState | None = None) -> Filters:
    chosen = visit.query("state")
    if state is None and chosen is not None:
        try:
            state = JobState(chosen)
        except ValueError:
            names = ", ".join(s.value for s in JobState)
            raise Refused(422, "Invalid value", f"unknown state {chosen!r}: use {names}") from None
    return Filters(state, visit.query("queue"), visit.query("task"), visit.query("q"))


def cursor(visit: Visit) -> int | None:
    given = visit.query("cursor")
    if given is None:
        return None
    try:
        return bounds.before_id(int(given))
    except ValueError:
        raise Refused(422, "Invalid value", "cursor must be a job id") from None


async def jobs(dash: Dashboard, visit: Visit) -> Response:
    chosen = filters(visit)
    before = cursor(visit)
    if chosen.search is not None:
        found = await run_in_threadpool(_search, dash, chosen, before)
        if isinstance(found, Job):
            return dash.redirect(visit, f"/jobs/{found.id}")
        listed, next_cursor = found
        searched = True
    else:
        listed, next_cursor = await run_in_threadpool(
            job_page, dash.app, chosen.state, chosen.queue, chosen.task, PAGE, before
        )
        searched = False
    return dash.render(
        visit,
        "jobs.html",
        jobs=listed,
        filters=chosen,
        next_link=None if next_cursor is None else chosen.link(cursor=next_cursor),
        first_link=chosen.link() if before is not None else None,
        searched=searched,
    )


def _search(
    dash: Dashboard, chosen: Filters, before: int | None
) -> Job | tuple[list[Job], int | None]:
    """A job id goes straight to its job; anything else is an idempotency key: the jobs
    holding it (within the filters), read through the key's index."""
    assert chosen.search is not None
    if chosen.search.isdigit() and before is None:
        try:
            return dash.app.get_job(bounds.job_id(int(chosen.search)))
        except ConveyorError:  # no such job (or out of range): it may be a key
            pass
    return job_page(dash.app, chosen.state, chosen.queue, chosen.task, PAGE, before, chosen.search)


async def job(dash: Dashboard, visit: Visit) -> Response:
    try:
        job_id = bounds.job_id(int(visit.request.path_params["job_id"]))
    except ValueError:
        raise Refused(404, "Job not found", "no such job") from None
    found, why, dependencies = await run_in_threadpool(_job, dash, job_id)
    return dash.render(
        visit,
        "job.html",
        job=found,
        why=why,
        dependencies=dependencies,
        timeline=timeline(found),
        notice=notice(visit),
        can_cancel=found.state.is_live and not found.cancel_requested,
        can_requeue=found.state in (JobState.DEAD, JobState.CANCELLED),
    )


def _job(dash: Dashboard, job_id: int) -> tuple[Job, dict[str, Any] | None, dict[str, Any]]:
    """The job, why it waits (what GET /api/jobs/{id}/why answers; None unless it waits) and
    its parents and children (GET /api/jobs/{id}/dependencies)."""
    found = dash.app.get_job(job_id)
    waiting = found.state.is_live and found.state is not JobState.RUNNING
    why = why_document(dash.app, job_id) if waiting else None
    return found, why, dependencies_document(dash.app, job_id)


@dataclass(frozen=True)
class Moment:
    at: float
    what: str


def timeline(job: Job) -> list[Moment]:
    """The job's life as its record tells it: created, when it was due, each failed attempt,
    its latest start, and how it ended. (Earlier starts are not recorded; each failed
    attempt shows when it failed.)"""
    moments = [Moment(job.created_at, "created")]
    if job.run_at > job.created_at + 1:
        moments.append(Moment(job.run_at, "due to run"))
    for error in job.errors:
        moments.append(Moment(error.at, f"attempt {error.attempt} failed: {error.type}"))
    if job.started_at is not None:
        moments.append(Moment(job.started_at, f"attempt {job.attempts} started"))
    if job.finished_at is not None:
        moments.append(Moment(job.finished_at, job.state.value))
    return sorted(moments, key=lambda moment: moment.at)


async def dead(dash: Dashboard, visit: Visit) -> Response:
    chosen = filters(visit, JobState.DEAD)
    before = cursor(visit)
    listed, next_cursor = await run_in_threadpool(
        job_page, dash.app, JobState.DEAD, chosen.queue, chosen.task, PAGE, before
    )
    return dash.render(
        visit,
        "dead.html",
        jobs=listed,
        filters=chosen,
        next_link=None if next_cursor is None else chosen.link(cursor=next_cursor),
        first_link=chosen.link() if before is not None else None,
        notice=notice(visit),
        count=_count(visit),
    )


def _count(visit: Visit) -> int | None:
    given = visit.query("count")
    return int(given) if given is not None and given.isdigit() else None


async def queues(dash: Dashboard, visit: Visit) -> Response:
    def read() -> list[dict[str, object]]:
        return queues_document(dash.app, dash.counts.get())

    return dash.render(
        visit, "queues.html", queues=await run_in_threadpool(read), notice=notice(visit)
    )


async def workers(dash: Dashboard, visit: Visit) -> Response:
    found = await run_in_threadpool(dash.app.workers)
    return dash.render(visit, "workers.html", workers=found, notice=notice(visit))


async def breakers(dash: Dashboard, visit: Visit) -> Response:
    """What GET /api/breakers lists."""
    found = await run_in_threadpool(dash.app.breakers)
    return dash.render(
        visit,
        "breakers.html",
        breakers=[breaker.to_dict() for breaker in found],
        declared=bool(dash.app.tasks),
        notice=notice(visit),
    )


async def schedules(dash: Dashboard, visit: Visit) -> Response:
    """What GET /api/schedules lists."""
    found = await run_in_threadpool(dash.app.schedules_info)
    return dash.render(visit, "schedules.html", schedules=found, notice=notice(visit))


async def workflow(dash: Dashboard, visit: Visit) -> Response:
    """What GET /api/workflows/{id} answers."""
    workflow_id = visit.request.path_params["workflow_id"]
    found = await run_in_threadpool(dash.app.workflow, workflow_id)
    return dash.render(
        visit, "workflow.html", workflow=workflow_document(found), notice=notice(visit)
    )
