"""Contract: per-minute aggregates (conveyor/backends/tally.py) -- written with the outcomes and
the rescues, enqueued jobs counted past a watermark, folded into totals that never go down,
pruned after their horizon; and the cheap reads beside them (oldest ready job, job counts)."""

from __future__ import annotations

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import Backend, Outcome, OutcomeKind
from conveyor.backends.tally import BOUNDS, Tally, minute_of, quantile
from conveyor.job import JobState
from tests.contract.helpers import LEASE, enqueue, error, make_job_in
from tests.contract.test_workers import registration
from tests.support import FakeClock

MINUTE = 60.0
HOUR = 3600.0


def _by_key(rows: list[Tally]) -> dict[tuple[int | None, str, str], Tally]:
    return {(row.minute, row.queue, row.task): row for row in rows}


def _le(value: float) -> list[int]:
    """The cumulative buckets of one observation of ``value``."""
    return [1 if value <= bound else 0 for bound in BOUNDS]


def test_finishes_are_tallied_by_minute_queue_and_task(backend: Backend, clock: FakeClock) -> None:
    start = clock()
    ids = [enqueue(backend, task="resize", queue="images") for _ in range(4)]
    cancelled = enqueue(backend, task="mail", queue="emails")
    clock.advance(2.0)  # every job waits 2 s in the queue
    runs = {c.id: c for c in backend.claim("w1", None, 10, LEASE)}
    clock.advance(0.5)  # and runs 0.5 s
    now = clock()
    results = backend.finish_many(
        [
            Outcome(ids[0], runs[ids[0]].lease_token, OutcomeKind.SUCCEEDED, result_json="1"),
            Outcome(ids[1], runs[ids[1]].lease_token, OutcomeKind.SUCCEEDED, result_json="2"),
            Outcome(
                ids[2],
                runs[ids[2]].lease_token,
                OutcomeKind.RETRY,
                error=error(1, now),
                retry_in=10.0,
            ),
            Outcome(
                ids[3],
                runs[ids[3]].lease_token,
                OutcomeKind.DEAD,
                error=error(1, now),
                dead_reason="boom",
            ),
            Outcome(cancelled, runs[cancelled].lease_token, OutcomeKind.CANCELLED),
            # A stale token is not applied, so not counted.
            Outcome(ids[0], "stale", OutcomeKind.SUCCEEDED, result_json="3"),
        ]
    )
    assert [r.applied for r in results] == [True] * 5 + [False]

    rows = _by_key(backend.minute_stats(start))
    minute = minute_of(now)
    assert set(rows) == {(minute, "emails", "mail"), (minute, "images", "resize")}
    images = rows[(minute, "images", "resize")]
    assert (images.succeeded, images.retried, images.dead, images.cancelled) == (2, 1, 1, 0)
    assert images.failed == 2 and images.rescued == 0
    assert images.run_count == 4 and images.run_sum == pytest.approx(2.0)
    assert images.run_le == [4 * b for b in _le(0.5)]
    assert images.wait_count == 4 and images.wait_sum == pytest.approx(8.0)
    assert images.wait_le == [4 * b for b in _le(2.0)]
    emails = rows[(minute, "emails", "mail")]
    assert (emails.succeeded, emails.cancelled, emails.run_count) == (0, 1, 1)


def test_a_released_run_is_not_tallied(backend: Backend, clock: FakeClock) -> None:
    start = clock()
    job_id = enqueue(backend)
    [run] = backend.claim("w1", None, 1, LEASE)
    backend.finish_many([Outcome(job_id, run.lease_token, OutcomeKind.RELEASED)])
    assert backend.minute_stats(start) == []


def test_a_retry_measures_its_wait_from_when_it_was_due(backend: Backend, clock: FakeClock) -> None:
    start = clock()
    job_id = make_job_in(backend, clock, JobState.RETRYING)  # due again in an hour
    clock.advance(HOUR + 30.0)
    [run] = backend.claim("w1", None, 1, LEASE)
    clock.advance(1.0)
    backend.finish_many([Outcome(job_id, run.lease_token, OutcomeKind.SUCCEEDED, "null")])
    [first, second] = backend.minute_stats(start)
    assert (first.retried, second.succeeded) == (1, 1)
    assert second.wait_sum == pytest.approx(30.0) and second.run_sum == pytest.approx(1.0)


def test_minutes_sum_the_work_of_several_workers(backend: Backend, clock: FakeClock) -> None:
    start = clock()
    other = open_backend(backend.settings, clock=clock)
    try:
        ids = [enqueue(backend, task="t") for _ in range(6)]
        mine = backend.claim("w1", None, 3, LEASE)
        theirs = other.claim("w2", None, 3, LEASE)
        assert {c.id for c in mine + theirs} == set(ids)
        clock.advance(1.0)
        backend.finish_many([Outcome(c.id, c.lease_token, OutcomeKind.SUCCEEDED) for c in mine])
        other.finish_many([Outcome(c.id, c.lease_token, OutcomeKind.SUCCEEDED) for c in theirs[:2]])
        other.finish_many(
            [
                Outcome(c.id, c.lease_token, OutcomeKind.DEAD, error=error(1, clock()))
                for c in theirs[2:]
            ]
        )
    finally:
        other.close()
    for reader in (backend.minute_stats(start), backend.stats_totals()):
        [row] = reader
        assert (row.succeeded, row.dead, row.run_count) == (5, 1, 6)


def test_rescued_runs_are_tallied_with_how_they_ended(backend: Backend, clock: FakeClock) -> None:
    start = clock()
    again = enqueue(backend, task="t", max_attempts=3)
    last = enqueue(backend, task="t", max_attempts=1)
    runs = backend.claim("w1", None, 1, LEASE) + backend.claim("w2", None, 1, LEASE)
    assert {c.id for c in runs} == {again, last}
    clock.advance(LEASE + 1.0)
    report = backend.rescue_expired()
    assert (report.requeued, report.dead) == ([again], [last])
    [row] = backend.minute_stats(start)
    assert (row.rescued, row.dead, row.retried, row.succeeded) == (2, 1, 0, 0)
    assert row.run_count == 0, "nobody knows how long a lost run ran"


def test_reaped_workers_runs_are_tallied_as_rescued(backend: Backend, clock: FakeClock) -> None:
    start = clock()
    backend.register_worker(registration("gone"))
    enqueue(backend, task="t")
    backend.claim("gone", None, 1, LEASE)
    report = backend.reap_dead_workers(known_dead=["gone"])
    assert report.workers == ["gone"]
    [row] = backend.minute_stats(start)
    assert row.rescued == len(report.requeued) + len(report.dead) == 1


def test_enqueued_jobs_are_counted_past_a_watermark_once_settled(
    backend: Backend, clock: FakeClock
) -> None:
    start = clock()
    for _ in range(3):
        enqueue(backend, task="a", queue="q1")
    enqueue(backend, task="b", queue="q2")
    assert backend.count_enqueued(settle=MINUTE) == 0, "too young: their company may be open"
    clock.advance(MINUTE + 1.0)
    enqueue(backend, task="a", queue="q1")  # young again, and above the others
    assert backend.count_enqueued(settle=MINUTE) == 4
    assert backend.count_enqueued(settle=MINUTE) == 0, "each job is counted once"
    rows = _by_key(backend.minute_stats(start))
    assert rows[(minute_of(start), "q1", "a")].enqueued == 3
    assert rows[(minute_of(start), "q2", "b")].enqueued == 1
    clock.advance(MINUTE + 1.0)
    assert backend.count_enqueued(settle=MINUTE, batch=1) == 1
    assert backend.count_enqueued(settle=MINUTE) == 0
    assert sum(t.enqueued for t in backend.stats_totals()) == 5


def test_aggregates_survive_pruning_of_the_jobs(backend: Backend, clock: FakeClock) -> None:
    start = clock()
    for _ in range(3):
        make_job_in(backend, clock, JobState.SUCCEEDED, task="t")
    clock.advance(2 * HOUR)
    assert backend.count_enqueued() == 3
    assert backend.prune(older_than=HOUR) == 3
    [row] = backend.minute_stats(start)
    assert (row.enqueued, row.succeeded) == (3, 3)


def test_totals_never_go_down_when_old_minutes_are_folded_and_pruned(
    backend: Backend, clock: FakeClock
) -> None:
    start = clock()
    make_job_in(backend, clock, JobState.SUCCEEDED, task="t")
    clock.advance(10 * MINUTE)
    make_job_in(backend, clock, JobState.DEAD, task="t")
    before = backend.stats_totals()
    assert len(backend.minute_stats(start)) == 2

    assert backend.prune_stats(older_than=MINUTE) == 0, "a minute is pruned once folded"
    assert backend.fold_stats(margin=2 * MINUTE) == 1
    assert backend.fold_stats(margin=2 * MINUTE) == 0, "a minute is folded once"
    assert backend.stats_totals() == before
    assert backend.prune_stats(older_than=MINUTE) >= 1
    assert [row.minute for row in backend.minute_stats(start)] == [minute_of(clock())]
    assert backend.stats_totals() == before

    [total] = before
    assert (total.succeeded, total.dead, total.minute) == (1, 1, None)


def test_job_counts_match_stats(backend: Backend, clock: FakeClock) -> None:
    for state in (JobState.QUEUED, JobState.SUCCEEDED, JobState.DEAD):
        make_job_in(backend, clock, state, queue="q")
    counts = backend.job_counts(exact_below=1000)
    assert counts.jobs == backend.stats() and counts.estimated == frozenset()


def test_quantiles_from_the_buckets() -> None:
    le = [0, 0, 0, 0, 50, 100, 100, 100, 100, 100]  # 50 runs in (0.25, 1], 50 in (1, 2.5]
    assert quantile(le, 100, 0.5) == pytest.approx(1.0)
    assert quantile(le, 100, 0.95) == pytest.approx(1.0 + 1.5 * 0.9)
    assert quantile([0] * 10, 0, 0.95) is None
    assert quantile([0] * 10, 3, 0.5) == BOUNDS[-1], "beyond the last bound"
