"""Rows of the jobs and workers tables as Conveyor's records. psycopg has already decoded json,
jsonb and array columns into Python values; the queries have already turned times into UNIX
seconds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.backends.base import ClaimedJob
from conveyor.job import Job, JobError, JobState
from conveyor.worker_info import WorkerInfo, WorkerState

_STATES = {state.value: state for state in JobState}


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A row of ``get_job`` / ``list_jobs``."""
    return Job(
        id=int(row["id"]),
        task=row["task"],
        queue=row["queue"],
        state=_STATES[row["state"]],
        args=row["args"],
        kwargs=row["kwargs"],
        priority=row["priority"],
        run_at=float(row["run_at"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        created_at=float(row["created_at"]),
        idempotency_key=row["idempotency_key"],
        lost_runs=row["lost_runs"],
        result=row["result"],
        errors=[JobError.from_dict(e) for e in row["errors"]],
        dead_reason=row["dead_reason"],
        timeout=row["timeout"],
        progress=row["progress"],
        checkpoint=row["checkpoint"],
        cancel_requested=bool(row["cancel_requested"]),
        suspect=bool(row["suspect"]),
        worker_id=row["worker_id"],
        lease_token=row["lease_token"],
        lease_expires_at=_seconds(row["lease_expires_at"]),
        started_at=_seconds(row["started_at"]),
        finished_at=_seconds(row["finished_at"]),
        pending_parents=row["pending_parents"],
        stopped_by=row["stopped_by"],
        workflow_id=row["workflow_id"],
        escalated_to=row["escalated_to"],
        escalated_from=row["escalated_from"],
    )


def claimed_from_row(row: tuple[Any, ...]) -> ClaimedJob:
    """A row RETURNING by ``claim_any`` / ``claim_queue`` (the last column, run_at, orders)."""
    return ClaimedJob(
        id=int(row[0]),
        task=row[1],
        queue=row[2],
        args=row[3],
        kwargs=row[4],
        priority=row[5],
        attempt=row[6],
        max_attempts=row[7],
        lease_token=row[8],
        timeout=row[9],
        checkpoint=row[10],
    )


def worker_from_row(row: Mapping[str, Any], now: float) -> WorkerInfo:
    """A row of ``list_workers``, read at database time ``now``."""
    queues = row["queues"]
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=int(row["pid"]),
        queues=None if queues is None else tuple(queues),
        concurrency=int(row["concurrency"]),
        state=WorkerState(row["state"]),
        stop_requested=bool(row["stop_requested"]),
        started_at=float(row["started_at"]),
        last_beat_at=float(row["last_beat_at"]),
        beat_interval=float(row["beat_interval"]),
        dead_after=float(row["dead_after"]),
        observed_at=now,
        machine=row["machine"],
    )
