"""Turn request bodies into jobs: through the app's registered task when the server knows it
(signature, type hints and the task's defaults apply), else encoded as given (``encode_job``,
what ``conveyor enqueue`` does without an app). Every job is checked before any is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.app import Conveyor
from conveyor.backends.base import NewJob
from conveyor.errors import ConveyorError
from conveyor.job import Job
from conveyor.task import JobOptions, JobSpec, encode_job

from .models import JobIn
from .problems import PlacedError

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
    job's index in errors (a batch)."""
    if checks_arguments(app):
        specs: list[JobSpec] = []
        new_jobs: list[NewJob] = []
        for index, job in enumerate(jobs):
            with _placing(index if placed else None):
                spec = app.get_task(job.task).options(**job.options()).job(*job.args, **job.kwargs)
                new_jobs.append(spec.to_new_job())
                specs.append(spec)
        return app.enqueue_reporting(new_jobs, specs)
    encoded: list[NewJob] = []
    for index, job in enumerate(jobs):
        with _placing(index if placed else None):
            encoded.append(
                encode_job(
                    job.task,
                    job.args,
                    job.kwargs,
                    JobOptions(**job.options()),
                    max_payload_bytes=app.settings.max_payload_bytes,
                )
            )
    return app.enqueue_reporting(encoded)


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
