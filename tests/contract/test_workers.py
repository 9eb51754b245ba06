"""Contract: the worker registry — register, beat, deregister, stop requests — and dead workers,
whose running jobs are released at once (not after their lease), fenced like any lost run."""

from __future__ import annotations

import pytest

from conveyor.backends.base import Backend, Outcome, OutcomeKind
from conveyor.errors import WorkerNotFound
from conveyor.job import JobState
from conveyor.worker_info import WorkerHealth, WorkerInfo, WorkerRegistration, WorkerState
from tests.contract.helpers import claim_one, claim_suspect_one, enqueue, error, snapshot
from tests.support import FakeClock

BEAT = 5.0
DEAD_AFTER = 15.0
#: Far longer than DEAD_AFTER: any release seen within it is the registry's doing.
LONG_LEASE = 600.0


def registration(
    worker_id: str,
    *,
    host: str = "host-a",
    pid: int = 4242,
    queues: tuple[str, ...] | None = None,
    concurrency: int = 4,
    beat_interval: float = BEAT,
    dead_after: float = DEAD_AFTER,
    machine: str | None = None,
) -> WorkerRegistration:
    return WorkerRegistration(
        id=worker_id,
        host=host,
        pid=pid,
        queues=queues,
        concurrency=concurrency,
        beat_interval=beat_interval,
        dead_after=dead_after,
        machine=machine,
    )


def workers(backend: Backend) -> dict[str, WorkerInfo]:
    return {w.id: w for w in backend.list_workers()}


def running_jobs(backend: Backend, worker_id: str, count: int) -> list[int]:
    """``count`` new jobs, claimed by ``worker_id`` under a long lease."""
    for _ in range(count):
        enqueue(backend, max_attempts=3)
    claimed = backend.claim(worker_id, None, count, LONG_LEASE)
    assert len(claimed) == count
    return sorted(c.id for c in claimed)


# --- register, beat, deregister ----------------------------------------------------------------


def test_a_registered_worker_is_listed_alive(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(
        registration("w1", queues=("emails", "default"), concurrency=8, machine="boot/pid:[1]")
    )
    clock.advance(1.0)
    backend.register_worker(registration("w2", host="host-b", pid=7))

    listed = backend.list_workers()
    assert [w.id for w in listed] == ["w1", "w2"], "oldest first"
    first = listed[0]
    assert (first.host, first.pid, first.queues, first.concurrency) == (
        "host-a",
        4242,
        ("emails", "default"),
        8,
    )
    assert first.state is WorkerState.RUNNING
    assert first.stop_requested is False
    assert first.started_at == pytest.approx(clock.now - 1.0)
    assert first.last_beat_at == pytest.approx(clock.now - 1.0)
    assert (first.beat_interval, first.dead_after) == (BEAT, DEAD_AFTER)
    assert first.machine == "boot/pid:[1]"
    assert first.observed_at == pytest.approx(clock.now)
    assert first.last_beat_age == pytest.approx(1.0)
    assert first.health is WorkerHealth.ALIVE
    assert listed[1].queues is None, "None: every queue"
    assert (listed[1].host, listed[1].pid, listed[1].machine) == ("host-b", 7, None)


def test_beats_keep_a_worker_alive_and_record_its_state(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(registration("w1"))
    started = clock.now
    clock.advance(BEAT)
    assert backend.beat_worker("w1", WorkerState.RUNNING) is False
    assert workers(backend)["w1"].last_beat_at == pytest.approx(clock.now)

    clock.advance(2 * BEAT + 1.0)
    assert workers(backend)["w1"].health is WorkerHealth.LATE, "missed a beat"
    assert backend.beat_worker("w1", WorkerState.STOPPING) is False
    shown = workers(backend)["w1"]
    assert (shown.state, shown.health) == (WorkerState.STOPPING, WorkerHealth.ALIVE)
    assert shown.started_at == pytest.approx(started)

    clock.advance(DEAD_AFTER + 1.0)
    assert workers(backend)["w1"].health is WorkerHealth.DEAD, "dead before anyone reaped it"


def test_a_worker_the_database_does_not_know_must_register(
    backend: Backend, clock: FakeClock
) -> None:
    assert backend.beat_worker("nobody", WorkerState.RUNNING) is None
    backend.register_worker(registration("w1"))
    backend.deregister_worker("w1")
    assert backend.beat_worker("w1", WorkerState.RUNNING) is None
    assert backend.list_workers() == []
    backend.deregister_worker("w1")  # twice: nothing to do


def test_deregistering_leaves_the_others_and_the_jobs_alone(
    backend: Backend, clock: FakeClock
) -> None:
    backend.register_worker(registration("w1"))
    backend.register_worker(registration("w2"))
    [job_id] = running_jobs(backend, "w1", 1)
    before = snapshot(backend)
    backend.deregister_worker("w1")
    assert list(workers(backend)) == ["w2"]
    assert snapshot(backend) == before
    clock.advance(DEAD_AFTER * 2)
    assert backend.reap_dead_workers("w2").requeued == [], "a deregistered worker is not dead"
    assert backend.get(job_id).state is JobState.RUNNING


# --- stop requests -----------------------------------------------------------------------------


def test_a_stop_request_is_answered_by_the_next_beat(backend: Backend) -> None:
    backend.register_worker(registration("w1"))
    backend.register_worker(registration("w2"))
    assert backend.request_worker_stop(["w1", "w1"]) == ["w1"]
    assert backend.beat_worker("w1", WorkerState.RUNNING) is True
    assert backend.beat_worker("w1", WorkerState.STOPPING) is True, "until it is gone"
    assert backend.beat_worker("w2", WorkerState.RUNNING) is False
    shown = workers(backend)
    assert (shown["w1"].stop_requested, shown["w2"].stop_requested) == (True, False)


def test_a_stop_request_is_read_between_beats_without_beating(
    backend: Backend, clock: FakeClock
) -> None:
    backend.register_worker(registration("w1"))
    backend.register_worker(registration("w2"))
    assert backend.worker_stop_requested("w1") is False
    backend.request_worker_stop(["w1"])
    clock.advance(1.0)
    assert backend.worker_stop_requested("w1") is True
    assert backend.worker_stop_requested("w2") is False
    shown = workers(backend)["w1"]
    assert shown.last_beat_age == pytest.approx(1.0), "a read: the row is not beaten"
    backend.deregister_worker("w1")
    assert backend.worker_stop_requested("w1") is False, "a worker the database does not know"


def test_stopping_an_unknown_worker_changes_nothing(backend: Backend) -> None:
    backend.register_worker(registration("w1"))
    with pytest.raises(WorkerNotFound, match="'ghost'") as caught:
        backend.request_worker_stop(["w1", "ghost"])
    assert caught.value.worker_id == "ghost"
    assert backend.beat_worker("w1", WorkerState.RUNNING) is False, "all or none"


def test_stop_every_worker_that_is_not_dead(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(registration("gone"))
    clock.advance(DEAD_AFTER + 1.0)
    backend.register_worker(registration("w1"))
    backend.register_worker(registration("w2"))
    assert backend.reap_dead_workers().workers == ["gone"]

    assert sorted(backend.request_worker_stop(None)) == ["w1", "w2"]
    assert backend.beat_worker("w1", WorkerState.RUNNING) is True
    assert backend.beat_worker("w2", WorkerState.RUNNING) is True
    assert backend.request_worker_stop([]) == []


def test_a_stop_request_survives_registering_again(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(registration("w1"))
    backend.request_worker_stop(["w1"])
    clock.advance(DEAD_AFTER + 1.0)
    assert backend.reap_dead_workers().workers == ["w1"]
    assert backend.beat_worker("w1", WorkerState.RUNNING) is None
    backend.register_worker(registration("w1"))
    assert backend.worker_stop_requested("w1") is True
    assert backend.beat_worker("w1", WorkerState.RUNNING) is True


# --- dead workers ------------------------------------------------------------------------------


def test_a_silent_worker_is_declared_dead_and_its_jobs_released_at_once(
    backend: Backend, clock: FakeClock
) -> None:
    backend.register_worker(registration("dies"))
    backend.register_worker(registration("lives"))
    lost = running_jobs(backend, "dies", 3)
    kept = running_jobs(backend, "lives", 2)
    unregistered = running_jobs(backend, "old-style", 1)
    waiting = enqueue(backend)

    clock.advance(DEAD_AFTER - 1.0)
    backend.beat_worker("lives", WorkerState.RUNNING)
    assert backend.reap_dead_workers("lives").workers == [], "not dead yet"

    clock.advance(2.0)
    report = backend.reap_dead_workers("lives")
    assert report.workers == ["dies"]
    assert report.requeued == lost
    assert (report.dead, report.cancelled) == ([], [])
    for job in map(backend.get, lost):
        assert job.state is JobState.RETRYING
        # Three jobs died together: none is charged the run, each one is a suspect.
        assert (job.attempts, job.lost_runs, job.errors, job.suspect) == (0, 1, [], True)
        assert job.lease_token is None and job.finished_at is None
        assert job.run_at == pytest.approx(clock.now), "runnable at once"
    for job_id in [*kept, *unregistered]:
        assert backend.get(job_id).state is JobState.RUNNING
    assert backend.get(waiting).state is JobState.QUEUED

    shown = workers(backend)["dies"]
    assert (shown.state, shown.health) == (WorkerState.DEAD, WorkerHealth.DEAD)
    assert backend.reap_dead_workers("lives").workers == [], "declared dead once"

    again = backend.claim("lives", None, 10, LONG_LEASE)
    assert [c.id for c in again] == [waiting], "suspects are not claimed beside others"
    alone = [claim_suspect_one(backend, worker=f"next-{n}", lease=LONG_LEASE) for n in range(3)]
    assert [c.id for c in alone] == lost
    assert {c.attempt for c in alone} == {1}


def test_a_dead_workers_jobs_end_as_rescued_ones_do(backend: Backend, clock: FakeClock) -> None:
    last_try = enqueue(backend, max_attempts=1)
    cancelled = enqueue(backend, max_attempts=5)
    requeued = enqueue(backend, max_attempts=5)
    # One job a worker: each ran alone when its worker died, so the death is its own.
    for n in range(3):
        backend.register_worker(registration(f"dies-{n}"))
        claim_one(backend, worker=f"dies-{n}", lease=LONG_LEASE)
    backend.cancel(cancelled)
    clock.advance(DEAD_AFTER + 1.0)

    report = backend.reap_dead_workers()
    assert (report.requeued, report.dead, report.cancelled) == ([requeued], [last_try], [cancelled])
    dead = backend.get(last_try)
    assert dead.state is JobState.DEAD
    assert dead.lost_runs == 1 and dead.finished_at is not None
    assert dead.dead_reason is not None and dead.dead_reason.startswith("lost: ")
    assert "worker died" in dead.dead_reason and "alone" in dead.dead_reason
    assert (dead.attempts, dead.suspect) == (1, False)
    assert (backend.get(requeued).attempts, backend.get(requeued).suspect) == (1, True)
    gone = backend.get(cancelled)
    assert (gone.state, gone.lost_runs) == (JobState.CANCELLED, 1)
    assert gone.finished_at is not None


def test_a_dead_workers_late_writes_change_nothing(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(registration("dies"))
    enqueue(backend)
    stale = claim_one(backend, worker="dies", lease=LONG_LEASE)
    clock.advance(DEAD_AFTER + 1.0)
    assert backend.reap_dead_workers().requeued == [stale.id]
    fresh = claim_suspect_one(backend, worker="next", lease=LONG_LEASE)
    assert fresh.id == stale.id
    before = backend.get(stale.id)

    # The dead worker was only paused: it wakes up and writes as if it still owned the run.
    report = backend.extend_leases([stale.lease_token], LONG_LEASE)
    assert report.lost == {stale.lease_token}
    assert backend.save_progress(stale.id, stale.lease_token, "0.9", '"step 9"') is False
    late = [
        Outcome(stale.id, stale.lease_token, OutcomeKind.SUCCEEDED, result_json='"stale"'),
        Outcome(
            stale.id,
            stale.lease_token,
            OutcomeKind.RETRY,
            error=error(stale.attempt, clock.now),
        ),
        Outcome(stale.id, stale.lease_token, OutcomeKind.DEAD, dead_reason="stale"),
        Outcome(stale.id, stale.lease_token, OutcomeKind.CANCELLED),
        Outcome(stale.id, stale.lease_token, OutcomeKind.RELEASED),
    ]
    assert [r.applied for r in backend.finish_many(late)] == [False] * len(late)
    assert backend.get(stale.id) == before

    done = backend.finish_many(
        [Outcome(fresh.id, fresh.lease_token, OutcomeKind.SUCCEEDED, result_json='"fresh"')]
    )
    assert done[0].applied
    assert backend.get(fresh.id).result == "fresh"


def test_a_dead_worker_is_never_the_one_sweeping(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(registration("sweeper"))
    [job_id] = running_jobs(backend, "sweeper", 1)
    clock.advance(DEAD_AFTER + 1.0)
    assert backend.reap_dead_workers("sweeper").workers == []
    assert backend.get(job_id).state is JobState.RUNNING
    assert backend.reap_dead_workers("other").workers == ["sweeper"]


def test_a_stopping_worker_that_goes_silent_is_dead_too(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(registration("w1"))
    [job_id] = running_jobs(backend, "w1", 1)
    backend.beat_worker("w1", WorkerState.STOPPING)
    clock.advance(DEAD_AFTER + 1.0)
    assert backend.reap_dead_workers().requeued == [job_id]


def test_a_worker_declared_dead_registers_again_and_keeps_its_new_runs(
    backend: Backend, clock: FakeClock
) -> None:
    backend.register_worker(registration("w1"))
    [first] = running_jobs(backend, "w1", 1)
    clock.advance(DEAD_AFTER + 1.0)
    assert backend.reap_dead_workers().requeued == [first]

    assert backend.beat_worker("w1", WorkerState.RUNNING) is None, "told it was declared dead"
    backend.register_worker(registration("w1"))
    shown = workers(backend)["w1"]
    assert (shown.state, shown.health) == (WorkerState.RUNNING, WorkerHealth.ALIVE)
    assert shown.last_beat_at == pytest.approx(clock.now)
    assert backend.beat_worker("w1", WorkerState.RUNNING) is False
    rerun = claim_suspect_one(backend, worker="w1", lease=LONG_LEASE)
    assert rerun.id == first
    clock.advance(DEAD_AFTER - 1.0)
    assert backend.reap_dead_workers().workers == []
    assert backend.get(first).state is JobState.RUNNING


def test_each_worker_is_judged_by_its_own_beat(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(registration("slow", beat_interval=30.0, dead_after=90.0))
    backend.register_worker(registration("fast", beat_interval=1.0, dead_after=5.0))
    clock.advance(30.0)
    assert backend.reap_dead_workers().workers == ["fast"]
    assert workers(backend)["slow"].health is WorkerHealth.ALIVE
    clock.advance(61.0)
    assert backend.reap_dead_workers().workers == ["slow"]


def test_silence_during_the_sweepers_own_break_does_not_count(
    backend: Backend, clock: FakeClock
) -> None:
    """An outage silences every worker: once the sweeper reaches the database again, the others
    get a whole dead_after from then to beat before they count as dead."""
    backend.register_worker(registration("sweeper"))
    backend.register_worker(registration("w1"))
    backend.register_worker(registration("w2"))
    [job_id] = running_jobs(backend, "w1", 1)
    clock.advance(100.0)  # nobody reached the database meanwhile
    back = clock.now
    assert backend.reap_dead_workers("sweeper", back).workers == []

    clock.advance(DEAD_AFTER - 1.0)
    backend.beat_worker("w2", WorkerState.RUNNING)
    assert backend.reap_dead_workers("sweeper", back).workers == []
    clock.advance(2.0)
    report = backend.reap_dead_workers("sweeper", back)
    assert (report.workers, report.requeued) == (["w1"], [job_id]), "w1 never came back"
    assert backend.reap_dead_workers("sweeper", back).workers == []
    assert workers(backend)["w2"].state is WorkerState.RUNNING


def test_dead_workers_are_forgotten_after_a_while(backend: Backend, clock: FakeClock) -> None:
    backend.register_worker(registration("w1"))
    last_beat = clock.now
    clock.advance(DEAD_AFTER + 1.0)
    assert backend.reap_dead_workers(forget_after=60.0).workers == ["w1"]
    clock.now = last_beat + 59.0
    backend.reap_dead_workers(forget_after=60.0)
    assert list(workers(backend)) == ["w1"]
    clock.now = last_beat + 61.0
    backend.reap_dead_workers(forget_after=60.0)
    assert backend.list_workers() == []


# --- workers known to be dead (their process is gone) ------------------------------------------


def test_a_worker_known_dead_is_declared_dead_and_its_jobs_released_at_once(
    backend: Backend, clock: FakeClock
) -> None:
    backend.register_worker(registration("gone"))
    backend.register_worker(registration("lives"))
    lost = running_jobs(backend, "gone", 3)
    kept = running_jobs(backend, "lives", 2)

    report = backend.reap_dead_workers("lives", clock.now, known_dead=["gone"])
    assert report.workers == ["gone"], "no silence needed"
    assert report.requeued == lost
    for job in map(backend.get, lost):
        assert job.state is JobState.RETRYING
        assert (job.attempts, job.lost_runs, job.lease_token, job.suspect) == (0, 1, None, True)
        assert job.run_at == pytest.approx(clock.now)
    assert {backend.get(job_id).state for job_id in kept} == {JobState.RUNNING}
    shown = workers(backend)
    assert (shown["gone"].state, shown["lives"].state) == (WorkerState.DEAD, WorkerState.RUNNING)
    assert backend.reap_dead_workers("lives", known_dead=["gone"]).workers == [], "once"


def test_a_known_dead_workers_jobs_end_as_rescued_ones_do(
    backend: Backend, clock: FakeClock
) -> None:
    last_try = enqueue(backend, max_attempts=1)
    cancelled = enqueue(backend, max_attempts=5)
    requeued = enqueue(backend, max_attempts=5)
    gone = [f"gone-{n}" for n in range(3)]
    runs = []
    for worker in gone:  # one job a worker: each death is the job's own
        backend.register_worker(registration(worker))
        runs.append(claim_one(backend, worker=worker, lease=LONG_LEASE))
    stale = runs[0]
    backend.cancel(cancelled)

    report = backend.reap_dead_workers(known_dead=gone)
    assert (report.requeued, report.dead, report.cancelled) == ([requeued], [last_try], [cancelled])
    dead = backend.get(last_try)
    assert (dead.state, dead.lost_runs) == (JobState.DEAD, 1)
    assert dead.dead_reason is not None and "worker died" in dead.dead_reason
    assert backend.get(cancelled).state is JobState.CANCELLED

    before = backend.get(stale.id)
    assert backend.extend_leases([stale.lease_token], LONG_LEASE).lost == {stale.lease_token}
    done = Outcome(stale.id, stale.lease_token, OutcomeKind.SUCCEEDED, result_json='"late"')
    assert [r.applied for r in backend.finish_many([done])] == [False]
    assert backend.get(stale.id) == before, "the dead worker's tokens are void"


def test_known_dead_never_names_the_sweeper_a_dead_worker_or_a_stranger(
    backend: Backend, clock: FakeClock
) -> None:
    backend.register_worker(registration("sweeper"))
    backend.register_worker(registration("earlier"))
    [mine] = running_jobs(backend, "sweeper", 1)
    assert backend.reap_dead_workers("sweeper", known_dead=["earlier"]).workers == ["earlier"]
    # Runs claimed under a worker id after it was declared dead are released only if it is
    # declared dead again, after registering again (as for silent workers).
    [rerun] = running_jobs(backend, "earlier", 1)

    report = backend.reap_dead_workers("sweeper", known_dead=["sweeper", "earlier", "ghost"])
    assert (report.workers, report.requeued) == ([], [])
    assert backend.get(mine).state is JobState.RUNNING, "whoever sweeps is alive"
    assert backend.get(rerun).state is JobState.RUNNING
    assert backend.beat_worker("sweeper", WorkerState.RUNNING) is False


def test_known_dead_and_silent_workers_are_declared_dead_together(
    backend: Backend, clock: FakeClock
) -> None:
    backend.register_worker(registration("silent"))
    clock.advance(DEAD_AFTER + 1.0)
    backend.register_worker(registration("gone"))
    backend.register_worker(registration("lives"))
    silent = running_jobs(backend, "silent", 1)
    gone = running_jobs(backend, "gone", 1)
    report = backend.reap_dead_workers("lives", known_dead=["gone"])
    assert report.workers == ["gone", "silent"]
    assert report.requeued == sorted(silent + gone)


def test_a_stopping_worker_known_dead_is_dead_too(backend: Backend) -> None:
    backend.register_worker(registration("w1"))
    [job_id] = running_jobs(backend, "w1", 1)
    backend.beat_worker("w1", WorkerState.STOPPING)
    assert backend.reap_dead_workers(known_dead=["w1"]).requeued == [job_id]


def test_a_worker_declared_dead_hands_on_its_leases_at_once(
    backend: Backend, clock: FakeClock
) -> None:
    backend.register_worker(registration("gone"))
    backend.register_worker(registration("silent"))
    backend.register_worker(registration("lives"))
    assert backend.acquire_leadership("maintenance", "gone", LONG_LEASE)
    assert backend.acquire_leadership("other", "gone", LONG_LEASE)
    assert backend.acquire_leadership("prune", "silent", LONG_LEASE)
    assert backend.acquire_leadership("kept", "lives", LONG_LEASE)

    backend.reap_dead_workers("lives", known_dead=["gone"])
    assert backend.acquire_leadership("maintenance", "lives", LONG_LEASE), "without its TTL"
    assert backend.acquire_leadership("other", "lives", LONG_LEASE)
    assert not backend.acquire_leadership("prune", "lives", LONG_LEASE), "silent is not dead yet"

    clock.advance(DEAD_AFTER + 1.0)
    backend.beat_worker("lives", WorkerState.RUNNING)
    assert backend.reap_dead_workers("lives").workers == ["silent"]
    assert backend.acquire_leadership("prune", "lives", LONG_LEASE), "silence counts too"
    assert not backend.acquire_leadership("kept", "other", LONG_LEASE), "the living keep theirs"
