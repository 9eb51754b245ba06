"""Chains, groups and chords: small graphs of jobs enqueued in one transaction, built on
dependencies (no polling "unlock" task: the last parent's end releases the next step).

    chain(a.job(1), b.job(), c.job())        a, then b, then c
    group(a.job(1), a.job(2))                both at once
    chain(group(a.job(1), a.job(2)), total.job())   the chord: total runs after both

They nest: a chain may hold groups and chains, a group chains. A step reads what the steps
before it returned with ``ctx.parent_results`` (``pass_context=True``): {parent id: result}
-- one entry after a plain step, one per member after a group (the chord's fan-in).

``enqueue(app)`` (or ``app.enqueue_workflow(node)``) writes every job at once, all tagged with
one workflow id, and returns a Workflow: ``app.workflow(id)`` reads it again later,
``app.cancel_workflow(id)`` cancels what has not finished. ``on_parent_failure`` sets the
policy of the jobs that do not set their own (default: a failure cancels what follows).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError, ConveyorError, WorkflowNotFound
from conveyor.job import Job, JobState
from conveyor.task import DEFAULT_OPTIONS, JobSpec
from conveyor.workflows.rules import NOT_NEEDED, parent_failure_policy

if TYPE_CHECKING:
    from conveyor.app import Conveyor


class _Canvas:
    """What chains and groups share: enqueueing the whole of them at once."""

    def enqueue(
        self,
        app: Conveyor,
        *,
        workflow_id: str | None = None,
        on_parent_failure: str | None = None,
    ) -> Workflow:
        assert isinstance(self, Chain | Group)
        return enqueue_workflow(
            app, self, workflow_id=workflow_id, on_parent_failure=on_parent_failure
        )


class Chain(_Canvas):
    """Steps one after the other."""

    def __init__(self, *steps: JobSpec | Chain | Group) -> None:
        self.steps = _checked(steps, "chain")

    def __repr__(self) -> str:
        return f"chain({', '.join(map(_describe, self.steps))})"


class Group(_Canvas):
    """Steps side by side; the group has ended when all of them have."""

    def __init__(self, *members: JobSpec | Chain | Group) -> None:
        self.members = _checked(members, "group")

    def __repr__(self) -> str:
        return f"group({', '.join(map(_describe, self.members))})"


def chain(*steps: JobSpec | Chain | Group) -> Chain:
    return Chain(*steps)


def group(*members: JobSpec | Chain | Group) -> Group:
    return Group(*members)


def chord(header: Group | Sequence[JobSpec | Chain | Group], callback: JobSpec) -> Chain:
    """``callback`` after every member of ``header``: chain(group(...), callback)."""
    members = header if isinstance(header, Group) else Group(*header)
    return Chain(members, callback)


def _checked(nodes: Sequence[Any], kind: str) -> tuple[JobSpec | Chain | Group, ...]:
    if not nodes:
        raise ConfigurationError(f"a {kind} needs at least one step")
    for node in nodes:
        if not isinstance(node, JobSpec | Chain | Group):
            raise ConfigurationError(
                f"a {kind} holds jobs (task.job(...)), chains and groups, got {node!r}"
            )
    return tuple(nodes)


def _describe(node: JobSpec | Chain | Group) -> str:
    return node.task.name if isinstance(node, JobSpec) else repr(node)


@dataclass
class Workflow:
    """The jobs of one workflow, oldest first, as read (or enqueued)."""

    id: str
    jobs: list[Job]
    #: The ids of the last steps (whose success is the workflow's), as enqueued.
    last: list[int] = field(default_factory=list)

    @property
    def state(self) -> str:
        """Running while some job is live; else succeeded if every job succeeded (a failure
        callback that was not needed aside); else failed."""
        if any(job.state.is_live for job in self.jobs):
            return "running"
        if all(
            job.state is JobState.SUCCEEDED or job.dead_reason == NOT_NEEDED for job in self.jobs
        ):
            return "succeeded"
        return "failed"

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs:
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        return counts


def callback(spec: JobSpec, parents: Sequence[JobSpec], policy: str | None) -> JobSpec:
    """``spec`` as a job after ``parents``: on success (policy None: a failure cancels it) or
    on failure ("run_only")."""
    options = spec.options
    return JobSpec(
        spec.task,
        spec.args,
        spec.kwargs,
        replace(
            options,
            depends_on=[*(options.depends_on or ()), *parents],
            on_parent_failure=policy,
            workflow_id=options.workflow_id or parents[0].options.workflow_id,
        ),
    )


def with_callbacks(specs: list[JobSpec]) -> list[JobSpec]:
    """The batch with the ``on_success`` / ``on_failure`` jobs of its jobs after them."""
    extra: list[JobSpec] = []
    for spec in specs:
        options = spec.options
        if options is DEFAULT_OPTIONS:
            continue
        if options.on_success is not None:
            extra.append(callback(options.on_success, [spec], None))
        if options.on_failure is not None:
            extra.append(callback(options.on_failure, [spec], "run_only"))
    return specs + with_callbacks(extra) if extra else specs


def compile_workflow(
    node: JobSpec | Chain | Group,
    workflow_id: str,
    on_parent_failure: str | None = None,
    on_success: JobSpec | None = None,
    on_failure: JobSpec | None = None,
) -> tuple[list[JobSpec], list[JobSpec]]:
    """The JobSpecs to enqueue, parents before children, and the last steps among them."""
    if on_parent_failure is not None:
        parent_failure_policy(on_parent_failure)
    specs: list[JobSpec] = []

    def add(node: JobSpec | Chain | Group, parents: list[JobSpec]) -> list[JobSpec]:
        if isinstance(node, JobSpec):
            options = node.options
            for ref in options.depends_on or ():
                if isinstance(ref, JobSpec):
                    raise ConfigurationError(
                        "a step of a workflow may depend on stored jobs (ids, Jobs) besides "
                        "the steps before it, not on other JobSpecs"
                    )
            spec = JobSpec(
                node.task,
                node.args,
                node.kwargs,
                replace(
                    options,
                    depends_on=[*(options.depends_on or ()), *parents] or None,
                    on_parent_failure=options.on_parent_failure or on_parent_failure,
                    workflow_id=workflow_id,
                ),
            )
            specs.append(spec)
            return [spec]
        if isinstance(node, Chain):
            for step in node.steps:
                parents = add(step, parents)
            return parents
        tails: list[JobSpec] = []
        for member in node.members:
            tails += add(member, parents)
        return tails

    last = add(node, [])
    # The workflow's callbacks wait for its last steps; a failure anywhere reaches them, as
    # every step after a failed one ends cancelled (unless its own policy says otherwise).
    if on_success is not None:
        specs.append(callback(on_success, last, None))
    if on_failure is not None:
        specs.append(callback(on_failure, last, "run_only"))
    return specs, last


def enqueue_workflow(
    app: Conveyor,
    node: JobSpec | Chain | Group,
    *,
    workflow_id: str | None = None,
    on_parent_failure: str | None = None,
    on_success: JobSpec | None = None,
    on_failure: JobSpec | None = None,
) -> Workflow:
    """Enqueue every job of ``node`` in one transaction, under ``workflow_id`` (a new random
    one by default). ``on_success`` runs once every last step succeeded (reading their
    results in ``ctx.parent_results``); ``on_failure`` once the workflow ended with a failure
    (``ctx.parent_states`` says which last steps failed), and is cancelled otherwise."""
    workflow_id = workflow_id or uuid.uuid4().hex
    specs, last = compile_workflow(node, workflow_id, on_parent_failure, on_success, on_failure)
    jobs = app.enqueue_many(specs)
    for job in jobs:
        job.workflow_id = workflow_id  # as written (the snapshots leave it out)
    by_spec = {id(spec): job for spec, job in zip(specs, jobs, strict=True)}
    return Workflow(workflow_id, jobs, [by_spec[id(spec)].id for spec in last])


def read_workflow(app: Conveyor, workflow_id: str) -> Workflow:
    jobs = app.backend.workflow_jobs(workflow_id)
    if not jobs:
        raise WorkflowNotFound(workflow_id)
    for job in jobs:
        job._app = app
    return Workflow(workflow_id, jobs)


def cancel_workflow(app: Conveyor, workflow_id: str) -> Workflow:
    """Cancel every job of the workflow that has not ended: the last steps first, so that no
    cancel releases a step that is cancelled next. Running jobs are asked to stop."""
    for job in reversed(read_workflow(app, workflow_id).jobs):
        if job.state.is_live:
            try:
                app.backend.cancel(job.id)
            except ConveyorError:
                # It ended meanwhile (finished, or cancelled with its parent).
                continue
    return read_workflow(app, workflow_id)
