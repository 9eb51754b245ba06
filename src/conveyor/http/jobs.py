"""The routes on jobs: submit, read (and wait), list, cancel, requeue, and the dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response

from conveyor import bounds, results
from conveyor.app import Conveyor
from conveyor.errors import ResultTimeout
from conveyor.job import Job, JobState

from .models import BatchIn, DeadSelection, JobIn, RequeueIn
from .problems import Problem
from .submit import checks_arguments, job_document, submit

#: The longest ``?wait=`` a request may ask for, in seconds.
MAX_WAIT = 300.0
#: The most jobs one page of GET /api/jobs holds.
MAX_PAGE = 1000


def router(app: Conveyor, write: Sequence[Any]) -> APIRouter:
    """The routes; ``write`` are the dependencies of those that change something."""
    api = APIRouter(tags=["jobs"])

    @api.post(dependencies=write, path="/jobs", status_code=201, summary="Enqueue a job")
    def post_job(
        job: JobIn,
        response: Response,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> dict[str, Any]:
        """201 with the new job; 200 with the existing one when a live job holds the
        idempotency key."""
        if idempotency_key is not None:
            if job.idempotency_key is not None and job.idempotency_key != idempotency_key:
                raise Problem(
                    422,
                    "invalid-request",
                    "Invalid request",
                    "the Idempotency-Key header and idempotency_key in the body differ",
                    field="idempotency_key",
                )
            job = job.model_copy(update={"idempotency_key": idempotency_key})
        ((written, created),) = submit(app, [job], placed=False)
        response.status_code = 201 if created else 200
        return job_document(written, checks_arguments(app))

    @api.post(
        dependencies=write,
        path="/jobs/batch",
        status_code=201,
        summary="Enqueue many jobs, all or none",
    )
    def post_batch(batch: BatchIn, response: Response) -> dict[str, Any]:
        """One transaction: every job is written, or (on any error) none. 201 if any job was
        created, else 200 (every one was already held by its idempotency key). A job's
        ``depends_on`` may name other jobs of the batch by their ``ref``."""
        written = submit(app, batch.jobs, placed=True)
        checked = checks_arguments(app)
        response.status_code = 201 if any(created for _, created in written) else 200
        return {
            "jobs": [job_document(job, checked) for job, _ in written],
            "created": [created for _, created in written],
            # The id each ref of the batch was given.
            "refs": {
                given.ref: job.id
                for given, (job, _) in zip(batch.jobs, written, strict=True)
                if given.ref is not None
            },
        }

    @api.get("/jobs", summary="List jobs, newest first")
    def list_jobs(
        state: Annotated[list[JobState] | None, Query()] = None,
        queue: str | None = None,
        task: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: Annotated[
            int | None, Query(ge=1, le=bounds.MAX_JOB_ID, description="next_cursor of a page")
        ] = None,
        idempotency_key: Annotated[
            str | None, Query(description="Only the jobs holding this key, live or not.")
        ] = None,
    ) -> dict[str, Any]:
        """Keyset pagination: pass a page's ``next_cursor`` as ``cursor`` for the next one."""
        found, next_cursor = job_page(app, state, queue, task, limit, cursor, idempotency_key)
        return {"jobs": [job.to_dict() for job in found], "next_cursor": next_cursor}

    @api.get("/jobs/{job_id}", summary="Read a job, or wait for it to end")
    async def get_job(
        job_id: int,
        wait: Annotated[
            float | None,
            Query(
                ge=0,
                le=MAX_WAIT,
                description="Seconds to wait for the job to end; it answers as soon as it "
                "has, or with the job as it is when the wait runs out.",
            ),
        ] = None,
    ) -> dict[str, Any]:
        job_id = bounds.job_id(job_id)
        job = await asyncio.to_thread(app.get_job, job_id)
        if wait is not None and wait > 0 and not job.state.is_terminal:
            job = await _wait(app, job_id, wait)
        return job.to_dict()

    @api.get("/jobs/{job_id}/status", summary="A job's state, briefly")
    def get_status(job_id: int) -> dict[str, Any]:
        return status_document(app.get_job(job_id))

    @api.post(dependencies=write, path="/jobs/{job_id}/cancel", summary="Cancel a job")
    def cancel(job_id: int) -> dict[str, Any]:
        """A waiting job is cancelled at once; the worker of a running one is asked to stop
        it (``cancel_requested``)."""
        return app.cancel(job_id).to_dict()

    @api.post(
        dependencies=write,
        path="/jobs/{job_id}/requeue",
        summary="Put a dead or cancelled job back",
    )
    def requeue(job_id: int, options: Annotated[RequeueIn | None, Body()] = None) -> dict[str, Any]:
        reset = options.reset_attempts if options is not None else False
        return app.requeue(job_id, reset_attempts=reset).to_dict()

    @api.post(
        dependencies=write,
        path="/dead/requeue",
        tags=["dead letters"],
        summary="Requeue dead jobs, all or none",
    )
    def requeue_dead(selection: DeadSelection) -> dict[str, Any]:
        chosen = _chosen(app, selection)
        jobs = app.requeue_many(chosen, reset_attempts=selection.reset_attempts) if chosen else []
        return {"requeued": len(jobs), "jobs": [job.to_dict() for job in jobs]}

    @api.post(
        dependencies=write,
        path="/dead/discard",
        tags=["dead letters"],
        summary="Delete dead jobs, all or none",
    )
    def discard_dead(selection: DeadSelection) -> dict[str, Any]:
        chosen = _chosen(app, selection)
        return {"discarded": app.discard(chosen) if chosen else 0, "ids": chosen}

    return api


def job_page(
    app: Conveyor,
    state: JobState | Sequence[JobState] | None,
    queue: str | None,
    task: str | None,
    limit: int,
    cursor: int | None,
    idempotency_key: str | None = None,
) -> tuple[list[Job], int | None]:
    """One page of jobs, newest first, and the cursor of the next page (None on the last):
    the id to pass as ``cursor`` (``before_id``) to continue below it."""
    found = app.list_jobs(
        state=state,
        queue=queue,
        task=task,
        limit=limit,
        before_id=cursor,
        idempotency_key=idempotency_key,
    )
    return found, found[-1].id if len(found) == limit else None


async def _wait(app: Conveyor, job_id: int, wait: float) -> Job:
    # Woken by the engine's notifications (conveyor.results); reads run on threads.
    backend = await asyncio.to_thread(lambda: app.backend)
    try:
        return await results.wait_for_async(backend, job_id, wait)
    except ResultTimeout:
        return await asyncio.to_thread(app.get_job, job_id)


def status_document(job: Job) -> dict[str, Any]:
    error = job.last_error
    return {
        "id": job.id,
        "task": job.task,
        "state": job.state.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": job.progress,
        "result": job.result,
        "error": None if error is None else f"{error.type}: {error.message}",
        "dead_reason": job.dead_reason,
        "finished_at": job.finished_at,
    }


def _chosen(app: Conveyor, selection: DeadSelection) -> list[int]:
    if (selection.ids is not None) == selection.all:
        raise Problem(
            422,
            "invalid-request",
            "Invalid request",
            "give the ids of the dead jobs, or all: true (not both)",
            field="ids",
        )
    if selection.ids is not None:
        if selection.queue is not None or selection.task is not None:
            raise Problem(
                422,
                "invalid-request",
                "Invalid request",
                "queue and task only narrow all: true",
                field="queue" if selection.queue is not None else "task",
            )
        return bounds.job_ids(selection.ids)
    found = app.list_jobs(
        state=JobState.DEAD, queue=selection.queue, task=selection.task, limit=selection.limit
    )
    return [job.id for job in found]
