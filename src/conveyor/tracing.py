"""OpenTelemetry tracing (the ``otel`` extra: ``pip install 'conveyor-jobs[otel]'``): a span
around each enqueue and around each run, and the trace carried in the job from the one to the
other, so that a request's trace continues into the jobs it enqueued.

    from conveyor.tracing import instrument
    instrument(app)               # in the module that defines the app: enqueuers and workers

The enqueue's span (``conveyor enqueue``, kind PRODUCER) is a child of whatever span is
current -- a web request's, say -- and its W3C ``traceparent`` is stored with every job of the
batch (``NewJob.trace_context``, written in the enqueue's transaction). A worker reads it back
as a run starts (``Backend.trace_context``, one read by primary key per run, only with tracing
on) and runs the task inside a span ``conveyor run <task>`` (kind CONSUMER) whose parent is the
enqueue's span, current for whatever the task traces itself. The run's span records its
outcome, and the exception of a failed run. Spans go to the tracer provider given, else the
global one (``opentelemetry.trace.set_tracer_provider``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from conveyor import __version__
from conveyor.backends.base import NewJob
from conveyor.hooks import RunInfo

if TYPE_CHECKING:
    from conveyor.app import Conveyor

_PROPAGATOR = TraceContextTextMapPropagator()
#: Where a run's span and the token of its context wait in ``RunInfo.extra``.
_KEY = "conveyor.tracing"
#: Outcomes of a run that are errors of the task.
_FAILED = ("retrying", "dead")


class Tracing:
    """The spans of one app (``app.tracing``)."""

    def __init__(self, app: Conveyor, tracer_provider: TracerProvider | None = None) -> None:
        self.app = app
        self.tracer = trace.get_tracer("conveyor", __version__, tracer_provider=tracer_provider)

    @contextmanager
    def enqueue(self, jobs: list[NewJob]) -> Iterator[None]:
        """The span of one enqueue of ``jobs``, its trace context stamped on each."""
        attributes: dict[str, Any] = {
            "messaging.system": "conveyor",
            "messaging.operation.type": "send",
            "messaging.batch.message_count": len(jobs),
        }
        tasks = sorted({job.task for job in jobs})
        queues = sorted({job.queue for job in jobs})
        if len(tasks) == 1:
            attributes["conveyor.task"] = tasks[0]
        if len(queues) == 1:
            attributes["messaging.destination.name"] = queues[0]
        with self.tracer.start_as_current_span(
            "conveyor enqueue", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            traceparent = carrier.get("traceparent")
            for job in jobs:
                job.trace_context = traceparent
            yield

    def before_run(self, run: RunInfo) -> None:
        traceparent = self.app.backend.trace_context(run.job_id)
        parent = _PROPAGATOR.extract({"traceparent": traceparent} if traceparent else {})
        span = self.tracer.start_span(
            f"conveyor run {run.task}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "conveyor",
                "messaging.operation.type": "process",
                "messaging.destination.name": run.queue,
                "messaging.message.id": str(run.job_id),
                "conveyor.task": run.task,
                "conveyor.attempt": run.attempt,
                "conveyor.worker": run.worker_id,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        run.extra[_KEY] = (span, token)

    def after_run(self, run: RunInfo) -> None:
        held = run.extra.pop(_KEY, None)
        if held is None:
            return
        span, token = held
        span.set_attribute("conveyor.outcome", run.outcome or "unknown")
        if run.exception is not None:
            span.record_exception(run.exception)
        if run.outcome in _FAILED:
            span.set_status(Status(StatusCode.ERROR, run.dead_reason or repr(run.exception)))
        span.end()
        otel_context.detach(token)


def instrument(app: Conveyor, tracer_provider: TracerProvider | None = None) -> Tracing:
    """Trace ``app``'s enqueues and runs (once: a second call changes nothing)."""
    if app.tracing is None:
        tracing = Tracing(app, tracer_provider)
        app.on("before_run", tracing.before_run)
        app.on("after_run", tracing.after_run)
        app.tracing = tracing
    return app.tracing
