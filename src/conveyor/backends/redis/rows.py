"""Redis hashes and script rows as the engine's records (Job, ClaimedJob, WorkerInfo ...).
Every value arrives as text; a missing hash field is NULL."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.backends.base import ClaimedJob, ScheduleState
from conveyor.backends.breakers import row_from
from conveyor.job import Job, JobError, JobState
from conveyor.limits.breakers import BreakerRow
from conveyor.worker_info import WorkerInfo, WorkerState


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def to_job(h: Mapping[str, str]) -> Job:
    return Job(
        id=int(h["id"]),
        task=h["task"],
        queue=h["queue"],
        state=JobState(h["state"]),
        args=json.loads(h["args"]),
        kwargs=json.loads(h["kwargs"]),
        priority=int(h["priority"]),
        run_at=float(h["run_at"]),
        attempts=int(h.get("attempts", 0)),
        max_attempts=int(h["max_attempts"]),
        created_at=float(h["created_at"]),
        idempotency_key=h.get("idempotency_key"),
        lost_runs=int(h.get("lost_runs", 0)),
        result=_json(h.get("result")),
        errors=[JobError.from_dict(e) for e in json.loads(h.get("errors", "[]"))],
        dead_reason=h.get("dead_reason"),
        timeout=_float(h.get("timeout")),
        progress=_json(h.get("progress")),
        checkpoint=_json(h.get("checkpoint")),
        cancel_requested=h.get("cancel_requested") == "1",
        suspect=h.get("suspect") == "1",
        worker_id=h.get("worker_id"),
        lease_token=h.get("lease_token"),
        lease_expires_at=_float(h.get("lease_expires_at")),
        started_at=_float(h.get("started_at")),
        finished_at=_float(h.get("finished_at")),
        pending_parents=int(h.get("pending_parents", 0)),
        stopped_by=_int(h.get("stopped_by")),
        workflow_id=h.get("workflow_id"),
        escalated_to=_int(h.get("escalated_to")),
        escalated_from=_int(h.get("escalated_from")),
    )


def flat_to_dict(flat: Sequence[str]) -> dict[str, str]:
    """A HGETALL reply inside a script's reply: [field, value, field, value ...]."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def to_claimed(r: Sequence[Any]) -> ClaimedJob:
    """A row of claim.lua: id, task, queue, args, kwargs, priority, attempts, max_attempts,
    token, timeout, checkpoint, run_at (None for false)."""
    return ClaimedJob(
        id=int(r[0]),
        task=r[1],
        queue=r[2],
        args=[] if r[3] == "[]" else json.loads(r[3]),
        kwargs={} if r[4] == "{}" else json.loads(r[4]),
        priority=int(r[5]),
        attempt=int(r[6]),
        max_attempts=int(r[7]),
        lease_token=r[8],
        timeout=None if r[9] is None else float(r[9]),
        checkpoint=None if r[10] is None else json.loads(r[10]),
    )


def claimed_order(r: Sequence[Any]) -> tuple[int, float, int]:
    """Best first: highest priority, then oldest run_at, then id."""
    return (-int(r[5]), float(r[11]), int(r[0]))


def to_worker(h: Mapping[str, str], now: float) -> WorkerInfo:
    queues = h.get("queues")
    return WorkerInfo(
        id=h["id"],
        host=h["host"],
        pid=int(h["pid"]),
        queues=None if queues is None else tuple(json.loads(queues)),
        concurrency=int(h["concurrency"]),
        state=WorkerState(h["state"]),
        stop_requested=h.get("stop_requested") == "1",
        started_at=float(h["started_at"]),
        last_beat_at=float(h["last_beat_at"]),
        beat_interval=float(h["beat_interval"]),
        dead_after=float(h["dead_after"]),
        observed_at=now,
        machine=h.get("machine"),
    )


def to_schedule(h: Mapping[str, str]) -> ScheduleState:
    return ScheduleState(
        name=h["name"],
        paused=h.get("paused") == "1",
        since=float(h["since"]),
        last_tick=_float(h.get("last_tick")),
        last_job_id=_int(h.get("last_job_id")),
        last_enqueued_at=_float(h.get("last_enqueued_at")),
    )


def to_breaker(h: Mapping[str, str]) -> BreakerRow:
    names = ("name", "state", "tasks", "recent", "window", "opened_at", "probe_at", "cooldown")
    return row_from([*(h.get(n) for n in names), h.get("probe_job"), h.get("probe_token")])
