"""``@app.task`` turns a function into a Task: its options, argument validation at enqueue,
and the retry decision when a run fails."""

from __future__ import annotations

import inspect
import json
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from conveyor import bounds, payload
from conveyor.backends.base import Escalate, NewJob, Outcome, OutcomeKind
from conveyor.errors import (
    ArgumentsMismatch,
    ConfigurationError,
    InvalidArguments,
    PayloadTooLarge,
    ResultNotSerializable,
)
from conveyor.job import JobError
from conveyor.limits.breakers import BreakerHit
from conveyor.limits.rates import RateLimit, parse_rate
from conveyor.retry import BackoffPolicy, RetryBudget, resolve_policy
from conveyor.typecheck import ArgumentTypes, compile_arguments
from conveyor.workflows.escalation import Escalation, escalation_for
from conveyor.workflows.links import check_dependency_options, link_batch, link_job

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.job import Job

P = ParamSpec("P")
R = TypeVar("R")

PRIORITY_LEVELS = {"critical": 100, "high": 50, "normal": 0, "low": -50}
IDEMPOTENCY_SCOPES = ("live", "any")
#: Where a run executes: "thread" (the default: the worker's thread pool, or its event loop for
#: ``async def``) or "process" (a child process per job; see conveyor.worker.processes).
ISOLATION_MODES = ("thread", "process")
#: The longest task name the schemas store.
MAX_TASK_NAME = bounds.MAX_TASK_NAME
#: The largest cap on the running jobs of a queue that the schemas store (a 32-bit integer).
MAX_CAP = bounds.MAX_CAP
#: Characters of a rate key: it is indexed beside the task's name (up to 500), within the
#: ~2,700 bytes PostgreSQL takes in an index row, at up to 4 bytes a character.
MAX_RATE_KEY = 100


class NonRetryable(Exception):
    """Raise (or subclass) to dead-letter a job at once, without further attempts."""


def resolve_priority(priority: int | str) -> int:
    if isinstance(priority, bool):
        raise ConfigurationError(f"priority must be an integer or a level name, got {priority!r}")
    if isinstance(priority, int):
        return bounds.priority(priority)
    if isinstance(priority, str) and priority in PRIORITY_LEVELS:
        return PRIORITY_LEVELS[priority]
    raise ConfigurationError(
        f"unknown priority {priority!r}: use an integer or one of {', '.join(PRIORITY_LEVELS)}"
    )


def _to_seconds(name: str, value: float | timedelta | None) -> float | None:
    return None if value is None else bounds.seconds(name, value, bounds.MAX_DELAY)


def _to_timestamp(value: float | datetime | None) -> float | None:
    return None if value is None else bounds.timestamp("run_at", value)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None:
        bounds.seconds("timeout", timeout, bounds.MAX_TIMEOUT, positive=True)


@dataclass(frozen=True)
class JobOptions:
    """Per-enqueue options; None means "the task's default"."""

    queue: str | None = None
    priority: int | str | None = None
    delay: float | timedelta | None = None
    run_at: float | datetime | None = None
    idempotency_key: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    #: The key of the task's rate limit bucket: each key gets the task's limit of its own.
    rate_key: str | None = None
    #: Parents: ids of stored jobs, Job snapshots, or JobSpecs of the same enqueue_many batch
    #: (see conveyor.workflows). The job is blocked until every parent succeeded.
    depends_on: Sequence[Any] | None = None
    #: What a parent ending dead or cancelled does to this job: "cancel" (the default),
    #: "run" or "dead" (see conveyor.workflows.rules).
    on_parent_failure: str | None = None
    #: The workflow the job belongs to (``app.workflow(id)``); composition sets it.
    workflow_id: str | None = None
    #: A JobSpec enqueued with this job, that runs once it succeeded (cancelled otherwise).
    on_success: Any = None
    #: A JobSpec enqueued with this job, that runs once it failed (dead or cancelled), and is
    #: cancelled ("not needed") once it succeeded.
    on_failure: Any = None

    def __post_init__(self) -> None:
        if self.delay is not None and self.run_at is not None:
            raise ConfigurationError("give either delay or run_at, not both")
        if self.queue is not None:
            check_queue(self.queue)
        if self.priority is not None:
            resolve_priority(self.priority)
        _to_seconds("delay", self.delay)
        _to_timestamp(self.run_at)
        if self.max_attempts is not None:
            _check_max_attempts(self.max_attempts)
        _check_timeout(self.timeout)
        if self.idempotency_key is not None:
            bounds.idempotency_key(self.idempotency_key)
        if self.rate_key is not None:
            bounds.text("rate_key", self.rate_key, MAX_RATE_KEY)
        if self.depends_on is not None or self.on_parent_failure is not None:
            object.__setattr__(self, "depends_on", check_dependency_options(self))
        for name in ("on_success", "on_failure"):
            callback = getattr(self, name)
            if callback is not None and type(callback).__name__ != "JobSpec":
                raise ConfigurationError(
                    f"{name} takes a JobSpec (task.job(...)), got {callback!r}"
                )
        if self.workflow_id is not None and (
            not isinstance(self.workflow_id, str) or not 1 <= len(self.workflow_id) <= 200
        ):
            raise ConfigurationError("workflow_id must be a string of 1-200 characters")


#: The options of a job enqueued without any: every field means "the task's default".
DEFAULT_OPTIONS = JobOptions()
_OPTION_NAMES = [f.name for f in fields(JobOptions)]


def check_argument_shapes(task: str, args: object, kwargs: object) -> None:
    """Positional arguments are a list or tuple (a string would be split into characters),
    keyword arguments a mapping of names."""
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ArgumentsMismatch(
            f"args of {task} must be a list or tuple, got {type(args).__name__}"
        )
    if not isinstance(kwargs, Mapping | None) or any(not isinstance(k, str) for k in kwargs or ()):
        raise ArgumentsMismatch(
            f"kwargs of {task} must map names to values, got {type(kwargs).__name__}"
        )


def check_task_name(name: str) -> None:
    bounds.task_name(name)


def check_queue(queue: str) -> None:
    bounds.queue_name(queue)


def check_concurrency_limit(queue: str, max_running: int | None) -> None:
    """A cap on the running jobs of a queue: a queue name, and a whole number of at least 1,
    or None for no cap."""
    check_queue(queue)
    if max_running is not None:
        bounds.whole_number("max_running", max_running, 1, MAX_CAP)


def _check_max_attempts(value: int) -> None:
    bounds.max_attempts(value)


def encode_job(
    task: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    options: JobOptions | None = None,
    *,
    max_payload_bytes: int,
    queue: str = "default",
    priority: int | str = "normal",
    max_attempts: int = 3,
    timeout: float | None = None,
    idempotency: str = "live",
) -> NewJob:
    """Validate and encode one job of the task named ``task``: strict JSON, the payload limit,
    then ``options`` over the given defaults. Raises before anything is written.

    ``Task`` calls it with its own defaults once the arguments fit its signature. Code that
    enqueues by name without the task at hand (the CLI, producers in other services) calls it
    directly and passes the result to ``Conveyor.enqueue_raw``.
    """
    check_task_name(task)
    check_argument_shapes(task, args, kwargs)
    head = _head(
        task, options or DEFAULT_OPTIONS, queue, priority, max_attempts, timeout, idempotency
    )
    args_json, kwargs_json = encode_arguments(task, args, kwargs, max_payload_bytes)
    job = head.job(args_json, kwargs_json)
    if options is not None and options is not DEFAULT_OPTIONS:
        link_job(job, options, None)
    return job


def check_encoded(job: NewJob, max_payload_bytes: int) -> None:
    """Check a NewJob built by hand (``Conveyor.enqueue_raw``) as ``encode_job`` checks its
    own: every field in range, the arguments strict JSON of the right kinds within the limit."""
    check_task_name(job.task)
    check_queue(job.queue)
    bounds.priority(job.priority)
    if job.run_at is not None:
        bounds.timestamp("run_at", job.run_at)
    bounds.seconds("delay", job.delay, bounds.MAX_DELAY)
    _check_max_attempts(job.max_attempts)
    _check_timeout(job.timeout)
    if job.idempotency_key is not None:
        bounds.idempotency_key(job.idempotency_key)
    if job.idempotency_scope not in IDEMPOTENCY_SCOPES:
        raise ConfigurationError(
            f"idempotency_scope must be 'live' or 'any', got {job.idempotency_scope!r}"
        )
    for text, kind, what in (
        (job.args_json, list, f"arguments of {job.task}"),
        (job.kwargs_json, dict, f"keyword arguments of {job.task}"),
    ):
        try:
            value = json.loads(text, parse_constant=_not_json)
        except (TypeError, ValueError, RecursionError):
            raise InvalidArguments(f"{what} are not a JSON text: {text[:80]!r}") from None
        if not isinstance(value, kind):
            raise InvalidArguments(f"{what} must be a JSON {kind.__name__}, got {text[:80]!r}")
        payload.dumps(value, what)  # NUL, lone surrogates, nesting
    if _too_large(job.args_json, job.kwargs_json, max_payload_bytes):
        size = len(job.args_json.encode()) + len(job.kwargs_json.encode())
        raise PayloadTooLarge(size, max_payload_bytes)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True, slots=True)
class _Head:
    """What a job's NewJob holds besides its arguments: the same for every job of one task
    enqueued with the same options, so a batch resolves it once per run of such jobs."""

    task: str
    queue: str
    priority: int
    run_at: float | None
    delay: float
    max_attempts: int
    timeout: float | None
    idempotency_key: str | None
    idempotency_scope: str
    rate_key: str | None = None
    rate_limit: RateLimit | None = None

    def job(self, args_json: str, kwargs_json: str) -> NewJob:
        # Positional: half the cost of keywords, on a path that builds one per job.
        return NewJob(
            self.task,
            self.queue,
            args_json,
            kwargs_json,
            self.priority,
            self.run_at,
            self.delay,
            self.max_attempts,
            self.timeout,
            self.idempotency_key,
            self.idempotency_scope,
            self.rate_key,
            self.rate_limit,
        )


def _head(
    task: str,
    options: JobOptions,
    queue: str,
    priority: int | str,
    max_attempts: int,
    timeout: float | None,
    idempotency: str,
    rate_limit: RateLimit | None = None,
) -> _Head:
    """``options`` over the given defaults."""
    if options.rate_key is not None and rate_limit is None:
        raise ConfigurationError(
            f"rate_key= needs a rate limit on task {task}: declare it with "
            f"@app.task(rate_limit='100/m')"
        )
    return _Head(
        task=task,
        queue=options.queue or queue,
        priority=resolve_priority(priority if options.priority is None else options.priority),
        run_at=_to_timestamp(options.run_at),
        delay=_to_seconds("delay", options.delay) or 0.0,
        max_attempts=options.max_attempts or max_attempts,
        timeout=options.timeout or timeout,
        idempotency_key=options.idempotency_key,
        idempotency_scope=idempotency,
        rate_key=None if rate_limit is None else (options.rate_key or ""),
        rate_limit=rate_limit,
    )


def encode_arguments(
    task: str, args: Sequence[Any], kwargs: Mapping[str, Any], max_payload_bytes: int
) -> tuple[str, str]:
    """Strict JSON of the arguments, within the payload limit."""
    # Jobs without arguments are common on the bulk path: skip the encoder for them.
    args_json = payload.dumps(list(args), f"arguments of {task}") if args else "[]"
    kwargs_json = payload.dumps(kwargs, f"keyword arguments of {task}") if kwargs else "{}"
    if _too_large(args_json, kwargs_json, max_payload_bytes):
        size = len(args_json.encode()) + len(kwargs_json.encode())
        raise PayloadTooLarge(size, max_payload_bytes)
    return args_json, kwargs_json


def _too_large(args_json: str, kwargs_json: str, max_payload_bytes: int) -> bool:
    size = len(args_json) + len(kwargs_json)
    # Cheap bound first: a character is at most 4 bytes in UTF-8.
    return size * 4 > max_payload_bytes and (
        len(args_json.encode()) + len(kwargs_json.encode()) > max_payload_bytes
    )


@dataclass(slots=True)
class JobSpec:
    """A job described but not yet enqueued: pass a list of them to ``app.enqueue_many``.

    Enqueueing checks the arguments against the task's type hints and, where the hints convert
    them (dataclasses, models, enums), leaves their JSON form here: what the job stores."""

    task: Task[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: Shared when not given: the task resolved these options once, at registration.
    options: JobOptions = DEFAULT_OPTIONS

    def to_new_job(self) -> NewJob:
        return self.task.build(self.args, self.kwargs, self.options, self)


def build_jobs(specs: Sequence[JobSpec]) -> list[NewJob]:
    """Validate and encode a batch; raises the error of its first invalid job, before anything
    is written. The arguments of the whole batch go through one JSON encoder call; should that
    find anything to look at closely, every job takes the exact path of ``JobSpec.to_new_job``,
    which raises the same error, naming the task, as enqueueing that job alone would."""
    built = _build_batch(specs)
    jobs = [spec.to_new_job() for spec in specs] if built is None else built
    for spec in specs:
        if spec.options is not DEFAULT_OPTIONS:
            link_batch(specs, jobs)
            break
    return jobs


def build_one(spec: JobSpec) -> NewJob | None:
    """The job of a single enqueue, or None when ``build_jobs`` must build it: to raise the
    error that names what is wrong, or because a cheap screen was inconclusive. The checks of
    ``_build_batch`` for one job, without the batch's bookkeeping, which costs more than they
    do."""
    task, args, kwargs, options = spec.task, spec.args, spec.kwargs, spec.options
    arguments = task._arguments
    shape = (len(args), *kwargs) if kwargs else len(args)
    if shape not in arguments.binding and not arguments.binds(args, kwargs):
        return None
    types = task.types
    if types is not None:
        try:
            args, kwargs = _typed(spec, types)
        except ArgumentsMismatch:
            return None
    args_json = kwargs_json = None
    if args:
        args_json = payload.dumps_one(args)
        if args_json is None:
            return None
    if kwargs:
        kwargs_json = payload.dumps_one(kwargs)
        if kwargs_json is None:
            return None
    job = task._head_for(options).job(args_json or "[]", kwargs_json or "{}")
    if _too_large(job.args_json, job.kwargs_json, task.app.settings.max_payload_bytes):
        return None
    if options is not DEFAULT_OPTIONS:
        link_batch((spec,), (job,))
    return job


def _build_batch(specs: Sequence[JobSpec]) -> list[NewJob] | None:
    """The jobs, or None if any of them needs the exact path."""
    jobs: list[NewJob] = []
    # Jobs with arguments, written with "[]" and "{}" until their JSON is known: with the
    # payload limit of their task, and whether they have positional and keyword arguments.
    encoding: list[tuple[NewJob, int, bool, bool]] = []
    values: list[Any] = []
    head: _Head | None = None
    task: Task[..., Any] | None = None
    options: JobOptions | None = None
    for spec in specs:
        if head is None or spec.task is not task or spec.options is not options:
            task, options = spec.task, spec.options
            head = task._head_for(options)
            limit = task.app.settings.max_payload_bytes
            arguments = task._arguments
            binding = arguments.binding
            types = task.types
        args, kwargs = spec.args, spec.kwargs
        shape = (len(args), *kwargs) if kwargs else len(args)
        if shape not in binding and not arguments.binds(args, kwargs):
            return None
        if types is not None:
            try:
                args, kwargs = _typed(spec, types)
            except ArgumentsMismatch:
                return None  # the exact path raises it, in the order of the batch
        job = head.job("[]", "{}")
        jobs.append(job)
        if args or kwargs:
            encoding.append((job, limit, bool(args), bool(kwargs)))
            if args:
                values.append(args)
            if kwargs:
                values.append(kwargs)
    if not encoding:
        return jobs
    encoded = payload.dumps_many(values, containers=True)
    if encoded is None:
        return None
    texts = iter(encoded)
    for job, limit, has_args, has_kwargs in encoding:
        if has_args:
            job.args_json = next(texts)
        if has_kwargs:
            job.kwargs_json = next(texts)
        if _too_large(job.args_json, job.kwargs_json, limit):
            return None
    return jobs


def _typed(spec: JobSpec, types: ArgumentTypes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of ``spec`` checked against the task's hints, in their JSON form. The spec
    keeps that form: the Job built from it then shows what was written, as reading it would."""
    args, kwargs = types.encode(spec.args, spec.kwargs)
    if args is not spec.args or kwargs is not spec.kwargs:
        spec.args, spec.kwargs = tuple(args), dict(kwargs)
    return spec.args, spec.kwargs


class Task(Generic[P, R]):
    """A registered task. Call it to run the function directly; ``enqueue`` to run it later."""

    #: Option sets remembered per task; a task given more checks the others at every call.
    MAX_OPTION_SETS = 64

    def __init__(
        self,
        app: Conveyor,
        fn: Callable[..., Any],
        *,
        name: str,
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
    ) -> None:
        check_task_name(name)
        check_queue(queue)
        _check_max_attempts(max_attempts)
        _check_timeout(timeout)
        if idempotency not in IDEMPOTENCY_SCOPES:
            raise ConfigurationError(f"idempotency must be 'live' or 'any', got {idempotency!r}")
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.priority = resolve_priority(priority)
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.backoff = resolve_policy(retry)
        self.retry_budget = retry_budget
        self.dont_retry = tuple(dont_retry)
        self.pass_context = pass_context
        self.idempotency = idempotency
        self.is_async = inspect.iscoroutinefunction(fn)
        self.isolation = isolation
        self.memory_limit_mb = memory_limit_mb
        self.cpu_limit_s = cpu_limit_s
        #: At most so many starts per period across every worker, per rate_key (see
        #: conveyor/limits/buckets.py).
        self.rate_limit = None if rate_limit is None else parse_rate(rate_limit)
        _check_isolation(fn, isolation, memory_limit_mb)
        _check_limit("cpu_limit_s", cpu_limit_s, isolation)
        if escalate is not None:
            app.escalations.add({name: escalate})
        self._arguments = ArgumentChecker(self._enqueue_signature(fn, pass_context))
        #: The compiled type hints (see conveyor.typecheck), None without any to check.
        self.types = compile_arguments(name, fn, self._arguments.signature) if typecheck else None
        #: The name of the circuit breaker this task's runs report to (see app.breaker).
        self.breaker = breaker
        declared = None if breaker is None else app.declared_breaker(breaker)
        #: What a success reports to the breaker (None: no breaker).
        self.success_hit = None if declared is None else BreakerHit(declared, failed=False)
        if declared is not None and name not in declared.tasks:
            declared.tasks.append(name)
        #: ``options(...)`` seen before, checked once: the same options are usually given at
        #: every call (``task.options(queue="mail").enqueue(...)``); and the heads of their jobs.
        self._bound: dict[Any, BoundTask[P, R]] = {}
        self._heads: dict[JobOptions, _Head] = {}
        self._default_head = _head(
            name,
            DEFAULT_OPTIONS,
            queue,
            self.priority,
            max_attempts,
            timeout,
            idempotency,
            self.rate_limit,
        )

    @staticmethod
    def _enqueue_signature(fn: Callable[..., Any], pass_context: bool) -> inspect.Signature:
        signature = inspect.signature(fn)
        if not pass_context:
            return signature
        params = list(signature.parameters.values())
        if not params:
            raise ConfigurationError(
                f"task {fn.__qualname__} has pass_context=True but takes no arguments"
            )
        return signature.replace(parameters=params[1:])

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.fn(*args, **kwargs)
        return result

    # --- enqueue --------------------------------------------------------------------------

    def options(self, **options: Any) -> BoundTask[P, R]:
        """Override options for the next enqueue: queue, priority, delay, run_at,
        idempotency_key, max_attempts, timeout, rate_key (a task with a rate limit: the key
        whose own limit the job counts against, e.g. a tenant id), depends_on,
        on_parent_failure, workflow_id, on_success, on_failure (see conveyor.workflows)."""
        try:
            # By type as well: True == 1, and priority=True is refused where 1 is not.
            key: Any = tuple(sorted((name, type(v), v) for name, v in options.items()))
            bound = self._bound.get(key)
        except TypeError:  # a value that cannot be a key (a list of parents): not remembered
            key = bound = None
        if bound is not None:
            return bound
        _refuse_unknown("option", options, _OPTION_NAMES)
        bound = BoundTask(self, JobOptions(**options))
        if key is not None and len(self._bound) < self.MAX_OPTION_SETS:
            self._bound[key] = bound
            self._heads[bound._options] = self._head_for(bound._options)
        return bound

    def job(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec:
        return JobSpec(self, args, kwargs)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        return self.app.enqueue_one(JobSpec(self, args, kwargs))

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        return await self.app.enqueue_one_async(JobSpec(self, args, kwargs))

    def enqueue_tx(self, connection: Any, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue inside your open transaction on ``connection`` (a psycopg Connection,
        PostgreSQL only): the job exists if and only if that transaction commits."""
        return self.app.enqueue_many([JobSpec(self, args, kwargs)], connection=connection)[0]

    async def enqueue_tx_async(self, connection: Any, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``enqueue_tx`` on a psycopg AsyncConnection."""
        specs = [JobSpec(self, args, kwargs)]
        return (await self.app.enqueue_many_async(specs, connection=connection))[0]

    def _head_for(self, options: JobOptions) -> _Head:
        """The fields of this task's jobs enqueued with ``options``."""
        if options is DEFAULT_OPTIONS:
            return self._default_head
        try:
            head = self._heads.get(options)
        except TypeError:  # options holding lists or JobSpecs: never remembered
            head = None
        if head is not None:
            return head
        return _head(
            self.name,
            options,
            self.queue,
            self.priority,
            self.max_attempts,
            self.timeout,
            self.idempotency,
            self.rate_limit,
        )

    def build(
        self,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        options: JobOptions,
        spec: JobSpec | None = None,
    ) -> NewJob:
        """Validate and encode one job; raises before anything is written."""
        try:
            self._arguments.check(args, kwargs)
        except TypeError as exc:
            raise ArgumentsMismatch(f"arguments do not match task {self.name}: {exc}") from None
        values: tuple[Sequence[Any], Mapping[str, Any]] = (args, kwargs)
        if self.types is not None:
            values = self.types.encode(args, kwargs) if spec is None else _typed(spec, self.types)
        args_json, kwargs_json = encode_arguments(
            self.name, *values, self.app.settings.max_payload_bytes
        )
        return self._head_for(options).job(args_json, kwargs_json)

    # --- the retry decision ---------------------------------------------------------------

    def failure_outcome(
        self,
        job_id: int,
        token: str,
        attempt: int,
        max_attempts: int,
        exc: BaseException,
        now: float,
        checkpoint_json: str | None = None,
    ) -> Outcome:
        """What a failed run leads to: a retry after backoff, the dead-letter queue, or an
        escalation (conveyor.workflows.escalation) written with the dead end."""
        rule = self.app.escalations.rule_for(self.name)
        if rule is not None and rule.max_retries is not None:
            max_attempts = rule.max_retries + 1
        outcome = self._failure_outcome(
            job_id, token, attempt, max_attempts, exc, now, checkpoint_json
        )
        if rule is None:
            return outcome
        found = escalation_for(rule, exc, outcome.kind is OutcomeKind.DEAD)
        if found is None:
            return outcome
        target, why = found
        task = self.app.get_task(target.task or self.name)
        priority = task.priority if target.priority is None else resolve_priority(target.priority)
        reason = outcome.dead_reason or f"{why}: {outcome.error.type if outcome.error else ''}"
        return replace(
            outcome,
            kind=OutcomeKind.DEAD,
            dead_reason=reason,
            retry_in=0.0,
            retry_budget=None,
            escalate=Escalate(
                task.name,
                target.queue or task.queue,
                priority,
                task.max_attempts,
                task.timeout,
                why,
            ),
        )

    def _failure_outcome(
        self,
        job_id: int,
        token: str,
        attempt: int,
        max_attempts: int,
        exc: BaseException,
        now: float,
        checkpoint_json: str | None,
    ) -> Outcome:
        error = describe_error(exc, attempt, now)
        summary = f"{error.type}: {error.message}" if error.message else error.type
        base = Outcome(
            job_id, token, OutcomeKind.DEAD, error=error, checkpoint_json=checkpoint_json
        )
        # A result that is not JSON would not be JSON the next time either.
        if isinstance(exc, (NonRetryable, ResultNotSerializable, self.dont_retry)):
            # Bad input says nothing about the resource behind a breaker: not counted.
            return replace(base, dead_reason=f"non-retryable error: {summary}")
        hit = self.success_hit
        if hit is not None and hit.breaker.policy.counts_failure(exc):
            base.breaker = BreakerHit(hit.breaker, failed=True)
        if attempt >= max_attempts:
            return replace(
                base, dead_reason=f"attempts exhausted ({attempt}/{max_attempts}): {summary}"
            )
        delay = max(0.0, float(self.backoff(attempt, exc)))
        budget = self.retry_budget
        return replace(
            base,
            kind=OutcomeKind.RETRY,
            retry_in=delay,
            retry_budget=None if budget is None else (self.name, budget.limit, budget.window),
        )


def _check_limit(name: str, value: int | None, isolation: str) -> None:
    """A resource limit of a child process: a whole number >= 1, with isolation='process'."""
    if value is None:
        return
    if isolation != "process":
        raise ConfigurationError(f"{name} needs isolation='process'")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")


def check_task_options(options: Mapping[str, Any]) -> None:
    """Refuse what ``@app.task(...)`` does not take, naming what it does."""
    accepted = list(inspect.signature(Task.__init__).parameters)[3:]  # after self, app, fn
    _refuse_unknown("task option", options, accepted)


def _refuse_unknown(what: str, given: Mapping[str, Any], accepted: Sequence[str]) -> None:
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ConfigurationError(
            f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
            f"use {', '.join(accepted)}"
        )


def _check_isolation(fn: Callable[..., Any], isolation: str, memory_limit_mb: int | None) -> None:
    if isolation not in ISOLATION_MODES:
        raise ConfigurationError(f"isolation must be 'thread' or 'process', got {isolation!r}")
    if memory_limit_mb is not None:
        if isolation != "process":
            raise ConfigurationError("memory_limit_mb needs isolation='process'")
        if (
            isinstance(memory_limit_mb, bool)
            or not isinstance(memory_limit_mb, int)
            or memory_limit_mb < 1
        ):
            raise ConfigurationError(
                f"memory_limit_mb must be an integer >= 1, got {memory_limit_mb!r}"
            )
    if isolation != "process":
        return
    if sys.platform == "win32":
        raise ConfigurationError("isolation='process' needs a POSIX system")
    # The child process imports the function by module and qualified name: one defined inside
    # another function, or a lambda, has no such name.
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise ConfigurationError(
            f"task {qualname or fn!r} has isolation='process' but is not importable by name "
            "(define it at the top level of a module)"
        )


def describe_error(exc: BaseException, attempt: int, now: float) -> JobError:
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    return JobError(
        attempt=attempt,
        type=name,
        message=str(exc)[:2000],
        traceback="".join(traceback.format_exception(exc))[-8000:],
        at=now,
    )


class ArgumentChecker:
    """Checks that arguments bind to a signature. Whether they do depends only on their shape:
    how many are positional and which keywords are given. ``Signature.bind`` judges each shape
    once; the bulk path then pays a set lookup per job."""

    #: Shapes remembered per task; a task called in more ways than this binds the rest each time.
    MAX_SHAPES = 64

    def __init__(self, signature: inspect.Signature) -> None:
        self.signature = signature
        #: The shapes known to bind: ``len(args)``, or ``(len(args), *kwargs)`` with keywords.
        self.binding: set[int | tuple[Any, ...]] = set()

    def check(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError (with Python's own message) unless the arguments bind."""
        if not self.binds(args, kwargs):
            self.signature.bind(*args, **kwargs)

    def binds(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
        shape = (len(args), *kwargs) if kwargs else len(args)
        if shape in self.binding:
            return True
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError:
            return False
        if len(self.binding) < self.MAX_SHAPES:
            self.binding.add(shape)
        return True


class BoundTask(Generic[P, R]):
    """A task with per-enqueue options: ``task.options(delay=5).enqueue(...)``."""

    def __init__(self, task: Task[P, R], options: JobOptions) -> None:
        self.task = task
        self._options = options

    def job(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec:
        return JobSpec(self.task, args, kwargs, self._options)

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        return self.task.app.enqueue_one(JobSpec(self.task, args, kwargs, self._options))

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        return await self.task.app.enqueue_one_async(
            JobSpec(self.task, args, kwargs, self._options)
        )

    def enqueue_tx(self, connection: Any, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue inside your open transaction on ``connection`` (see ``Task.enqueue_tx``)."""
        return self.task.app.enqueue_many([self.job(*args, **kwargs)], connection=connection)[0]

    async def enqueue_tx_async(self, connection: Any, /, *args: P.args, **kwargs: P.kwargs) -> Job:
        specs = [self.job(*args, **kwargs)]
        return (await self.task.app.enqueue_many_async(specs, connection=connection))[0]


def default_task_name(fn: Callable[..., Any]) -> str:
    module = fn.__module__
    if module == "__main__":
        # A script run as `python -m pkg.mod` knows its importable name; workers import that.
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else "__main__"
    return f"{module}.{fn.__qualname__}"


__all__ = [
    "PRIORITY_LEVELS",
    "BoundTask",
    "JobOptions",
    "JobSpec",
    "NonRetryable",
    "Task",
    "encode_job",
]
