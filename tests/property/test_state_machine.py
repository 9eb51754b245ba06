"""A stateful property test: random sequences of operations on a real SQLite backend, checked
after every step against the state machine of conveyor.job and the fencing rules.

Every rule predicts its own outcome from the snapshot taken after the previous step (the model
is the database itself, read through the Backend interface); the invariant then checks what
must hold whatever happened: no job lost, only allowed transitions, terminal jobs frozen,
attempts never going back, a lease token exactly while running, and only the latest run of a
job holding a valid token.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from conveyor.backends.base import ClaimedJob, Outcome, OutcomeKind
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.errors import ConveyorError, InvalidTransition
from conveyor.job import (
    ALLOWED_TRANSITIONS,
    CANCELLABLE_STATES,
    LIVE_STATES,
    REQUEUEABLE_STATES,
    Job,
    JobError,
    JobState,
)
from conveyor.settings import Settings
from tests.support import FakeClock, new_job

QUEUES = ("q1", "q2")
KEYS = (None, None, "k1", "k2")
LEASE = 30.0
#: Which run a write names: one that owns its job, one superseded by a newer run of the same
#: job that is running now (the dangerous case for fencing), or any run ever claimed.
RUN_PICK = st.sampled_from(["current", "superseded", "any"])

#: (queue, delay, idempotency key, max_attempts, priority, idempotency scope)
JobSpec = tuple[str, float, str | None, int, int, str]
JOB = st.tuples(
    st.sampled_from(QUEUES),
    st.sampled_from([0.0, 0.0, 5.0, 50.0]),
    st.sampled_from(KEYS),
    st.integers(min_value=1, max_value=3),
    st.sampled_from([-1, 0, 1]),
    st.sampled_from(["live", "live", "any"]),
)


@dataclass
class Run:
    job_id: int
    token: str
    attempt: int


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="conveyor-property-"))
        self.clock = FakeClock()
        settings_ = Settings.load(env={}, url=f"sqlite:///{self.folder / 'jobs.db'}")
        self.backend = SQLiteBackend(settings_, clock=self.clock)
        self.ids: list[int] = []
        self.runs: list[Run] = []
        self.before: dict[int, Job] = {}
        # What the last step was allowed to do beyond the plain transitions.
        self.claimed: set[int] = set()
        self.released: set[int] = set()
        self.requeued: set[int] = set()
        self.reset: set[int] = set()

    def teardown(self) -> None:
        self.backend.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------

    def snapshot(self) -> dict[int, Job]:
        return {job.id: job for job in self.backend.list_jobs(limit=1_000_000)}

    def current(self, run: Run) -> bool:
        """Whether ``run`` still owns its job, judged from the previous snapshot."""
        job = self.before[run.job_id]
        return job.state is JobState.RUNNING and job.lease_token == run.token

    def pick_job(self, index: int, among: frozenset[JobState] | None = None) -> int:
        """Any job; with ``among``, one in those states if there is one."""
        ids = self.ids
        if among is not None:
            ids = [i for i in self.ids if self.before[i].state in among] or self.ids
        return ids[index % len(ids)]

    def pick_run(self, index: int, how: str = "any") -> Run:
        """A run picked as RUN_PICK describes (any run when none fits)."""
        runs: list[Run] = []
        if how == "current":
            runs = [r for r in self.runs if self.current(r)]
        elif how == "superseded":
            runs = [
                r
                for r in self.runs
                if not self.current(r) and self.before[r.job_id].state is JobState.RUNNING
            ]
        runs = runs or self.runs
        return runs[index % len(runs)]

    def assert_unchanged(self) -> None:
        assert self.snapshot() == self.before

    def others_unchanged(self, *job_ids: int) -> dict[int, Job]:
        after = self.snapshot()
        for job_id, job in self.before.items():
            if job_id not in job_ids:
                assert after[job_id] == job, f"job {job_id} changed though not addressed"
        return after

    # --- rules -----------------------------------------------------------------------------

    @initialize(jobs=st.lists(JOB, min_size=2, max_size=6))
    def seed(self, jobs: list[JobSpec]) -> None:
        self.before = self.snapshot()
        assert self.before == {}
        self.do_enqueue(jobs)

    @rule(jobs=st.lists(JOB, min_size=1, max_size=4))
    def enqueue(self, jobs: list[JobSpec]) -> None:
        self.do_enqueue(jobs)

    @rule(
        limit=st.integers(min_value=1, max_value=4),
        queues=st.sampled_from([None, ["q1"], ["q2"], ["q1", "q2"]]),
    )
    def claim(self, limit: int, queues: list[str] | None) -> None:
        self.do_claim(limit, queues)

    @rule(
        kind=st.sampled_from(list(OutcomeKind)),
        retry_in=st.sampled_from([0.0, 3.0, 40.0]),
        checkpoint=st.sampled_from([None, '"cp"']),
    )
    def work(self, kind: OutcomeKind, retry_in: float, checkpoint: str | None) -> None:
        """A worker claims one job and finishes it at once."""
        if self.do_claim(1, None):
            self.consistent()
            self.do_finish(self.runs[-1], kind, retry_in, checkpoint)

    @precondition(lambda self: self.runs)
    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        pick=RUN_PICK,
        kind=st.sampled_from(list(OutcomeKind)),
        retry_in=st.sampled_from([0.0, 3.0, 40.0]),
        checkpoint=st.sampled_from([None, '"cp"']),
    )
    def finish(
        self,
        index: int,
        pick: str,
        kind: OutcomeKind,
        retry_in: float,
        checkpoint: str | None,
    ) -> None:
        self.do_finish(self.pick_run(index, pick), kind, retry_in, checkpoint)

    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        kind=st.sampled_from(list(OutcomeKind)),
    )
    def cancel_while_running(self, index: int, kind: OutcomeKind) -> None:
        """An operator cancels a running job (claimed now if none runs); its worker then ends
        the run somehow."""
        running = [r for r in self.runs if self.current(r)]
        if not running:
            if not self.do_claim(1, None):
                return
            self.consistent()
            running = [self.runs[-1]]
        run = running[index % len(running)]
        event(f"cancel while running, then {kind.value}")
        self.do_cancel(run.job_id)
        self.consistent()
        self.do_finish(run, kind, 0.0, None)

    @precondition(lambda self: self.runs and len(self.ids) >= 2)
    @rule(index=st.integers(min_value=0, max_value=10_000), other=st.integers(0, 10_000))
    def forged_write(self, index: int, other: int) -> None:
        """A valid token names one run of one job: used for another job it changes nothing."""
        run = self.pick_run(index, "current")
        others = [i for i in self.ids if i != run.job_id]
        running = [i for i in others if self.before[i].state is JobState.RUNNING]
        target = (running or others)[other % len(running or others)]
        error = JobError(1, "ValueError", "forged", "tb", self.clock.now)
        for kind in OutcomeKind:
            outcome = Outcome(
                target, run.token, kind, result_json="1", error=error, dead_reason="forged"
            )
            [result] = self.backend.finish_many([outcome])
            assert result.applied is False, f"a forged {kind} was applied"
        assert self.backend.save_progress(target, run.token, "1", "1") is False
        self.assert_unchanged()

    @precondition(lambda self: self.runs)
    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        pick=RUN_PICK,
        progress=st.integers(min_value=0, max_value=100),
    )
    def save_progress(self, index: int, pick: str, progress: int) -> None:
        run = self.pick_run(index, pick)
        valid = self.current(run)
        saved = self.backend.save_progress(run.job_id, run.token, str(progress), None)
        assert saved is valid
        if not valid:
            self.assert_unchanged()
            return
        after = self.others_unchanged(run.job_id)[run.job_id]
        assert after.progress == progress
        assert after.state is JobState.RUNNING

    @precondition(lambda self: self.runs)
    @rule(
        indexes=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=4),
        pick=RUN_PICK,
        lease=st.sampled_from([10.0, LEASE, 60.0]),
    )
    def extend_leases(self, indexes: list[int], pick: str, lease: float) -> None:
        runs = [self.pick_run(i, pick if n % 2 == 0 else "any") for n, i in enumerate(indexes)]
        tokens = [r.token for r in runs]
        valid = {r.token for r in runs if self.current(r)}
        report = self.backend.extend_leases(tokens, lease)
        assert report.extended == valid
        assert report.lost == set(tokens) - valid
        assert report.cancel_requested == {
            r.token for r in runs if r.token in valid and self.before[r.job_id].cancel_requested
        }
        after = self.others_unchanged(*(r.job_id for r in runs if r.token in valid))
        for r in runs:
            if r.token in valid:
                assert after[r.job_id].lease_expires_at == self.clock.now + lease

    @rule(seconds=st.sampled_from([1.0, 5.0, 20.0, LEASE + 1.0, 100.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.assert_unchanged()

    @rule()
    def rescue(self) -> None:
        self.check_rescue()

    @rule()
    def lose_leases(self) -> None:
        """Every worker stalls past its lease; the sweeper comes by."""
        self.clock.advance(LEASE + 1.0)
        self.check_rescue()

    def check_rescue(self) -> None:
        now = self.clock.now
        expired = [
            j
            for j in self.before.values()
            if j.state is JobState.RUNNING
            and j.lease_expires_at is not None
            and j.lease_expires_at < now
        ]
        report = self.backend.rescue_expired()
        event(f"rescue of {min(len(expired), 2)}{'+' if len(expired) >= 2 else ''} expired runs")
        # Poison isolation: a run is charged only if it was the one running job of its worker.
        held: dict[str | None, int] = {}
        for j in self.before.values():
            if j.state is JobState.RUNNING:
                held[j.worker_id] = held.get(j.worker_id, 0) + 1
        alone = {j.id for j in expired if held[j.worker_id] == 1}
        cancelled = sorted(j.id for j in expired if j.cancel_requested)
        dead = sorted(
            j.id
            for j in expired
            if not j.cancel_requested and j.id in alone and j.attempts >= j.max_attempts
        )
        requeued = sorted(j.id for j in expired if j.id not in cancelled and j.id not in dead)
        assert sorted(report.cancelled) == cancelled
        assert sorted(report.dead) == dead
        assert sorted(report.requeued) == requeued
        after = self.others_unchanged(*(j.id for j in expired))
        for j in expired:
            rescued = after[j.id]
            assert rescued.lost_runs == j.lost_runs + 1
            assert rescued.errors == j.errors, "a lost run is not an error"
            refunded = j.id in requeued and j.id not in alone
            assert rescued.attempts == j.attempts - refunded
            assert rescued.suspect is (j.id in requeued)
            assert rescued.lease_token is None
            if refunded:
                self.released.add(j.id)
        for job_id in dead:
            reason = after[job_id].dead_reason
            assert reason is not None
            assert "lease" in reason

    @rule(worker=st.sampled_from(["worker", "alone"]))
    def claim_suspect(self, worker: str) -> None:
        now = self.clock.now
        busy = any(
            j.state is JobState.RUNNING and j.worker_id == worker for j in self.before.values()
        )
        suspects = sorted(
            (
                j
                for j in self.before.values()
                if j.state is JobState.RETRYING and j.suspect and j.run_at <= now
            ),
            key=lambda j: (-j.priority, j.run_at, j.id),
        )
        claimed = self.backend.claim_suspect(worker, None, LEASE)
        event(f"claim of a suspect: {'none' if claimed is None else 'one'}")
        if busy or not suspects:
            assert claimed is None
            self.assert_unchanged()
            return
        assert claimed is not None
        assert claimed.id == suspects[0].id
        assert claimed.attempt == suspects[0].attempts + 1
        self.runs.append(Run(claimed.id, claimed.lease_token, claimed.attempt))
        self.claimed = {claimed.id}
        after = self.others_unchanged(claimed.id)[claimed.id]
        assert (after.state, after.worker_id) == (JobState.RUNNING, worker)

    @rule()
    def promote(self) -> None:
        now = self.clock.now
        due = {
            j.id
            for j in self.before.values()
            if j.state in (JobState.SCHEDULED, JobState.RETRYING)
            and j.run_at <= now
            and not j.suspect
        }
        assert self.backend.promote_due() == len(due)
        after = self.others_unchanged(*due)
        assert all(after[i].state is JobState.QUEUED for i in due)

    @precondition(lambda self: self.ids)
    @rule(index=st.integers(min_value=0, max_value=10_000), focus=st.booleans())
    def cancel(self, index: int, focus: bool) -> None:
        self.do_cancel(self.pick_job(index, LIVE_STATES if focus else None))

    def do_cancel(self, job_id: int) -> None:
        before = self.before[job_id]
        if before.state in (JobState.SUCCEEDED, JobState.DEAD):
            try:
                self.backend.cancel(job_id)
            except InvalidTransition:
                pass
            else:
                raise AssertionError(f"cancel of a {before.state} job was accepted")
            self.assert_unchanged()
            return
        job = self.backend.cancel(job_id)
        event(f"cancel of a {before.state} job")
        after = self.others_unchanged(job_id)[job_id]
        assert job == after
        if before.state in CANCELLABLE_STATES:
            assert after.state is JobState.CANCELLED
        elif before.state is JobState.RUNNING:
            assert after.state is JobState.RUNNING
            assert after.cancel_requested is True
            assert after.lease_token == before.lease_token
        else:
            assert before.state is JobState.CANCELLED
            assert after == before

    @precondition(lambda self: self.ids)
    @rule(
        index=st.integers(min_value=0, max_value=10_000),
        reset=st.booleans(),
        focus=st.booleans(),
    )
    def requeue(self, index: int, reset: bool, focus: bool) -> None:
        job_id = self.pick_job(index, REQUEUEABLE_STATES if focus else None)
        before = self.before[job_id]
        conflict = before.idempotency_key is not None and any(
            j.idempotency_key == before.idempotency_key and j.state.is_live
            for j in self.before.values()
        )
        if before.state not in REQUEUEABLE_STATES or conflict:
            expected: type[Exception] = (
                InvalidTransition if before.state not in REQUEUEABLE_STATES else ConveyorError
            )
            try:
                self.backend.requeue([job_id], reset_attempts=reset)
            except expected:
                pass
            else:
                raise AssertionError(f"requeue of a {before.state} job was accepted")
            self.assert_unchanged()
            return
        [job] = self.backend.requeue([job_id], reset_attempts=reset)
        event(f"requeue of a {before.state} job")
        after = self.others_unchanged(job_id)[job_id]
        assert job == after
        assert after.state is JobState.QUEUED
        assert after.errors == before.errors, "the history is kept"
        if reset:
            assert after.attempts == 0
            self.reset = {job_id}
        else:
            assert after.attempts == before.attempts
            assert after.max_attempts >= before.attempts + 1
        self.requeued = {job_id}

    # --- the operations and what each must do ----------------------------------------------

    def do_enqueue(self, jobs: list[JobSpec]) -> None:
        batch = [
            new_job(
                queue=queue,
                delay=delay,
                idempotency_key=key,
                max_attempts=max_attempts,
                priority=priority,
                idempotency_scope=scope,
                args_json=f"[{len(self.ids) + i}]",
            )
            for i, (queue, delay, key, max_attempts, priority, scope) in enumerate(jobs)
        ]
        results = self.backend.enqueue_many(batch)
        assert len(results) == len(batch)
        after = self.others_unchanged()

        known = dict(self.before)
        for new, result in zip(batch, results, strict=True):
            holder = None
            if new.idempotency_key is not None:
                same_key = [j for j in known.values() if j.idempotency_key == new.idempotency_key]
                if new.idempotency_scope == "live":
                    same_key = [j for j in same_key if j.state.is_live]
                holder = max(same_key, key=lambda j: j.id, default=None)
            if holder is not None:
                event(f"idempotent enqueue ({new.idempotency_scope}) hit a {holder.state} job")
                assert result.created is False
                assert result.job_id == holder.id
                continue
            assert result.created is True
            assert result.job_id not in known
            assert all(result.job_id > i for i in known)
            expected = JobState.SCHEDULED if new.delay > 0 else JobState.QUEUED
            assert result.state is expected
            job = after[result.job_id]
            assert job.state is expected
            assert job.attempts == 0
            known[result.job_id] = job
            self.ids.append(result.job_id)

    def do_claim(self, limit: int, queues: list[str] | None) -> list[ClaimedJob]:
        now = self.clock.now
        ready = [
            j
            for j in self.before.values()
            if (queues is None or j.queue in queues)
            and (
                j.state is JobState.QUEUED
                or (
                    j.state in (JobState.SCHEDULED, JobState.RETRYING)
                    and j.run_at <= now
                    and not j.suspect
                )
            )
        ]
        ready.sort(key=lambda j: (-j.priority, j.run_at, j.id))
        claimed = self.backend.claim("worker", queues, limit, LEASE)
        ids = [c.id for c in claimed]
        event(f"claim of {min(len(ids), 2)}{'+' if len(ids) >= 2 else ''} jobs")

        assert len(ids) == len(set(ids))
        assert len(ids) == min(limit, len(ready))
        if queues is None or len(queues) == 1:
            assert ids == [j.id for j in ready[:limit]]
        else:
            for queue in queues:
                in_queue = [j.id for j in ready if j.queue == queue]
                mine = [c.id for c in claimed if c.queue == queue]
                assert mine == in_queue[: len(mine)], "each queue is claimed in order"
        issued = {r.token for r in self.runs}
        for c in claimed:
            before = self.before[c.id]
            assert c.attempt == before.attempts + 1
            assert c.lease_token not in issued, "a token is never handed out twice"
            assert c.checkpoint == before.checkpoint
            self.runs.append(Run(c.id, c.lease_token, c.attempt))
        self.claimed = set(ids)

        after = self.snapshot()
        for job in after.values():
            if job.id in self.claimed:
                assert job.state is JobState.RUNNING
                assert job.lease_expires_at == now + LEASE
            elif job.state is not self.before[job.id].state:
                # Only promotion of due jobs that were not claimed.
                assert job.state is JobState.QUEUED
                assert self.before[job.id].state in (JobState.SCHEDULED, JobState.RETRYING)
        return claimed

    def do_finish(
        self, run: Run, kind: OutcomeKind, retry_in: float, checkpoint: str | None
    ) -> None:
        valid = self.current(run)
        job = self.before[run.job_id]
        if kind is OutcomeKind.RETRY and run.attempt >= job.max_attempts:
            kind = OutcomeKind.DEAD  # what a worker does on the last attempt
        error = JobError(run.attempt, "ValueError", "boom", "tb", self.clock.now)
        outcome = Outcome(
            run.job_id,
            run.token,
            kind,
            result_json='"ok"' if kind is OutcomeKind.SUCCEEDED else None,
            error=error if kind in (OutcomeKind.RETRY, OutcomeKind.DEAD) else None,
            retry_in=retry_in,
            dead_reason="gave up" if kind is OutcomeKind.DEAD else None,
            checkpoint_json=checkpoint,
        )
        [result] = self.backend.finish_many([outcome])
        event(f"finish {kind.value} with a {'current' if valid else 'stale'} token")
        assert result.job_id == run.job_id
        if not valid:
            assert result.applied is False, "a stale token's write was applied"
            assert result.state is None
            self.assert_unchanged()
            return

        expected_state = {
            OutcomeKind.SUCCEEDED: JobState.SUCCEEDED,
            OutcomeKind.RETRY: JobState.RETRYING,
            OutcomeKind.DEAD: JobState.DEAD,
            OutcomeKind.CANCELLED: JobState.CANCELLED,
            # Released runs go back to the queue, unless a cancel was asked for meanwhile.
            # A suspect waits as one again.
            OutcomeKind.RELEASED: JobState.CANCELLED
            if job.cancel_requested
            else JobState.RETRYING
            if job.suspect
            else JobState.QUEUED,
        }[kind]
        event(f"{kind.value} applied, ending {expected_state}")
        assert result.applied is True
        assert result.state is expected_state
        after = self.others_unchanged(run.job_id)[run.job_id]
        assert after.state is expected_state
        assert after.lease_token is None
        if checkpoint is not None and kind is not OutcomeKind.SUCCEEDED:
            assert after.checkpoint == "cp"
        else:
            assert after.checkpoint == job.checkpoint
        if kind is OutcomeKind.SUCCEEDED:
            assert after.result == "ok"
        if kind is OutcomeKind.RETRY:
            assert after.run_at == self.clock.now + retry_in
            assert after.suspect is False, "a suspect that returned is cleared"
        if kind in (OutcomeKind.RETRY, OutcomeKind.DEAD):
            assert after.errors == [*job.errors, error]
        else:
            assert after.errors == job.errors
        if kind is OutcomeKind.RELEASED:
            assert after.attempts == job.attempts - 1
            self.released = {run.job_id}
        else:
            assert after.attempts == job.attempts

    # --- what holds after every step -------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        after = self.snapshot()
        assert set(after) == set(self.ids), "a job was lost (or appeared from nowhere)"
        latest: dict[int, Run] = {}
        for run in self.runs:
            latest[run.job_id] = run
        for job_id, job in after.items():
            assert job.state in JobState
            running = job.state is JobState.RUNNING
            assert (job.lease_token is not None) is running
            assert (job.lease_expires_at is not None) is running
            assert (job.finished_at is not None) is job.state.is_terminal
            assert job.attempts <= job.max_attempts, "a job ran more often than allowed"
            if running:
                # Only the latest run of a job can hold its lease.
                assert job.lease_token == latest[job_id].token
                assert job.attempts == latest[job_id].attempt

            old = self.before.get(job_id)
            if old is None:
                assert job.state in ALLOWED_TRANSITIONS[None]
                continue
            if job.state is not old.state:
                via_promotion = (
                    job_id in self.claimed
                    and job.state is JobState.RUNNING
                    and old.state in (JobState.SCHEDULED, JobState.RETRYING)
                )
                assert job.state in ALLOWED_TRANSITIONS[old.state] or via_promotion, (
                    f"job {job_id}: {old.state} -> {job.state} is not an allowed transition"
                )
            if old.state.is_terminal and job_id not in self.requeued:
                assert job == old, f"terminal job {job_id} changed"
            if job.attempts < old.attempts:
                assert (job_id in self.released and job.attempts == old.attempts - 1) or (
                    job_id in self.reset and job.attempts == 0
                ), f"attempts of job {job_id} went back from {old.attempts} to {job.attempts}"
            if job_id not in self.reset:
                assert job.lost_runs >= old.lost_runs
            assert job.errors[: len(old.errors)] == old.errors, "error history was rewritten"

        self.before = after
        self.claimed, self.released, self.requeued, self.reset = set(), set(), set(), set()


QueueMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestQueueMachine = QueueMachine.TestCase
