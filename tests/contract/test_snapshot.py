"""Contract: backup, restore and moves between engines (Backend.export_snapshot and
Backend.import_snapshot, conveyor/snapshot/). A store with jobs in every state, dependencies,
escalations, breakers, schedules and queue gates comes back whole in an empty store of the same
engine or of any other; running jobs come back waiting; a non-empty target is refused; a damaged
snapshot writes nothing; ids stay above everything the source ever handed out."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends.base import Backend, Escalate, Outcome, OutcomeKind
from conveyor.errors import SnapshotError, TargetNotEmpty
from conveyor.job import JobState
from conveyor.limits import QuietHours, RateLimit
from conveyor.snapshot.files import read_snapshot, write_snapshot
from conveyor.snapshot.moves import copy_between
from conveyor.snapshot.records import Record
from tests.contract.conftest import MakeBackend
from tests.contract.helpers import (
    LEASE,
    claim_one,
    enqueue,
    error,
    fail,
    finish,
    make_job_in,
    snapshot,
    succeed,
)
from tests.contract.test_breakers import declare
from tests.support import FACTORIES, FakeClock, enabled_backends, new_job

RATE = RateLimit(2, per=60.0)


def populate(backend: Backend, clock: FakeClock) -> dict[str, int]:
    """A store holding a bit of everything a snapshot carries; the ids of the notable jobs."""
    ids: dict[str, int] = {}
    for state in (JobState.SCHEDULED, JobState.RETRYING, JobState.DEAD, JobState.CANCELLED):
        ids[state.value] = make_job_in(backend, clock, state)
    ids["succeeded"] = make_job_in(backend, clock, JobState.SUCCEEDED)
    # Payloads come back as stored, odd numbers and key order included.
    ids["queued"] = enqueue(
        backend,
        queue="payloads",
        args_json='[1e20, -0.0, "\\u00e9\\t\\n"]',
        kwargs_json='{"b": 1, "a": [2]}',
        idempotency_key="once",
        priority=5,
        timeout=12.5,
    )
    # A workflow: the parent waits, its child is blocked on it.
    ids["parent"] = enqueue(backend, queue="flow", workflow_id="wf-1")
    ids["child"] = enqueue(
        backend,
        queue="flow",
        depends_on=(ids["parent"],),
        workflow_id="wf-1",
        on_parent_failure="run",
    )
    # Running, with progress and a checkpoint; and running with a cancel request.
    ids["running"] = enqueue(backend, queue="busy")
    run = claim_one(backend, queues=["busy"])
    assert backend.save_progress(run.id, run.lease_token, '{"done": 3}', '{"page": 7}')
    ids["cancelling"] = enqueue(backend, queue="busy")
    claim_one(backend, queues=["busy"])
    backend.cancel(ids["cancelling"])
    # A success with a result; a retry charged to a retry budget.
    ids["result"] = enqueue(backend, queue="results")
    succeed(backend, claim_one(backend, queues=["results"]), '{"x": [1, 2.5, null]}')
    ids["budgeted"] = enqueue(backend, queue="budget")
    fail(
        backend,
        claim_one(backend, queues=["budget"]),
        clock,
        retry_in=60.0,
        retry_budget=("tests.noop", 5, 600.0),
    )
    # An escalation: a dead job linked to the job it escalated to, and back.
    ids["escalated"] = enqueue(backend, queue="escalate", task="aider")
    doomed = claim_one(backend, queues=["escalate"])
    finish(
        backend,
        Outcome(
            doomed.id,
            doomed.lease_token,
            OutcomeKind.DEAD,
            error=error(doomed.attempt, clock.now),
            dead_reason="attempts exhausted",
            escalate=Escalate("codex", "gpu", 7, 4, 60.0, "failure"),
        ),
    )
    # A task rate limit bucket holding a job.
    [limited] = backend.enqueue_many(
        [new_job("tests.limited", "api", rate_key="acme", rate_limit=RATE)]
    )
    ids["limited"] = limited.job_id
    # Queue gates, breakers, schedules.
    backend.set_concurrency_limit("capped", 2)
    backend.pause_queue("paused", None)
    backend.pause_queue("later", clock.now + 600)
    quiet = QuietHours.parse("08:00-18:00", days="mon-fri", timezone="Europe/Berlin")
    backend.set_quiet_hours("reports", quiet)
    backend.set_rate_limit("api", RateLimit(5, per=60.0))
    backend.set_breaker(declare(), opened=True)
    backend.set_breaker(declare("calm-api"), opened=False)
    backend.register_schedules(["hourly", "nightly"])
    assert backend.enqueue_tick("hourly", clock.now, new_job("tests.tick", "cron")) is not None
    backend.set_schedule_paused("nightly", True)
    return ids


def records(backend: Backend) -> list[Record]:
    """Every record but the header, in a form that compares across engines: times to the
    microsecond, JSON as values (PostgreSQL's jsonb spaces its text its own way)."""
    return [_comparable(r) for r in itertools.islice(backend.export_snapshot(), 1, None)]


def _comparable(values: Record) -> Record:
    out: Record = {}
    for name, value in values.items():
        if isinstance(value, float) and math.isfinite(value):
            value = round(value, 6)
        elif name in ("tasks", "recent", "errors"):
            value = json.loads(value)
        out[name] = value
    return out


def came_back_waiting(before: Record, now: float) -> Record:
    """A running job's record as a restore brings it back."""
    after = dict(before, lease_token=None, lease_expires_at=None, worker_id=None)
    after["attempts"] -= 1
    if before["cancel_requested"]:
        after.update(state="cancelled", finished_at=round(now, 6))
    else:
        after["state"] = "queued"
    return after


def expected_after_restore(source: list[Record], now: float) -> list[Record]:
    return [
        came_back_waiting(r, now) if r["kind"] == "job" and r["state"] == "running" else r
        for r in source
    ]


def test_a_restore_brings_back_every_record(
    backend: Backend, make_backend: MakeBackend, clock: FakeClock
) -> None:
    ids = populate(backend, clock)
    target = make_backend()
    summary = copy_between(backend, target)
    assert summary.running == 2 and summary.restored
    assert summary.counts["job"] == len(snapshot(backend))
    assert summary.counts["edge"] == 1
    assert summary.counts["queue"] == 5 and summary.counts["breaker"] == 2
    assert summary.counts["schedule"] == 2 and summary.counts["rate_bucket"] == 1
    assert summary.counts["retry_budget"] == 1
    assert records(target) == expected_after_restore(records(backend), clock.now)
    # Through the ordinary reads too.
    before, after = snapshot(backend), snapshot(target)
    assert set(before) == set(after)
    for job_id, job in before.items():
        if job.state is not JobState.RUNNING:
            assert after[job_id] == job
    assert after[ids["running"]].state is JobState.QUEUED
    assert after[ids["running"]].attempts == 0
    assert after[ids["running"]].checkpoint == {"page": 7}
    assert after[ids["running"]].progress == {"done": 3}
    assert after[ids["cancelling"]].state is JobState.CANCELLED
    assert after[ids["queued"]].args == [1e20, -0.0, "é\t\n"]
    assert target.dependencies(ids["child"]) == backend.dependencies(ids["child"])
    assert target.workflow_jobs("wf-1") == backend.workflow_jobs("wf-1")
    assert target.queue_gates() == backend.queue_gates()
    assert target.concurrency_limits() == {"capped": 2}
    assert target.breakers() == backend.breakers()
    assert target.schedule_states() == backend.schedule_states()
    assert target.rate_bucket_of(ids["limited"]) == backend.rate_bucket_of(ids["limited"])


def test_a_backup_file_round_trips(
    backend: Backend, make_backend: MakeBackend, clock: FakeClock, tmp_path: Path
) -> None:
    populate(backend, clock)
    for name in ("jobs.jsonl", "jobs.jsonl.gz"):
        written = write_snapshot(backend.export_snapshot(), tmp_path / name)
        assert written.running == 2 and not written.restored
        target = make_backend()
        restored = target.import_snapshot(read_snapshot(tmp_path / name))
        assert restored.counts == written.counts
        assert records(target) == expected_after_restore(records(backend), clock.now)


def test_the_restored_store_keeps_working(
    backend: Backend, make_backend: MakeBackend, clock: FakeClock
) -> None:
    ids = populate(backend, clock)
    target = make_backend()
    copy_between(backend, target)
    # New ids start above every restored one.
    fresh = enqueue(target, queue="flow")
    assert fresh > max(snapshot(backend))
    # The idempotency key is still held by its live job.
    [again] = target.enqueue_many([new_job(queue="payloads", idempotency_key="once")])
    assert (again.job_id, again.created) == (ids["queued"], False)
    # The parent's success releases its blocked child, as it would have in the source.
    parent = claim_one(target, queues=["flow"])
    assert parent.id == ids["parent"]
    succeed(target, parent)
    assert target.get(ids["child"]).state is JobState.QUEUED
    # The job that was running is claimed again, its checkpoint with it.
    rerun = claim_one(target, queues=["busy"])
    assert (rerun.id, rerun.checkpoint, rerun.attempt) == (ids["running"], {"page": 7}, 1)
    # The paused queue stays paused; the capped one keeps its cap.
    target.enqueue_many([new_job(queue="paused"), *[new_job(queue="capped") for _ in range(3)]])
    assert target.claim("w", ["paused"], 10, LEASE) == []
    assert len(target.claim("w", ["capped"], 10, LEASE)) == 2


def test_an_export_is_one_moment(backend: Backend, clock: FakeClock) -> None:
    """What changes once the export began (its header read) is not in it: on Redis, which has
    no read transaction, the export reads a frozen copy."""
    ids = populate(backend, clock)
    expected = records(backend)
    export = backend.export_snapshot()
    first = next(export)
    succeed(backend, claim_one(backend, queues=["flow"]))  # the parent: its child is released
    enqueue(backend, queue="late")
    backend.set_concurrency_limit("late", 3)
    backend.set_schedule_paused("hourly", True)
    clock.advance(3600)
    assert backend.prune(older_than=60) > 0
    assert [_comparable(r) for r in export] == expected
    assert first["counts"]["job"] == len([r for r in expected if r["kind"] == "job"])
    assert backend.get(ids["child"]).state is JobState.QUEUED


def test_ids_stay_above_pruned_jobs_of_the_source(
    backend: Backend, make_backend: MakeBackend, clock: FakeClock
) -> None:
    kept = enqueue(backend)
    pruned = make_job_in(backend, clock, JobState.SUCCEEDED)
    clock.advance(3600)
    assert backend.prune(older_than=60) == 1
    target = make_backend()
    copy_between(backend, target)
    assert set(snapshot(target)) == {kept}
    assert enqueue(target) > pruned


def test_an_empty_store_round_trips(backend: Backend, make_backend: MakeBackend) -> None:
    target = make_backend()
    summary = copy_between(backend, target)
    assert summary.counts == dict.fromkeys(summary.counts, 0)
    assert enqueue(target) >= 1


@pytest.mark.parametrize("what", ["a job", "a queue setting", "a schedule"])
def test_a_store_that_holds_something_is_refused(
    backend: Backend, make_backend: MakeBackend, clock: FakeClock, what: str
) -> None:
    populate(backend, clock)
    target = make_backend()
    if what == "a job":
        enqueue(target)
    elif what == "a queue setting":
        target.pause_queue("somewhere", None)
    else:
        target.register_schedules(["hourly"])
    before = records(target)
    with pytest.raises(TargetNotEmpty, match="already holds"):
        copy_between(backend, target)
    assert records(target) == before


def _damaged(source: Iterator[Record], after: int) -> Iterator[Record]:
    for n, values in enumerate(source):
        if n == after:
            raise SnapshotError("line 9: not a JSON object")
        yield values


def test_a_damaged_snapshot_writes_nothing(
    backend: Backend, make_backend: MakeBackend, clock: FakeClock
) -> None:
    populate(backend, clock)
    target = make_backend()
    # Damaged among the jobs, once queue settings and some jobs went in.
    with pytest.raises(SnapshotError, match="line 9"):
        target.import_snapshot(_damaged(backend.export_snapshot(), after=16))
    assert records(target) == []
    # Cut short: fewer records than the header announces.
    cut = list(backend.export_snapshot())[:-3]
    with pytest.raises(SnapshotError, match="cut short"):
        target.import_snapshot(iter(cut))
    assert records(target) == []
    # Then the whole snapshot goes in.
    copy_between(backend, target)
    assert len(snapshot(target)) == len(snapshot(backend))


# --- across engines ---------------------------------------------------------------------------

PAIRS = [(a, b) for a in enabled_backends() for b in enabled_backends() if a != b]


@pytest.fixture(params=PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def pair(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[tuple[Backend, Backend]]:
    source, target = request.param
    with ExitStack() as stack:
        folders = [tmp_path / "source", tmp_path / "target"]
        for folder in folders:
            folder.mkdir()
        yield (
            stack.enter_context(FACTORIES[source](folders[0], clock, {})),
            stack.enter_context(FACTORIES[target](folders[1], clock, {})),
        )


def test_a_store_moves_to_another_engine(pair: tuple[Backend, Backend], clock: FakeClock) -> None:
    source, target = pair
    ids: dict[str, Any] = populate(source, clock)
    summary = copy_between(source, target)
    assert summary.running == 2
    assert records(target) == expected_after_restore(records(source), clock.now)
    assert target.queue_gates() == source.queue_gates()
    assert target.breakers() == source.breakers()
    assert target.dependencies(ids["child"]) == source.dependencies(ids["child"])
    assert enqueue(target) > max(snapshot(source))
