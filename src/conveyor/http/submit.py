"""Turn request bodies into jobs: through the app's registered task when the server knows it
(signature, type hints and the task's defaults apply), else encoded as given (``encode_job``,
what ``conveyor enqueue`` does without an app). Every job is checked before any is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.app import Conveyor
from conveyor.backends.base import NewJob
from conveyor.errors import ConveyorError, DependencyCycle, UnknownParent
from conveyor.job import Job
from conveyor.task import JobOptions, JobSpec, encode_job
from conveyor.workflows.links import link_job
from conveyor.workflows.rules import batch_order

from .models import JobIn
from .problems import PlacedError, Problem

#: Said in every response to a job the server could not check against its task.
UNCHECKED = (
    "the server runs without the app (conveyor serve --app MODULE:ATTR), so it could not "
    "check the arguments against the task's signature, nor apply the task's defaults"
)


def checks_arguments(app: Conveyor) -> bool:
    """With the user's app (its tasks registered) the server checks arguments; without, not."""
    return bool(app.tasks)


def submit(app: Conveyor, jobs: Sequence[JobIn], *, placed: bool) -> list[tuple[Job, bool]]:
    """Enqueue all jobs or none; ``(job, created)`` for each. ``placed``: name the failing
    job's index in errors (a batch), and let ``depends_on`` name jobs of the batch by ref."""
    refs = _refs(jobs) if placed else {}
    new_jobs: list[NewJob] = []
    specs: list[JobSpec] = []
    checked = checks_arguments(app)
    for index, job in enumerate(jobs):
        with _placing(index if placed else None):
            if checked:
                spec = app.get_task(job.task).options(**job.options()).job(*job.args, **job.kwargs)
                new_job = spec.to_new_job()
                link_job(new_job, spec.options, None)
                specs.append(spec)
            else:
                new_job = encode_job(
                    job.task,
                    job.args,
                    job.kwargs,
                    JobOptions(**job.options()),
                    max_payload_bytes=app.settings.max_payload_bytes,
                )
            new_job.depends_on_batch = _positions(index, job, refs, placed)
            new_jobs.append(new_job)
    if placed:
        try:
            batch_order([job.depends_on_batch for job in new_jobs])
        except DependencyCycle as cycle:
            raise PlacedError(cycle, cycle.positions[0]) from cycle
    try:
        return app.enqueue_reporting(new_jobs, specs if checked else None)
    except UnknownParent as unknown:
        if not placed:
            raise
        missing = set(unknown.job_ids)
        index = next(i for i, job in enumerate(new_jobs) if missing & set(job.depends_on))
        raise PlacedError(unknown, index) from unknown


def _refs(jobs: Sequence[JobIn]) -> dict[str, int]:
    """Each ref of the batch and the position of its job; a ref given twice is an error."""
    refs: dict[str, int] = {}
    for index, job in enumerate(jobs):
        if job.ref is None:
            continue
        if job.ref in refs:
            raise Problem(
                422,
                "duplicate-ref",
                "Invalid request",
                f"ref {job.ref!r} names jobs {refs[job.ref]} and {index} of the batch: "
                "each ref names one job",
                field=f"jobs[{index}].ref",
            )
        refs[job.ref] = index
    return refs


def _positions(index: int, job: JobIn, refs: dict[str, int], placed: bool) -> tuple[int, ...]:
    """The positions in the batch of the parents ``job`` names by ref."""
    named = job.batch_refs()
    if not named:
        return ()
    if not placed:
        raise Problem(
            422,
            "invalid-request",
            "Invalid request",
            "depends_on: a string names a job of the same batch by its ref; a single job "
            "depends on stored jobs, by id (or send both in POST /api/jobs/batch)",
            field="depends_on",
        )
    unknown = [ref for ref in named if ref not in refs]
    if unknown:
        raise Problem(
            422,
            "unknown-ref",
            "Invalid request",
            f"depends_on names {unknown[0]!r}, which is the ref of no job of this batch",
            field=f"jobs[{index}].depends_on",
        )
    return tuple(dict.fromkeys(refs[ref] for ref in named))


class _placing:
    """Re-raise a library error as the error of job ``index`` of a batch."""

    def __init__(self, index: int | None) -> None:
        self.index = index

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        if self.index is not None and isinstance(error, ConveyorError):
            raise PlacedError(error, self.index) from error


def job_document(job: Job, checked: bool) -> dict[str, Any]:
    document = job.to_dict()
    document["arguments_checked"] = checked
    if not checked:
        document["warning"] = UNCHECKED
    return document
