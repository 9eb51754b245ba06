"""Contract: the gates of a queue beside its cap -- pause and resume, quiet hours, rate limits --
enforced by the claim on every engine (conveyor/limits/)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import Backend
from conveyor.backends.caps import CAPS_TTL
from conveyor.job import JobState
from conveyor.limits import QuietHours, RateLimit
from tests.contract.helpers import LEASE, succeed
from tests.support import FakeClock, new_job


def fill(backend: Backend, queue: str, count: int) -> list[int]:
    results = backend.enqueue_many([new_job(queue=queue) for _ in range(count)])
    return [r.job_id for r in results]


def gate_of(backend: Backend, queue: str) -> object:
    return next((g for g in backend.queue_gates() if g.queue == queue), None)


# --- pause and resume ------------------------------------------------------------------------


def test_a_paused_queue_starts_nothing_and_its_jobs_start_once_resumed(backend: Backend) -> None:
    fill(backend, "reports", 3)
    fill(backend, "default", 2)
    backend.pause_queue("reports", None)
    assert backend.claim("w", ["reports"], 10, LEASE) == []
    # Other queues go on, from a list of queues and from every queue.
    assert {r.queue for r in backend.claim("w", None, 10, LEASE)} == {"default"}
    backend.resume_queue("reports")
    assert len(backend.claim("w", ["reports"], 10, LEASE)) == 3


def test_enqueue_into_a_paused_queue_goes_on(backend: Backend) -> None:
    backend.pause_queue("reports", None)
    [job_id] = fill(backend, "reports", 1)
    assert backend.get(job_id).state is JobState.QUEUED
    assert backend.claim("w", None, 10, LEASE) == []


def test_running_jobs_of_a_paused_queue_finish(backend: Backend) -> None:
    fill(backend, "reports", 2)
    [run] = backend.claim("w", ["reports"], 1, LEASE)
    backend.pause_queue("reports", None)
    assert succeed(backend, run).applied
    assert backend.get(run.id).state is JobState.SUCCEEDED
    assert backend.claim("w", ["reports"], 10, LEASE) == []


def test_a_pause_with_an_end_lifts_by_itself(backend: Backend, clock: FakeClock) -> None:
    fill(backend, "reports", 1)
    backend.pause_queue("reports", clock.now + 60)
    assert backend.claim("w", ["reports"], 10, LEASE) == []
    assert backend.gates_open_at(["reports"]) == pytest.approx(clock.now + 60)
    clock.advance(60)
    assert len(backend.claim("w", ["reports"], 10, LEASE)) == 1


def test_a_pause_until_resumed_opens_at_infinity(backend: Backend) -> None:
    fill(backend, "reports", 1)
    backend.pause_queue("reports", None)
    assert backend.gates_open_at(["reports"]) == math.inf
    assert backend.gates_open_at(["default"]) is None
    gate = gate_of(backend, "reports")
    assert gate is not None and gate.paused_until == math.inf  # type: ignore[attr-defined]


def test_resume_keeps_the_cap(backend: Backend) -> None:
    fill(backend, "reports", 5)
    backend.set_concurrency_limit("reports", 2)
    backend.pause_queue("reports", None)
    backend.resume_queue("reports")
    assert len(backend.claim("w", ["reports"], 10, LEASE)) == 2
    # And removing the cap keeps a pause.
    backend.pause_queue("reports", None)
    backend.set_concurrency_limit("reports", None)
    assert backend.claim("w", ["reports"], 10, LEASE) == []


def test_a_pause_set_in_another_process_binds_within_the_ttl(
    backend: Backend, clock: FakeClock
) -> None:
    if not backend.shared:
        pytest.skip("an in-memory store has no other process")
    fill(backend, "reports", 4)
    other = open_backend(backend.settings, clock=clock)
    try:
        other.pause_queue("reports", None)
        clock.advance(CAPS_TTL)
        assert backend.claim("w", ["reports"], 2, LEASE) == []
        assert backend.claim("w", None, 2, LEASE) == []
        other.resume_queue("reports")
        # The gated path reads the row in its transaction: no wait for the cache.
        assert len(backend.claim("w", None, 2, LEASE)) == 2
    finally:
        other.close()


# --- quiet hours -----------------------------------------------------------------------------


def test_no_job_starts_in_quiet_hours(backend: Backend, clock: FakeClock) -> None:
    # 1_800_000_000 is Friday 2027-01-15 08:00 UTC, 09:00 in Berlin.
    start = dt.datetime.fromtimestamp(clock.now, dt.UTC)
    assert (start.weekday(), start.hour) == (4, 8)
    fill(backend, "reports", 2)
    quiet = QuietHours.parse("08:00-18:00", days="mon-fri", timezone="Europe/Berlin")
    backend.set_quiet_hours("reports", quiet)
    assert backend.claim("w", ["reports"], 10, LEASE) == []
    opens = backend.gates_open_at(["reports"])
    assert opens == pytest.approx(clock.now + 9 * 3600)  # 18:00 Berlin is 17:00 UTC
    clock.advance(9 * 3600 - 1)
    assert backend.claim("w", None, 10, LEASE) == []
    clock.advance(1)
    assert len(backend.claim("w", None, 10, LEASE)) == 2


def test_quiet_hours_removed(backend: Backend) -> None:
    fill(backend, "reports", 1)
    backend.set_quiet_hours("reports", QuietHours.parse("00:00-24:00"))
    assert backend.claim("w", ["reports"], 10, LEASE) == []
    assert backend.gates_open_at(["reports"]) == math.inf
    backend.set_quiet_hours("reports", None)
    assert len(backend.claim("w", ["reports"], 10, LEASE)) == 1


# --- rate limits -----------------------------------------------------------------------------


def test_a_rate_limit_spaces_the_starts_evenly(backend: Backend, clock: FakeClock) -> None:
    fill(backend, "api", 10)
    backend.set_rate_limit("api", RateLimit(2, per=1.0))
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    assert backend.claim("w2", None, 10, LEASE) == []
    # The claim that found no token learns when the next one comes: half a second on.
    assert backend.gates_open_at(["api"]) == pytest.approx(clock.now + 0.5)
    clock.advance(0.49)
    assert backend.claim("w", ["api"], 10, LEASE) == []
    clock.advance(0.01)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    # Time not used is not saved up: after an idle minute, still one start at a time.
    clock.advance(60)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    assert backend.claim("w", ["api"], 10, LEASE) == []


def test_a_held_job_is_not_charged_an_attempt(backend: Backend) -> None:
    ids = fill(backend, "api", 2)
    backend.set_rate_limit("api", RateLimit(1, per=3600))
    backend.claim("w", ["api"], 10, LEASE)
    waiting = [backend.get(i) for i in ids if backend.get(i).state is JobState.QUEUED]
    assert [job.attempts for job in waiting] == [0]


def test_rate_limit_changed_and_removed(backend: Backend, clock: FakeClock) -> None:
    fill(backend, "api", 5)
    backend.set_rate_limit("api", RateLimit(1, per=60))
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    # A changed limit keeps the start already promised ...
    backend.set_rate_limit("api", RateLimit(10, per=60))
    assert backend.claim("w", ["api"], 10, LEASE) == []
    gate = gate_of(backend, "api")
    assert gate is not None and gate.rate == RateLimit(10, per=60)  # type: ignore[attr-defined]
    # ... a removed one forgets it.
    backend.set_rate_limit("api", None)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 4


def test_rate_and_cap_together(backend: Backend, clock: FakeClock) -> None:
    fill(backend, "api", 5)
    backend.set_concurrency_limit("api", 1)
    backend.set_rate_limit("api", RateLimit(100, per=1))
    [run] = backend.claim("w", ["api"], 10, LEASE)
    clock.advance(1)
    assert backend.claim("w", ["api"], 10, LEASE) == []  # the cap holds it
    succeed(backend, run)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1


def test_queue_gates_lists_every_gate(backend: Backend, clock: FakeClock) -> None:
    backend.set_concurrency_limit("a", 3)
    backend.pause_queue("b", clock.now + 10)
    backend.set_quiet_hours("c", QuietHours.parse("22:00-06:00", timezone="UTC"))
    backend.set_rate_limit("d", RateLimit(5, per=60))
    gates = {g.queue: g for g in backend.queue_gates()}
    assert sorted(gates) == ["a", "b", "c", "d"]
    assert gates["a"].max_running == 3 and gates["a"].running == 0
    assert gates["b"].paused_until == pytest.approx(clock.now + 10)
    assert gates["c"].quiet == QuietHours(((22 * 60, 6 * 60),), frozenset(range(7)), "UTC")
    assert gates["d"].rate == RateLimit(5, per=60)
    assert backend.concurrency_limits() == {"a": 3}


def test_a_suspect_waits_for_the_gates_of_its_queue(backend: Backend, clock: FakeClock) -> None:
    """Poison isolation's own claim of a suspect (claim_suspect) obeys pauses and rates too."""
    fill(backend, "reports", 2)
    backend.claim("w1", ["reports"], 2, LEASE)
    clock.advance(LEASE + 1.0)
    backend.rescue_expired()  # two runs lost side by side: both are suspects now
    backend.pause_queue("reports", None)
    # Nor does it make busy workers drain for it (worker/drain.py asks suspect_waiting).
    assert not backend.suspect_waiting(None)
    assert backend.claim_suspect("w2", None, LEASE) is None
    backend.resume_queue("reports")
    assert backend.suspect_waiting(["reports"])
    backend.set_rate_limit("reports", RateLimit(1, per=60))
    assert backend.claim_suspect("w2", None, LEASE) is not None
    assert backend.claim_suspect("w3", None, LEASE) is None  # the next token is a minute away
    assert not backend.suspect_waiting(None)
