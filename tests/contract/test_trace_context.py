"""Contract: the trace context a job is enqueued with (conveyor.tracing) is stored with it and
read back by id, in every enqueue path."""

from __future__ import annotations

from conveyor.backends.base import Backend
from tests.contract.helpers import enqueue
from tests.support import new_job

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OTHER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_job_keeps_the_trace_context_it_was_enqueued_with(backend: Backend) -> None:
    single = enqueue(backend, trace_context=PARENT)
    plain = enqueue(backend)
    batch = backend.enqueue_many([new_job(trace_context=OTHER) for _ in range(3)])
    assert backend.trace_context(single) == PARENT
    assert backend.trace_context(plain) is None
    assert {backend.trace_context(r.job_id) for r in batch} == {OTHER}
    assert backend.trace_context(10**9) is None


def test_a_job_an_idempotency_key_matched_keeps_its_own(backend: Backend) -> None:
    first = enqueue(backend, idempotency_key="k", trace_context=PARENT)
    again = enqueue(backend, idempotency_key="k", trace_context=OTHER)
    assert again == first
    assert backend.trace_context(first) == PARENT
