"""Contract: a suspect (poison isolation: a job run alone after a worker died beside it) obeys
every gate an ordinary start obeys -- its queue's pause, quiet hours, cap and rate limit, its
task's rate limit bucket, and an open circuit breaker -- both in claim_suspect and in
suspect_waiting, which tells busy workers whether to drain for one (worker/drain.py)."""

from __future__ import annotations

from conveyor.backends.base import Backend
from conveyor.limits import QuietHours, RateLimit
from tests.contract.helpers import LEASE
from tests.contract.test_breakers import declare
from tests.support import FakeClock, new_job

PARTNER = "tests.call_partner"
LIMITED = "tests.limited"


def suspects(backend: Backend, clock: FakeClock, *jobs: tuple[str, str]) -> list[int]:
    """Enqueue one job per (task, queue), claim them all in one worker and let its lease
    expire: they wait as suspects."""
    new = [new_job(task, queue) for task, queue in jobs]
    ids = [r.job_id for r in backend.enqueue_many(new)]
    assert len(backend.claim("dead", None, len(ids), LEASE)) == len(ids)
    clock.advance(LEASE + 1.0)
    backend.rescue_expired()
    return ids


def test_a_suspect_waits_out_the_quiet_hours_of_its_queue(
    backend: Backend, clock: FakeClock
) -> None:
    [quiet_one, free_one] = suspects(
        backend, clock, ("tests.noop", "reports"), ("tests.noop", "mail")
    )
    backend.set_quiet_hours("reports", QuietHours.parse("00:00-24:00"))
    assert not backend.suspect_waiting(["reports"])
    assert backend.claim_suspect("w", ["reports"], LEASE) is None
    # A suspect in a quiet queue hides no other.
    assert backend.suspect_waiting(None)
    run = backend.claim_suspect("w", None, LEASE)
    assert run is not None and run.id == free_one
    backend.set_quiet_hours("reports", None)
    assert backend.suspect_waiting(None)
    run = backend.claim_suspect("w2", None, LEASE)
    assert run is not None and run.id == quiet_one


def test_a_suspect_waits_for_its_queue_cap(backend: Backend, clock: FakeClock) -> None:
    suspects(backend, clock, ("tests.noop", "reports"))
    backend.set_concurrency_limit("reports", 1)
    backend.enqueue_many([new_job(queue="reports")])
    assert len(backend.claim("busy", ["reports"], 1, LEASE)) == 1
    assert not backend.suspect_waiting(None)
    assert backend.claim_suspect("w", None, LEASE) is None
    backend.set_concurrency_limit("reports", 2)
    assert backend.claim_suspect("w", None, LEASE) is not None


def test_a_suspect_of_a_rate_limited_task_waits_for_a_token_and_spends_it(
    backend: Backend, clock: FakeClock
) -> None:
    slow = RateLimit(1, per=60.0)
    jobs = [new_job(LIMITED, "api", rate_key="t1", rate_limit=slow) for _ in range(2)]
    backend.enqueue_many(jobs)
    [first] = backend.claim("dead", None, 10, LEASE)
    clock.advance(30)
    # The bucket's next token is 30 s away: the job died, and waits for it as a suspect.
    backend.claim("dead", None, 10, LEASE)  # nothing: keeps the worker's one run
    clock.advance(LEASE)
    backend.rescue_expired()
    assert backend.get(first.id).suspect
    assert backend.suspect_waiting(None)  # a minute since the start: the token is there
    run = backend.claim_suspect("w", None, LEASE)
    assert run is not None and run.id == first.id
    # The suspect spent the token: the other job of the bucket waits a minute.
    assert backend.claim("w2", None, 10, LEASE) == []
    clock.advance(60)
    assert len(backend.claim("w2", None, 10, LEASE)) == 1


def test_a_suspect_of_a_rate_limited_task_without_a_token_waits(
    backend: Backend, clock: FakeClock
) -> None:
    slow = RateLimit(1, per=3600.0)
    backend.enqueue_many([new_job(LIMITED, "api", rate_key="t1", rate_limit=slow)])
    [run] = backend.claim("dead", None, 10, LEASE)
    clock.advance(LEASE + 1.0)
    backend.rescue_expired()
    assert backend.get(run.id).suspect
    # The start a minute ago spent the token of the hour.
    assert not backend.suspect_waiting(None)
    assert backend.claim_suspect("w", None, LEASE) is None
    clock.advance(3600)
    assert backend.suspect_waiting(None)
    assert backend.claim_suspect("w", None, LEASE) is not None


def test_an_open_breaker_holds_a_suspect(backend: Backend, clock: FakeClock) -> None:
    [held, free] = suspects(backend, clock, (PARTNER, "api"), ("tests.noop", "api"))
    breaker = declare()
    backend.set_breaker(breaker, opened=True)
    run = backend.claim_suspect("w", None, LEASE)
    assert run is not None and run.id == free
    assert not backend.suspect_waiting(None)
    assert backend.claim_suspect("w2", None, LEASE) is None
    # Nor is a suspect a breaker's probe: half-open or open, the breaker holds it.
    backend.set_breaker(breaker, opened=False)
    assert backend.suspect_waiting(None)
    run = backend.claim_suspect("w2", None, LEASE)
    assert run is not None and run.id == held


def test_a_suspect_waits_while_its_queue_is_paused(backend: Backend, clock: FakeClock) -> None:
    suspects(backend, clock, ("tests.noop", "reports"))
    backend.pause_queue("reports", clock.now + 60)
    assert not backend.suspect_waiting(None)
    assert backend.claim_suspect("w", None, LEASE) is None
    clock.advance(61)
    assert backend.suspect_waiting(None)
    assert backend.claim_suspect("w", None, LEASE) is not None
