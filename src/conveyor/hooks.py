"""Hooks: plain functions the application registers to observe jobs -- for logs, error
reporting (Sentry), tracing and metrics -- without subclassing anything.

    @app.on("failure")
    def report(run: RunInfo) -> None:
        sentry_sdk.capture_exception(run.exception)

One function per event, like Celery's signals and Oban's telemetry events rather than
Dramatiq's middleware classes: a hook is a function of one argument, registered on the app, and
any number of them may listen to one event. The events:

``enqueue(jobs)``
    In the enqueuing process, after ``enqueue``/``enqueue_many`` (sync or async, by name or
    raw) wrote the jobs -- inside the caller's transaction for ``enqueue_tx``. ``jobs`` is the
    list of ``Job`` returned.
``before_run(run)``
    In the worker, just before the task's function is called.
``after_run(run)``
    In the worker, once the run is over, whatever its end: ``run.outcome`` says which.
``failure(run)``
    After each failed attempt (before ``after_run``): ``run.exception`` is the error,
    ``run.will_retry`` whether the task's retry policy gives it another attempt, in
    ``run.retry_in`` seconds.
``dead(run)``
    Once a job this worker ran is *written* dead: attempts exhausted, a non-retryable error, or
    a retry its retry budget refused. On the worker's event loop thread.

Where they run. ``before_run``, ``failure`` and ``after_run`` run where the job runs, with the
same context variables as the task: on its pool thread for a plain function, in its asyncio task
for ``async def``. So a tracing span made current in ``before_run`` is the parent of whatever
the task traces, and ``after_run`` can close it. For ``isolation="process"`` tasks they run in
the worker around the child process (the child runs only the function). The same ``RunInfo``
object goes to every hook of one run; ``run.extra`` is a dict for hooks to pass things along
(a span, a start time).

Failure isolation. A hook that raises is logged (logger ``conveyor.hooks``, with the traceback)
and the next hook runs; the job's outcome is decided before ``after_run``/``failure`` run and is
written whatever they do, so a broken hook can neither lose a job nor finish it twice. A hook
that blocks holds up what it runs on -- for async and process tasks and for ``dead``, the
worker's event loop -- so hooks should be quick (hand slow work to a queue or a thread).

What is not reported: a run that never started (a task this worker does not know), and jobs
that the rescue of a dead worker dead-letters (that worker is gone). ``enqueue`` gets what
``enqueue_many`` returns, so a job an idempotency key matched is there as the existing job.
Without hooks registered, none of this costs the hot path more than an attribute check per job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

from conveyor.errors import ConfigurationError

log = logging.getLogger("conveyor.hooks")

EVENTS = ("enqueue", "before_run", "after_run", "failure", "dead")
Event = Literal["enqueue", "before_run", "after_run", "failure", "dead"]
#: Every event but ``enqueue``: the ones about a run in a worker.
RUN_EVENTS = frozenset(EVENTS) - {"enqueue"}
H = TypeVar("H", bound=Callable[..., Any])


@dataclass(slots=True)
class RunInfo:
    """One run of one job, as hooks see it."""

    job_id: int
    task: str
    queue: str
    #: The number of this run (1 for the first).
    attempt: int
    max_attempts: int
    worker_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    #: Free for hooks: whatever ``before_run`` puts here, ``after_run`` finds.
    extra: dict[str, Any] = field(default_factory=dict)
    #: How the run ended (None until it has): "succeeded", "retrying", "dead", "cancelled",
    #: "released" (put back at shutdown) or "lost" (another worker owns the job now).
    outcome: str | None = None
    #: What the function returned, for a run that succeeded.
    result: Any = None
    #: What it raised, for a failed run.
    exception: BaseException | None = None
    #: Seconds the run took (its function, or its child process), once over.
    duration: float | None = None
    #: For "retrying": seconds until the next attempt.
    retry_in: float | None = None
    #: For "dead": why.
    dead_reason: str | None = None

    @property
    def will_retry(self) -> bool:
        return self.outcome == "retrying"


class Hooks:
    """The hooks of one app (``app.hooks``); register them with ``app.on``."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[..., Any]]] = {event: [] for event in EVENTS}
        #: True once any run hook is registered: the worker's one check per job.
        self.runs = False
        self._lock = threading.Lock()

    def add(self, event: str, fn: Callable[..., Any]) -> None:
        if event not in self._hooks:
            raise ConfigurationError(
                f"unknown hook event {event!r}: use one of {', '.join(EVENTS)}"
            )
        if not callable(fn):
            raise ConfigurationError(f"a hook must be callable, got {fn!r}")
        self._hooks[event].append(fn)
        self.runs = self.runs or event in RUN_EVENTS

    def remove(self, event: str, fn: Callable[..., Any]) -> None:
        """Unregister ``fn`` (ValueError if it is not registered for ``event``)."""
        self._hooks[event].remove(fn)
        self.runs = any(self._hooks[name] for name in RUN_EVENTS)

    def __getitem__(self, event: str) -> list[Callable[..., Any]]:
        return self._hooks[event]

    def fire(self, event: str, value: Any) -> None:
        """Call every hook of ``event``; one that raises is logged and the rest still run."""
        for fn in self._hooks[event]:
            try:
                fn(value)
            except BaseException:  # a hook's SystemExit must not end a worker thread either
                job = getattr(value, "job_id", None)
                log.exception(
                    "%s hook %s failed%s; carrying on",
                    event,
                    getattr(fn, "__qualname__", repr(fn)),
                    "" if job is None else f" for job {job}",
                    extra={} if job is None else {"job_id": job},
                )

    def end(self, info: RunInfo, outcome: str) -> bool:
        """Mark the run over, once: False if it already was (a thread that returns after the
        worker settled its run on a timeout or at shutdown)."""
        with self._lock:
            if info.outcome is not None:
                return False
            info.outcome = outcome
            return True


@overload
def register(hooks: Hooks, event: Event, fn: H) -> H: ...
@overload
def register(hooks: Hooks, event: Event, fn: None = None) -> Callable[[H], H]: ...
def register(hooks: Hooks, event: Event, fn: H | None = None) -> H | Callable[[H], H]:
    """``app.on(event)`` as a decorator, or ``app.on(event, fn)``."""
    if event not in EVENTS:
        raise ConfigurationError(f"unknown hook event {event!r}: use one of {', '.join(EVENTS)}")

    def add(function: H) -> H:
        hooks.add(event, function)
        return function

    return add(fn) if fn is not None else add


__all__ = ["EVENTS", "Hooks", "RunInfo"]
