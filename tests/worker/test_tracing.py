"""OpenTelemetry (conveyor.tracing): the span of a request that enqueues a job is the ancestor
of the job's run span, through the trace context stored in the job; with the SDK's in-memory
exporter, on every engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor import Conveyor
from conveyor.tracing import instrument
from tests.engines import engine
from tests.support import enabled_backends


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(params=enabled_backends())
def app(
    request: pytest.FixtureRequest, tmp_path: Path, exporter: InMemorySpanExporter
) -> Iterator[tuple[Conveyor, TracerProvider]]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with engine(request.param, tmp_path) as database, database.app() as found:
        tracer = provider.get_tracer("the-task")

        @found.task(name="work")
        def work() -> int:
            with tracer.start_as_current_span("inside the task"):
                return 1

        @found.task(name="explode", max_attempts=1)
        def explode() -> None:
            raise RuntimeError("boom")

        instrument(found, provider)
        yield found, provider


def _named(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_a_requests_trace_continues_into_its_jobs_run(
    app: tuple[Conveyor, TracerProvider], exporter: InMemorySpanExporter
) -> None:
    conveyor, provider = app
    with provider.get_tracer("web").start_as_current_span("POST /signup") as request:
        conveyor.enqueue("work")
    conveyor.worker(concurrency=1, burst=True).run()

    spans = exporter.get_finished_spans()
    enqueue = _named(spans, "conveyor enqueue")
    run = _named(spans, "conveyor run work")
    inside = _named(spans, "inside the task")
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (enqueue, run, inside)} == {trace_id}
    assert _parent_id(enqueue) == request.get_span_context().span_id
    assert _parent_id(run) == enqueue.context.span_id
    assert _parent_id(inside) == run.context.span_id
    assert (enqueue.kind, run.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert run.attributes is not None and run.attributes["conveyor.outcome"] == "succeeded"
    assert enqueue.attributes is not None and enqueue.attributes["conveyor.task"] == "work"


def test_a_failed_run_records_its_error(
    app: tuple[Conveyor, TracerProvider], exporter: InMemorySpanExporter
) -> None:
    conveyor, _ = app
    conveyor.enqueue("explode")  # no span current: the enqueue starts a trace of its own
    conveyor.worker(concurrency=1, burst=True).run()
    spans = exporter.get_finished_spans()
    enqueue = _named(spans, "conveyor enqueue")
    run = _named(spans, "conveyor run explode")
    assert enqueue.parent is None and _parent_id(run) == enqueue.context.span_id
    assert run.status.status_code is StatusCode.ERROR
    assert [event.name for event in run.events] == ["exception"]
    assert run.attributes is not None and run.attributes["conveyor.outcome"] == "dead"


def test_without_instrument_nothing_is_stored(tmp_path: Path) -> None:
    with engine("sqlite", tmp_path) as database, database.app() as plain:

        @plain.task(name="work")
        def work() -> None:
            return None

        job = plain.enqueue("work")
        assert plain.tracing is None and plain.backend.trace_context(job.id) is None
