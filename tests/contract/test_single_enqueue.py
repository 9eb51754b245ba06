"""Contract: a job enqueued on its own (the one-statement path of each engine) is stored,
dated and put in its state exactly as in a batch."""

from __future__ import annotations

import pytest

from conveyor.backends.base import Backend
from conveyor.job import JobState
from tests.support import FakeClock, new_job


@pytest.mark.parametrize(
    ("run_in", "delay", "state"),
    [
        (None, 0.0, JobState.QUEUED),
        (None, 60.0, JobState.SCHEDULED),
        (3600.0, 0.0, JobState.SCHEDULED),
        (-10.0, 0.0, JobState.QUEUED),
    ],
)
def test_a_single_job_gets_its_state_and_due_time(
    backend: Backend, clock: FakeClock, run_in: float | None, delay: float, state: JobState
) -> None:
    run_at = None if run_in is None else clock.now + run_in
    [result] = backend.enqueue_many([new_job(run_at=run_at, delay=delay)])
    due_after = delay if run_in is None else run_in

    assert result.created and result.state is state
    job = backend.get(result.job_id)
    assert job.state is state
    assert job.run_at == pytest.approx(clock.now + due_after)
    assert job.created_at == pytest.approx(clock.now)


def test_single_jobs_take_increasing_ids_and_keep_their_fields(backend: Backend) -> None:
    results = [
        backend.enqueue_many([new_job(args_json=f"[{n}]", timeout=1.5 * n or None)])[0]
        for n in range(5)
    ]

    ids = [r.job_id for r in results]
    assert ids == sorted(ids) and len(set(ids)) == 5
    for n, result in enumerate(results):
        job = backend.get(result.job_id)
        assert job.args == [n]
        assert job.timeout == (1.5 * n or None)
        assert job.idempotency_key is None
