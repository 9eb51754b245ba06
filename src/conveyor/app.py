"""Conveyor: the task registry, the settings and the backend. Everything else is delegated."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar, overload

from conveyor import bounds, results
from conveyor.backends import open_backend
from conveyor.backends.base import Backend, Dependencies, EnqueueResult, NewJob
from conveyor.backends.tally import Tally
from conveyor.errors import ConfigurationError, ScheduleNotFound, UnknownTask
from conveyor.gcpause import pause_for
from conveyor.hooks import Event, Hooks, register
from conveyor.job import Job, JobState
from conveyor.limits import QueueGate, QuietHours, RateLimit
from conveyor.limits.breakers import (
    Breaker,
    BreakerPolicy,
    BreakerStatus,
    breaker_gate,
    breaker_statuses,
    known_breaker,
)
from conveyor.limits.breakers import status as breaker_status
from conveyor.limits.rates import parse_rate
from conveyor.limits.schedules import DEFAULT_GRACE, Schedule, ScheduleInfo, schedules_info
from conveyor.limits.times import moment
from conveyor.limits.why import Context as WhyContext
from conveyor.limits.why import Hold, why
from conveyor.offload import OFFLOAD
from conveyor.retry import BackoffPolicy, RetryBudget
from conveyor.settings import Settings
from conveyor.task import (
    DEFAULT_OPTIONS,
    JobSpec,
    Task,
    build_jobs,
    build_one,
    check_argument_shapes,
    check_concurrency_limit,
    check_encoded,
    check_queue,
    check_task_options,
    default_task_name,
)
from conveyor.worker_info import WorkerInfo
from conveyor.workflows.canvas import (
    Chain,
    Group,
    Workflow,
    cancel_workflow,
    enqueue_workflow,
    read_workflow,
    with_callbacks,
)
from conveyor.workflows.escalation import Escalation, EscalationRules

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from conveyor.snapshot.records import Summary
    from conveyor.tracing import Tracing
    from conveyor.worker import Worker
    from conveyor.worker.pools import Concurrency

#: The enqueue's context without tracing: one object for every call.
_UNTRACED: AbstractContextManager[object] = nullcontext()

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Callable[..., Any])
_ARGUMENTS = attrgetter("args", "kwargs")


class Conveyor:
    """A job queue application.

    ``Conveyor()`` reads CONVEYOR_URL, else the ``url`` of the configuration file
    (``conveyor.toml`` or ``[tool.conveyor]`` in ``pyproject.toml``, in the working directory),
    else uses ``sqlite:///conveyor.db`` in the working directory. Settings given here win over
    CONVEYOR_* variables, which win over the file.

    ``eager=True`` (for tests; see conveyor.testing) makes every enqueue run, in the calling
    process, each job that is ready once it is written, and return the jobs as they ended.
    """

    def __init__(
        self,
        url: str | ConnectionPool[Any] | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] | None = None,
        eager: bool = False,
        **overrides: Any,
    ) -> None:
        if settings is not None and (url is not None or overrides):
            raise ConfigurationError("give either settings= or url/overrides, not both")
        #: The application's own psycopg ConnectionPool, when given instead of a URL.
        self._pool: ConnectionPool[Any] | None = None
        if url is not None and not isinstance(url, str):
            self._pool, url = url, _pool_url(url)
        self.settings = settings or Settings.load(url=url, **overrides)
        self.tasks: dict[str, Task[..., Any]] = {}
        #: Schedules of periodic jobs, by name; see ``periodic``.
        self.schedules: dict[str, Schedule] = {}
        #: Escalation rules: the configuration's, then those given in code (``escalation``).
        self.escalations = EscalationRules(self.settings.escalation)
        #: Functions called on job events; see ``on`` and conveyor.hooks.
        self.hooks = Hooks()
        #: OpenTelemetry spans around enqueues and runs, once ``conveyor.tracing.instrument``
        #: was called on this app (the otel extra).
        self.tracing: Tracing | None = None
        self._clock = clock
        #: Enqueue runs ready jobs at once, in process (conveyor.testing.runner).
        self.eager = bool(eager)
        self._backend: Backend | None = None
        self._backend_lock = threading.Lock()
        #: Circuit breakers declared with ``breaker``, by name.
        self.declared_breakers: dict[str, Breaker] = {}

    def __repr__(self) -> str:
        return f"<Conveyor {self.settings.url} tasks={len(self.tasks)}>"

    @property
    def backend(self) -> Backend:
        """Opened on first use, so importing a module that defines an app touches no file."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = open_backend(self.settings, clock=self._clock, pool=self._pool)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> Conveyor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def configure(self, **changes: Any) -> None:
        """Change settings (validated) and close the open connection, so the next use opens
        the database they name. For tools that import an app and are told where its jobs live,
        like ``conveyor --url URL worker --app module:app``; call it before any worker runs.
        ``eager`` (not a setting) turns eager mode on or off."""
        if "eager" in changes:
            self.eager = bool(changes.pop("eager"))
            if not changes:
                return
        settings = self.settings.replace(**changes)
        self.close()
        self.settings = settings
        if "url" in changes:
            self._pool = None  # the pool connects elsewhere

    # --- tasks ----------------------------------------------------------------------------

    @overload
    def task(self, fn: F, /) -> Task[..., Any]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int | str = "normal",
        max_attempts: int = 3,
        timeout: float | None = None,
        retry: BackoffPolicy | str | None = None,
        retry_budget: RetryBudget | None = None,
        dont_retry: Sequence[type[BaseException]] = (),
        pass_context: bool = False,
        idempotency: str = "live",
        isolation: str = "thread",
        memory_limit_mb: int | None = None,
        cpu_limit_s: int | None = None,
        typecheck: bool = True,
        rate_limit: RateLimit | str | None = None,
        breaker: str | None = None,
        escalate: Escalation | Mapping[str, Any] | None = None,
    ) -> Callable[[F], Task[..., Any]]: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register a function (plain or ``async def``) as a task. Its type hints are checked
        at enqueue and its dataclass and model arguments rebuilt at run time (see
        conveyor.typecheck); ``typecheck=False`` turns both off."""
        check_task_options(options)

        def register(function: Callable[..., Any]) -> Task[..., Any]:
            name = options.pop("name", None) or default_task_name(function)
            if name in self.tasks and self.tasks[name].fn is not function:
                raise ConfigurationError(f"a different task is already registered as {name!r}")
            task: Task[..., Any] = Task(self, function, name=name, **options)
            self.tasks[name] = task
            return task

        return register(fn) if fn is not None else register

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        missed: str = "skip",
        grace: float | timedelta = DEFAULT_GRACE,
    ) -> Callable[[Callable[..., Any]], Task[..., Any]]:
        """Enqueue a job of the decorated task on every tick of a schedule: ``cron`` (in
        ``timezone``; needs croniter) or ``every`` seconds. Put it above ``@app.task``, or on
        a plain function (registered as a task with the default options). Workers enqueue the
        ticks, one job per tick across the fleet; ``args``/``kwargs`` are fixed arguments, and
        a function taking ``scheduled_at`` gets its tick. ``name`` (default: the task's) names
        the schedule; ``missed`` ("skip" or "once") and ``grace``: see conveyor.limits.schedules.
        """

        def register(target: Callable[..., Any]) -> Task[..., Any]:
            task = target if isinstance(target, Task) else self.task(target)
            schedule = Schedule(
                task,
                cron=cron,
                every=every,
                timezone=timezone,
                name=name,
                args=args,
                kwargs=kwargs,
                missed=missed,
                grace=grace,
            )
            if schedule.name in self.schedules:
                raise ConfigurationError(
                    f"a schedule named {schedule.name!r} exists already: give this one name="
                )
            self.schedules[schedule.name] = schedule
            return task

        return register

    def schedules_info(self) -> list[ScheduleInfo]:
        """Every schedule, declared here or recorded in the database, with its last tick (and
        job) and its next one."""
        backend = self.backend
        return schedules_info(self.schedules, backend.schedule_states(), backend.now())

    def pause_schedule(self, name: str) -> None:
        """Stop enqueueing ticks of schedule ``name``, fleet-wide, until ``resume_schedule``;
        jobs already enqueued still run. Ticks that pass while paused are dropped."""
        self._set_schedule_paused(name, True)

    def resume_schedule(self, name: str) -> None:
        self._set_schedule_paused(name, False)

    def _set_schedule_paused(self, name: str, paused: bool) -> None:
        if name not in self.schedules:
            known = [state.name for state in self.backend.schedule_states()]
            if name not in known:
                raise ScheduleNotFound(name, sorted({*known, *self.schedules}))
        self.backend.set_schedule_paused(name, paused)

    @overload
    def on(self, event: Event, fn: H, /) -> H: ...
    @overload
    def on(self, event: Event, fn: None = None, /) -> Callable[[H], H]: ...
    def on(self, event: Event, fn: H | None = None, /) -> H | Callable[[H], H]:
        """Register a hook (as a decorator, or with the function): ``"enqueue"``,
        ``"before_run"``, ``"after_run"``, ``"failure"`` or ``"dead"``. See conveyor.hooks for
        when each runs, with what, and in which thread."""
        return register(self.hooks, event, fn)

    def _traced(self, new_jobs: list[NewJob]) -> AbstractContextManager[object]:
        """The span of an enqueue, which stamps its trace context on the jobs; nothing without
        tracing."""
        return _UNTRACED if self.tracing is None else self.tracing.enqueue(new_jobs)

    def _enqueued(self, jobs: list[Job]) -> list[Job]:
        if self.hooks["enqueue"]:
            self.hooks.fire("enqueue", jobs)
        return jobs

    def get_task(self, name: str) -> Task[..., Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTask(name, list(self.tasks)) from None

    # --- enqueue --------------------------------------------------------------------------

    def enqueue(
        self,
        task: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Job:
        """Enqueue a registered task by name (validated against its signature)."""
        check_argument_shapes(task, args, kwargs)
        # Through Task.options, so an unknown option is a ConfigurationError, not a TypeError.
        spec = self.get_task(task).options(**options).job(*args, **dict(kwargs or {}))
        return self.enqueue_one(spec)

    def enqueue_many(self, specs: Iterable[JobSpec], *, connection: Any = None) -> list[Job]:
        """Validate every job, then write them all in one transaction (or none).

        With ``connection`` (PostgreSQL only: a psycopg ``Connection`` with a transaction
        open), the jobs are written inside *that* transaction, which you commit or roll back:
        they exist if and only if it commits.
        """
        specs = list(specs)
        expanded = with_callbacks(specs)
        if expanded is not specs:
            # The on_success / on_failure jobs go in the same transaction, after the others.
            return self._enqueue_many(expanded, connection)[: len(specs)]
        return self._enqueue_many(specs, connection)

    def enqueue_one(self, spec: JobSpec) -> Job:
        """One job (``task.enqueue``): ``enqueue_many([spec])[0]`` along a path without the
        batch's bookkeeping, which costs a single enqueue more than its checks do."""
        new_job = self._single(spec)
        if new_job is None:
            return self.enqueue_many([spec])[0]
        if self.tracing is None:
            result = self.backend.enqueue_one(new_job)
        else:
            with self.tracing.enqueue([new_job]):
                result = self.backend.enqueue_one(new_job)
        return self._enqueued_one(new_job, result, spec)

    async def enqueue_one_async(self, spec: JobSpec) -> Job:
        """``enqueue_one`` from async code."""
        backend = self._backend
        new_job = None if backend is None or self.tracing is not None else self._single(spec)
        if new_job is None or backend is None:
            return (await self.enqueue_many_async([spec]))[0]
        result = await backend.enqueue_one_async(new_job)
        return self._enqueued_one(new_job, result, spec)

    def _enqueued_one(self, new: NewJob, result: EnqueueResult, spec: JobSpec) -> Job:
        """``_snapshots`` and ``_enqueued`` of one job just written."""
        if not result.created:
            return self._enqueued(self._snapshots([new], (result,), (spec,)))[0]
        now = result.at if result.at is not None else self.backend.now()
        job = self._written_job(new, result, spec.args, spec.kwargs, now)
        if self.hooks["enqueue"]:
            self.hooks.fire("enqueue", [job])
        return job

    def _single(self, spec: JobSpec) -> NewJob | None:
        """The checked job of a single enqueue, or None when enqueue_many must take it: to
        raise its error, to add its callbacks, or to run it at once (eager)."""
        options = spec.options
        if self.eager or (
            options is not DEFAULT_OPTIONS
            and (options.on_success is not None or options.on_failure is not None)
        ):
            return None
        return build_one(spec)

    def _enqueue_many(self, specs: list[JobSpec], connection: Any) -> list[Job]:
        with pause_for(len(specs)):
            if connection is None:
                # No local name for the records: they are freed before the collector resumes,
                # which then has only the returned jobs to look at.
                return self._enqueued(self._write(build_jobs(specs), specs))
            new_jobs = build_jobs(specs)
            with self._traced(new_jobs):
                results = self.backend.enqueue_many_in(connection, new_jobs)
            return self._enqueued(self._snapshots(new_jobs, results, specs))

    async def enqueue_many_async(
        self, specs: Iterable[JobSpec], *, connection: Any = None
    ) -> list[Job]:
        """``enqueue_many`` from async code; ``connection`` is a psycopg ``AsyncConnection``."""
        given = list(specs)
        # The on_success / on_failure jobs go in the same transaction, after the others.
        every = with_callbacks(given)
        with pause_for(len(every)):
            new_jobs = build_jobs(every)
        if connection is not None:
            # Opening the backend (connect, migrate) blocks: not on the event loop.
            backend = self._backend
            if backend is None:
                backend = await asyncio.to_thread(lambda: self.backend)
            with self._traced(new_jobs):
                results = await backend.enqueue_many_in_async(connection, new_jobs)
            with pause_for(len(new_jobs)):
                jobs = self._enqueued(self._snapshots(new_jobs, results, every))
        else:
            jobs = self._enqueued(await OFFLOAD.run(lambda: self._write(new_jobs, every)))
        return jobs[: len(given)]

    def enqueue_raw(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Enqueue already-encoded jobs for tasks this process may not know (CLI, producers in
        other services). Build them with ``conveyor.task.encode_job``, which checks the JSON,
        the payload size and the options; the arguments cannot be checked against a signature."""
        jobs = list(jobs)
        for job in jobs:
            check_encoded(job, self.settings.max_payload_bytes)
        return self._enqueued(self._write(jobs))

    def enqueue_reporting(
        self, new_jobs: Sequence[NewJob], specs: Sequence[JobSpec] | None = None
    ) -> list[tuple[Job, bool]]:
        """Write jobs built by ``build_jobs(specs)`` (or by ``encode_job``, without specs) in
        one transaction, and tell for each whether it was created: False when a live job
        already held its idempotency key and is returned instead (the HTTP API's 200/201)."""
        new_jobs = list(new_jobs)
        if specs is None:
            for job in new_jobs:
                check_encoded(job, self.settings.max_payload_bytes)
        with pause_for(len(new_jobs)):
            with self._traced(new_jobs):
                written = self.backend.enqueue_many(new_jobs)
            jobs = self._snapshots(new_jobs, written, specs)
        jobs = self._enqueued(self._run_eagerly(jobs) if self.eager else jobs)
        return [(job, result.created) for job, result in zip(jobs, written, strict=True)]

    def _write(self, new_jobs: list[NewJob], specs: Sequence[JobSpec] | None = None) -> list[Job]:
        early: list[tuple[list[EnqueueResult], list[Job]]] = []

        def snapshot_early(results: list[EnqueueResult]) -> None:
            # While the server stores the rows: the snapshots cost no time of their own.
            early[:] = [(results, self._snapshots(new_jobs, results, specs))]

        with pause_for(len(new_jobs)):
            with self._traced(new_jobs):
                results = self.backend.enqueue_many(new_jobs, snapshot_early)
            if early and early[0][0] is results:
                jobs = early[0][1]
            else:
                jobs = self._snapshots(new_jobs, results, specs)
        return self._run_eagerly(jobs) if self.eager else jobs

    def _run_eagerly(self, jobs: list[Job]) -> list[Job]:
        from conveyor.testing.runner import runner_for

        runner_for(self).run_ready()
        return [self.get_job(job.id) for job in jobs]

    def _snapshots(
        self,
        new_jobs: list[NewJob],
        results: Sequence[EnqueueResult],
        specs: Sequence[JobSpec] | None = None,
    ) -> list[Job]:
        if not results:
            return []
        # A transactional enqueue read the clock already: asking the pool now could wait on
        # the very transaction the caller holds open.
        now = results[0].at if results[0].at is not None else self.backend.now()
        arguments: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
        if specs is None:
            arguments = [(json.loads(j.args_json), json.loads(j.kwargs_json)) for j in new_jobs]
        else:
            # The arguments were just proven to be plain JSON: no need to decode them again.
            arguments = map(_ARGUMENTS, specs)
        jobs: list[Job] = []
        for new, result, (args, kwargs) in zip(new_jobs, results, arguments, strict=True):
            if not result.created:
                existing = result.existing or self.backend.get(result.job_id)
                existing._app = self
                jobs.append(existing)
                continue
            jobs.append(self._written_job(new, result, args, kwargs, now))
        return jobs

    def _written_job(
        self,
        new: NewJob,
        result: EnqueueResult,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        now: float,
    ) -> Job:
        """The Job just created, built from what was written rather than read back: enqueue
        stays one round trip. Positional, in the field order of Job: half the cost of keywords,
        once per job."""
        job = Job(
            result.job_id,
            new.task,
            new.queue,
            result.state,
            [*args],
            {**kwargs},
            new.priority,
            new.run_at if new.run_at is not None else now + new.delay,
            0,
            new.max_attempts,
            now,
            new.idempotency_key,
            0,
            None,
            [],
            None,
            new.timeout,
        )
        job._app = self  # for job.wait()
        return job

    # --- jobs -----------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        return self._own(self.backend.get(bounds.job_id(job_id)))

    def result(self, job_id: int, *, timeout: float | None = None) -> Any:
        """Wait until the job ends and return its result.

        Raises JobDead (dead-lettered) or JobWasCancelled, both JobFailed carrying the job,
        its ``state``, ``dead_reason`` and ``last_error``; ResultTimeout (a TimeoutError) when
        it has not ended within ``timeout`` seconds (None: no limit; the job goes on). Woken
        by the job's finish, not by polling it (see conveyor.results)."""
        return results.outcome(
            self._own(results.wait_for(self.backend, bounds.job_id(job_id), timeout))
        )

    async def result_async(self, job_id: int, *, timeout: float | None = None) -> Any:
        """``result`` from async code."""
        # Opening the backend (connect, migrate) blocks: not on the event loop.
        backend = self._backend
        if backend is None:
            backend = await asyncio.to_thread(lambda: self.backend)
        return results.outcome(
            self._own(await results.wait_for_async(backend, bounds.job_id(job_id), timeout))
        )

    def follow(self, job_id: int, *, poll: float = results.FOLLOW_POLL) -> Iterator[Job]:
        """The job now, then each time its state, attempt, progress, last error or cancel
        request changed, until it has ended (the last one yielded is terminal): what
        ``conveyor watch`` shows. Its end is seen as soon as ``result`` would see it;
        progress is read every ``poll`` seconds. JobNotFound if there is no such job."""
        for job in results.follow(self.backend, bounds.job_id(job_id), poll=poll):
            yield self._own(job)

    def _own(self, job: Job) -> Job:
        job._app = self  # for job.wait()
        return job

    def cancel(self, job_id: int) -> Job:
        """Cancel a waiting job now; ask the worker of a running job to stop it."""
        return self._own(self.backend.cancel(bounds.job_id(job_id)))

    def requeue(
        self, job_id: int, *, reset_attempts: bool = False, revive_children: bool = False
    ) -> Job:
        """Put a dead or cancelled job back in its queue. With ``revive_children``, the jobs
        that its failure ended (``on_parent_failure``, down the graph) wait for it again."""
        return self.requeue_many(
            [job_id], reset_attempts=reset_attempts, revive_children=revive_children
        )[0]

    def requeue_many(
        self,
        job_ids: Sequence[int],
        *,
        reset_attempts: bool = False,
        revive_children: bool = False,
    ) -> list[Job]:
        jobs = self.backend.requeue(
            bounds.job_ids(job_ids), reset_attempts=reset_attempts, revive_children=revive_children
        )
        return [self._own(job) for job in jobs]

    def enqueue_workflow(
        self,
        node: JobSpec | Chain | Group,
        *,
        workflow_id: str | None = None,
        on_parent_failure: str | None = None,
        on_success: JobSpec | None = None,
        on_failure: JobSpec | None = None,
    ) -> Workflow:
        """Enqueue a chain, group or chord (conveyor.workflows.canvas) in one transaction."""
        return enqueue_workflow(
            self,
            node,
            workflow_id=workflow_id,
            on_parent_failure=on_parent_failure,
            on_success=on_success,
            on_failure=on_failure,
        )

    def workflow(self, workflow_id: str) -> Workflow:
        """Every job of a workflow with its state (WorkflowNotFound if it has none)."""
        return read_workflow(self, workflow_id)

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel every job of the workflow that has not ended (running ones are asked)."""
        return cancel_workflow(self, workflow_id)

    def escalation(self, rules: Mapping[str, Escalation | Mapping[str, Any]]) -> None:
        """Add escalation rules by task name, e.g. ``{"aider": {"on_failure": "codex",
        "on_timeout": "codex", "max_retries": 2}}`` (see conveyor.workflows.escalation). A loop
        is refused here; a target that is not a registered task when a worker starts."""
        self.escalations.add(rules)

    def dependencies(self, job_id: int) -> Dependencies:
        """A job's parents (id, state, result) and children (id, state)."""
        return self.backend.dependencies(job_id)

    def discard(self, job_ids: Sequence[int]) -> int:
        """Delete dead jobs from the dead-letter queue for good."""
        return self.backend.discard(bounds.job_ids(job_ids))

    def list_jobs(
        self,
        *,
        state: JobState | str | Sequence[JobState | str] | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
        idempotency_key: str | None = None,
    ) -> list[Job]:
        """Jobs newest first, filtered by state(s), queue, task and ``idempotency_key`` (the
        jobs holding that key, live or not); page with ``before_id`` (the last id of a page)."""
        states: list[JobState] | None
        try:
            if state is None:
                states = None
            elif isinstance(state, str):
                states = [JobState(state)]
            else:
                states = [JobState(s) for s in state]
        except ValueError:
            names = ", ".join(s.value for s in JobState)
            raise ConfigurationError(f"unknown state in {state!r}: use {names}") from None
        jobs = self.backend.list_jobs(
            states=states,
            queue=None if queue is None else bounds.queue_name(queue),
            task=None if task is None else bounds.task_name(task),
            limit=bounds.limit(limit),
            before_id=None if before_id is None else bounds.before_id(before_id),
            idempotency_key=(
                None if idempotency_key is None else bounds.idempotency_key(idempotency_key)
            ),
        )
        return [self._own(job) for job in jobs]

    def dead_letters(
        self, *, queue: str | None = None, task: str | None = None, limit: int = 100
    ) -> list[Job]:
        """The dead-letter queue: jobs that exhausted their attempts or failed for good."""
        return self.list_jobs(state=JobState.DEAD, queue=queue, task=task, limit=limit)

    def stats(self) -> Mapping[str, Mapping[JobState, int]]:
        return self.backend.stats()

    def minute_stats(self, since: float | None = None) -> list[Tally]:
        """What every worker did, per minute x queue x task, from the minute holding ``since``
        (UNIX seconds; default: an hour ago): runs by outcome, run times and queue waits,
        jobs enqueued. See conveyor.backends.tally and ``conveyor.history`` for figures built
        on them (throughput, p95, retry rates)."""
        backend = self.backend
        return backend.minute_stats(backend.now() - 3600.0 if since is None else since)

    def stats_totals(self) -> list[Tally]:
        """Everything ever tallied, per queue x task (outlives retention of jobs and minutes)."""
        return self.backend.stats_totals()

    # --- backup and restore (conveyor/snapshot/) -------------------------------------------

    def backup(self, path: str | os.PathLike[str]) -> Summary:
        """Write every job (all states, with attempts, errors, results, checkpoints, progress
        and dependencies) and every queue setting, breaker and schedule to ``path`` as JSON
        lines (gzip when it ends in .gz): one consistent moment, taken while workers run.
        The file is replaced only once complete."""
        from conveyor.snapshot.moves import backup

        return backup(self.backend, path)

    def restore(self, path: str | os.PathLike[str]) -> Summary:
        """Load a backup into this app's database, which must be empty (TargetNotEmpty), of
        any engine: all or nothing (SnapshotError names a damaged line). Ids are kept; running
        jobs come back queued, counted in the summary's ``running``."""
        from conveyor.snapshot.files import read_snapshot

        records = read_snapshot(path)  # a missing or foreign file creates no database
        return self.backend.import_snapshot(records)

    # --- caps on running jobs -------------------------------------------------------------

    def set_concurrency_limit(self, queue: str, max_running: int | None) -> None:
        """Let at most ``max_running`` jobs of ``queue`` run at once, counted across every
        worker on every machine; None removes the cap. Stored in the database: workers of
        other processes follow a change within about a second."""
        check_concurrency_limit(queue, max_running)
        self.backend.set_concurrency_limit(queue, max_running)

    def concurrency_limits(self) -> dict[str, int]:
        """Every capped queue, with its cap on running jobs."""
        return self.backend.concurrency_limits()

    # --- flow control: pause, quiet hours, rate limits (conveyor/limits/) -----------------

    def pause_queue(self, queue: str, until: dt.datetime | float | None = None) -> None:
        """Start no job of ``queue`` on any worker until ``until`` (an aware datetime or UNIX
        seconds; None: until ``resume_queue``). Running jobs finish and enqueue goes on;
        workers of other processes follow within about a second."""
        check_queue(queue)
        self.backend.pause_queue(queue, moment(until))

    def resume_queue(self, queue: str) -> None:
        """Let ``queue`` start jobs again; idle workers take them within about a second."""
        check_queue(queue)
        self.backend.resume_queue(queue)

    def set_quiet_hours(
        self,
        queue: str,
        windows: str | None,
        *,
        days: str | None = None,
        timezone: str = "UTC",
    ) -> None:
        """Start no job of ``queue`` during ``windows`` of local time (``"08:00-18:00"``,
        several separated by commas, ``"22:00-06:00"`` across midnight) on ``days``
        (``"mon-fri"``, ``"sat,sun"``; None: every day) in ``timezone``; None removes them.
        See conveyor/limits/quiet.py for daylight saving time."""
        check_queue(queue)
        quiet = None if windows is None else QuietHours.parse(windows, days=days, timezone=timezone)
        self.backend.set_quiet_hours(queue, quiet)

    def set_rate_limit(self, queue: str, rate: RateLimit | str | None) -> None:
        """Start at most so many jobs of ``queue`` per period across every worker:
        ``"100/m"``, ``"5/s"``, ``"1000/h"``, ``RateLimit(100, per=60)``; None removes it.
        Starts are spaced evenly (see conveyor/limits/rates.py)."""
        check_queue(queue)
        self.backend.set_rate_limit(queue, None if rate is None else parse_rate(rate))

    def queue_gates(self) -> list[QueueGate]:
        """The gates of every queue that has some: cap, pause, quiet hours, rate limit."""
        return self.backend.queue_gates()

    def why(self, job_id: int) -> list[Hold]:
        """Every gate holding waiting job ``job_id``: its run_at, its parents not yet succeeded,
        its queue paused or quiet, a cap reached, a rate limit, an open circuit breaker, no
        live worker serving its queue. Empty when the job is not waiting, or nothing holds
        it."""
        job = self.backend.get(job_id)
        gates = {gate.queue: gate for gate in self.backend.queue_gates()}
        extra: dict[str, Any] = {
            "bucket": self.backend.rate_bucket_of(job_id),
            "breaker": breaker_gate(self, job),
        }
        if job.state is JobState.BLOCKED:
            parents = self.backend.dependencies(job_id).parents
            extra["parents"] = [(p, s) for p, s, _ in parents if s is not JobState.SUCCEEDED]
        context = WhyContext(job, self.backend.now(), gates.get(job.queue), self.workers(), extra)
        return why(context)

    # --- circuit breakers -----------------------------------------------------------------

    def breaker(
        self,
        name: str,
        *,
        failures: int = 5,
        window: float = 60.0,
        cooldown: float = 30.0,
        **options: Any,
    ) -> Breaker:
        """Declare a circuit breaker that tasks share with ``@app.task(breaker=name)``: after
        ``failures`` failed runs within ``window`` seconds (or, with ``ratio=0.5,
        min_calls=20``, that share of at least that many runs) it opens across the fleet and
        their jobs wait, burning no attempt; after ``cooldown`` seconds one probe job runs,
        whose success closes it and whose failure opens it again for twice as long (up to
        ``max_cooldown``; ``cooldown`` is at least 1 s, the age of the list of open breakers a
        process keeps). ``counts``/``ignore``: the exception types that count (default:
        every Exception; never NonRetryable nor the task's dont_retry). See
        conveyor.limits.breakers."""
        try:
            policy = BreakerPolicy(
                name, failures=failures, window=window, cooldown=cooldown, **options
            )
        except TypeError as exc:
            raise ConfigurationError(str(exc)) from None
        if name in self.declared_breakers:
            raise ConfigurationError(f"breaker {name!r} is declared twice")
        declared = self.declared_breakers[name] = Breaker(policy)
        return declared

    def declared_breaker(self, name: str) -> Breaker:
        try:
            return self.declared_breakers[name]
        except KeyError:
            raise ConfigurationError(
                f"unknown breaker {name!r}: declare it first with app.breaker({name!r}, ...)"
            ) from None

    def breakers(self) -> list[BreakerStatus]:
        """Every breaker, declared here or stored, with its state, its failures in the window,
        when it opened and when its next probe may start."""
        return breaker_statuses(self)

    def open_breaker(self, name: str) -> BreakerStatus:
        """Open a breaker by hand, fleet-wide, until ``close_breaker``: no probe meanwhile.
        A breaker this app does not declare must be stored already (it names its tasks)."""
        row = self.backend.set_breaker(known_breaker(self, name), opened=True)
        return breaker_status(row, self.backend.now())

    def close_breaker(self, name: str) -> BreakerStatus:
        """Close a breaker by hand: its jobs run again, its failures are forgotten."""
        row = self.backend.set_breaker(known_breaker(self, name), opened=False)
        return breaker_status(row, self.backend.now())

    # --- HTTP -----------------------------------------------------------------------------

    def asgi(self, *, prefix: str = "", **options: Any) -> Any:
        """The HTTP API of this app as an ASGI application (needs the ``server`` extra): mount
        it in your FastAPI or Starlette app, or serve it with any ASGI server. See
        ``conveyor.http.create_app`` for ``prefix`` and the token options."""
        from conveyor.http import create_app

        return create_app(self, prefix=prefix, **options)

    # --- workers --------------------------------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        """Every worker registered in this database, oldest first, with its health: alive,
        late (missed a beat) or dead (dead ones stay listed for an hour)."""
        return self.backend.list_workers()

    def stop_workers(self, worker_ids: Iterable[str] = (), *, every: bool = False) -> list[str]:
        """Ask workers, on any host, to stop gracefully (or ``every=True``: all that are not
        dead). Each learns it within about a second. All named workers or none
        (``WorkerNotFound``); returns the ids asked."""
        ids = [worker_ids] if isinstance(worker_ids, str) else list(worker_ids)
        ids = [bounds.worker_id(worker_id) for worker_id in ids]
        if every == bool(ids):
            raise ConfigurationError("name the workers to stop, or pass every=True (not both)")
        return self.backend.request_worker_stop(None if every else ids)

    def worker(
        self,
        *,
        queues: Sequence[str] | Mapping[str, Concurrency] | None = None,
        concurrency: Concurrency = 10,
        burst: bool = False,
        **options: Any,
    ) -> Worker:
        from conveyor.worker import Worker

        self.escalations.check_targets(self.tasks)
        return Worker(self, queues=queues, concurrency=concurrency, burst=burst, **options)

    def run_worker(
        self,
        queues: Sequence[str] | Mapping[str, Concurrency] | None = None,
        concurrency: Concurrency = 10,
        burst: bool = False,
        **options: Any,
    ) -> None:
        """Run a worker in this thread until SIGINT/SIGTERM (or, with burst=True, until no job
        is ready)."""
        self.worker(queues=queues, concurrency=concurrency, burst=burst, **options).run()


def _pool_url(pool: object) -> str:
    """How the application's own connection pool connects (see backends/postgres/lent.py)."""
    try:
        from conveyor.backends.postgres.lent import url_of
    except ImportError:  # no psycopg: whatever this is, it is not a pool
        raise ConfigurationError(f"url must be a database URL, got {type(pool).__name__}") from None
    return url_of(pool)
