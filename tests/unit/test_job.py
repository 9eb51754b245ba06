"""The state machine table and the Job record."""

from __future__ import annotations

import json

from conveyor.job import (
    ALLOWED_TRANSITIONS,
    CANCELLABLE_STATES,
    LIVE_STATES,
    REQUEUEABLE_STATES,
    TERMINAL_STATES,
    Job,
    JobError,
    JobState,
)


def test_every_state_has_an_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == {None, *JobState}


def test_terminal_and_live_partition_the_states() -> None:
    assert {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED} == TERMINAL_STATES
    assert set(JobState) == TERMINAL_STATES | LIVE_STATES
    assert not TERMINAL_STATES & LIVE_STATES
    assert all(s.is_terminal and not s.is_live for s in TERMINAL_STATES)
    assert all(s.is_live and not s.is_terminal for s in LIVE_STATES)


def test_terminal_states_only_leave_through_requeue() -> None:
    assert ALLOWED_TRANSITIONS[JobState.SUCCEEDED] == frozenset()
    for state in TERMINAL_STATES - {JobState.SUCCEEDED}:
        # queued by a requeue; blocked when revived with the requeue of a failed parent
        assert ALLOWED_TRANSITIONS[state] == {JobState.QUEUED, JobState.BLOCKED}
    assert {s for s in TERMINAL_STATES if ALLOWED_TRANSITIONS[s]} == REQUEUEABLE_STATES


def test_enqueue_creates_waiting_states_or_ends_after_a_failed_parent() -> None:
    waiting = {JobState.BLOCKED, JobState.SCHEDULED, JobState.QUEUED}
    assert ALLOWED_TRANSITIONS[None] == waiting | {JobState.CANCELLED, JobState.DEAD}


def test_cancellable_states_can_reach_cancelled() -> None:
    for state in CANCELLABLE_STATES:
        assert JobState.CANCELLED in ALLOWED_TRANSITIONS[state]
    assert JobState.RUNNING not in CANCELLABLE_STATES, "running jobs are asked, not cancelled"


def test_only_a_claim_starts_a_run() -> None:
    into_running = {s for s, targets in ALLOWED_TRANSITIONS.items() if JobState.RUNNING in targets}
    # claim, and claim_suspect (a suspect waits in retrying for a worker of its own)
    assert into_running == {JobState.QUEUED, JobState.RETRYING}


def test_every_state_is_reachable_from_enqueue() -> None:
    seen: set[JobState] = set()
    frontier = set(ALLOWED_TRANSITIONS[None])
    while frontier:
        state = frontier.pop()
        seen.add(state)
        frontier |= ALLOWED_TRANSITIONS[state] - seen
    assert seen == set(JobState)


def test_job_error_round_trip() -> None:
    error = JobError(attempt=2, type="ValueError", message="m", traceback="tb", at=1.5)
    assert JobError.from_dict(error.to_dict()) == error
    assert JobError.from_dict({}) == JobError(0, "", "", "", 0.0)


def test_job_to_dict_is_json_ready() -> None:
    error = JobError(1, "E", "m", "tb", 3.0)
    job = Job(
        id=1,
        task="t",
        queue="q",
        state=JobState.DEAD,
        args=[1],
        kwargs={"a": "b"},
        priority=0,
        run_at=2.0,
        attempts=1,
        max_attempts=1,
        created_at=1.0,
        errors=[error],
        dead_reason="r",
        finished_at=4.0,
    )
    data = json.loads(json.dumps(job.to_dict()))
    assert data["state"] == "dead"
    assert data["errors"] == [error.to_dict()]
    assert data["dead_reason"] == "r"
    assert "lease_token" not in data, "the token is a secret of the run"
    assert job.last_error == error
    assert job.created.timestamp() == 1.0
