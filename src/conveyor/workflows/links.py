"""The enqueue side of dependencies: what ``depends_on`` may name, and how a batch's references
become stored ids (``NewJob.depends_on``) or positions in the batch (``depends_on_batch``).

A parent is an id of a stored job (int), a Job snapshot, or -- within one ``enqueue_many``
batch -- the JobSpec object of another job of that batch, which has no id yet. Everything is
checked before anything is written: a JobSpec that is not in the batch, and a cycle inside the
batch, are DependencyErrors; an id that names no job is an UnknownParent raised by the backend
inside the enqueue's transaction, which then writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor.backends.base import NewJob
from conveyor.bounds import MAX_JOB_ID
from conveyor.errors import ConfigurationError, DependencyError
from conveyor.job import Job
from conveyor.workflows.rules import batch_order, parent_failure_policy, stored_policy

if TYPE_CHECKING:
    from conveyor.task import JobOptions, JobSpec


def check_dependency_options(options: JobOptions) -> tuple[Any, ...] | None:
    """The ``depends_on`` of ``options`` as a tuple, once every reference and the policy are
    valid."""
    from conveyor.task import JobSpec

    if options.on_parent_failure is not None:
        parent_failure_policy(options.on_parent_failure)
    if options.depends_on is None:
        return None
    if isinstance(options.depends_on, str | bytes) or not isinstance(options.depends_on, Sequence):
        raise ConfigurationError("depends_on must be a list of job ids, Jobs or JobSpecs")
    for ref in options.depends_on:
        if isinstance(ref, bool) or not isinstance(ref, int | Job | JobSpec):
            raise ConfigurationError(
                f"depends_on takes job ids, Jobs or JobSpecs of the same batch, got {ref!r}"
            )
        if isinstance(ref, int) and not 1 <= ref <= MAX_JOB_ID:
            raise ConfigurationError(
                f"depends_on: job ids are integers from 1 to {MAX_JOB_ID:,}, got {ref}"
            )
    return tuple(options.depends_on)


def link_job(job: NewJob, options: JobOptions, positions: dict[int, int] | None) -> None:
    """Set the dependency fields of ``job`` from ``options``; ``positions`` maps id() of each
    JobSpec of the batch to its place (None: no batch, JobSpecs cannot be named)."""
    ids: list[int] = []
    batch: list[int] = []
    for ref in options.depends_on or ():
        if isinstance(ref, Job):
            ids.append(ref.id)
        elif isinstance(ref, int):
            ids.append(ref)
        else:
            position = None if positions is None else positions.get(id(ref))
            if position is None:
                raise DependencyError(
                    f"depends_on names a job that is not in this batch ({ref.task.name}): "
                    "enqueue the parent first and pass its Job or id, or put both in one "
                    "enqueue_many"
                )
            batch.append(position)
    job.depends_on = tuple(ids)
    job.depends_on_batch = tuple(batch)
    if options.on_parent_failure is not None:
        job.on_parent_failure = stored_policy(parent_failure_policy(options.on_parent_failure))
    job.workflow_id = options.workflow_id


def link_batch(specs: Sequence[JobSpec], jobs: Sequence[NewJob]) -> None:
    """Resolve the references of a whole batch; raises DependencyCycle for a cycle."""
    positions = {id(spec): i for i, spec in enumerate(specs)}
    linked = False
    for spec, job in zip(specs, jobs, strict=True):
        options = spec.options
        if options.depends_on or options.on_parent_failure or options.workflow_id:
            link_job(job, options, positions)
            linked = True
    if linked:
        batch_order([job.depends_on_batch for job in jobs])
