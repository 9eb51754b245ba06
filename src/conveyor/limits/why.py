"""Why is my job not running? Every gate that holds a waiting job, each asked by one function.

A check takes what ``why`` gathered once (the job, the time, its queue's gates, the workers)
and returns a ``Hold`` naming the gate, or None when that gate lets the job through. The checks
run in order and all of them are asked: a job may be held by several gates at once (a paused
queue whose rate limit is also spent). New gates add a check with ``register``; a check under
an existing name replaces it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.job import Job, JobState
from conveyor.limits.buckets import Bucket
from conveyor.limits.gates import QueueGate
from conveyor.limits.times import show
from conveyor.worker_info import WorkerHealth, WorkerInfo, WorkerState

WAITING = frozenset({JobState.BLOCKED, JobState.SCHEDULED, JobState.QUEUED, JobState.RETRYING})


@dataclass(frozen=True)
class Hold:
    """One gate holding a job: ``gate`` is a short name (``scheduled``, ``paused`` ...),
    ``reason`` a sentence for people, ``until`` when it lets go if known (UNIX seconds)."""

    gate: str
    reason: str
    until: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "reason": self.reason, "until": self.until}


@dataclass(frozen=True)
class Context:
    job: Job
    now: float
    #: The gates of the job's queue, None when it has none.
    gate: QueueGate | None
    workers: Sequence[WorkerInfo]
    #: Whatever other parts of Conveyor gathered for their checks (breakers, parents).
    extra: dict[str, Any] = field(default_factory=dict)


Check = Callable[[Context], Hold | None]

_CHECKS: dict[str, Check] = {}


def register(name: str, check: Check) -> Check:
    """Add a gate check (or replace the one of that name); returns it, so it decorates."""
    _CHECKS[name] = check
    return check


def checks() -> list[tuple[str, Check]]:
    return list(_CHECKS.items())


def why(context: Context) -> list[Hold]:
    """Every gate holding ``context.job``; empty when it is not waiting, or nothing holds it
    (a worker should start it shortly)."""
    if context.job.state not in WAITING:
        return []
    return [hold for _, check in checks() if (hold := check(context)) is not None]


# --- the gates, in the order people think of them -------------------------------------------


def document(job: Job, holds: Sequence[Hold]) -> dict[str, Any]:
    """``conveyor jobs why --json`` and ``GET /api/jobs/{id}/why``."""
    return {"id": job.id, "state": job.state.value, "held_by": [h.to_dict() for h in holds]}


def scheduled(context: Context) -> Hold | None:
    job = context.job
    if job.state in (JobState.SCHEDULED, JobState.RETRYING) and job.run_at > context.now:
        what = "retry" if job.state is JobState.RETRYING else "run"
        return Hold("scheduled", f"{what} at {show(job.run_at)}", job.run_at)
    return None


def blocked(context: Context) -> Hold | None:
    if context.job.state is not JobState.BLOCKED:
        return None
    # The parents not yet succeeded, as app.why gathered them (id, state).
    parents: Sequence[tuple[int, JobState]] = context.extra.get("parents") or ()
    waiting = [f"{job_id} ({state.value})" for job_id, state in parents]
    if not waiting:
        return Hold("blocked", "waiting for the jobs it depends on")
    shown = ", ".join(waiting[:10]) + (
        f" and {len(waiting) - 10} more" if len(waiting) > 10 else ""
    )
    return Hold("blocked", f"waiting for job(s) {shown}")


def paused(context: Context) -> Hold | None:
    gate = context.gate
    if gate is None or not gate.paused(context.now):
        return None
    assert gate.paused_until is not None
    if math.isinf(gate.paused_until):
        return Hold("paused", f"queue {gate.queue} is paused until resumed", math.inf)
    return Hold(
        "paused", f"queue {gate.queue} is paused until {show(gate.paused_until)}", gate.paused_until
    )


def quiet(context: Context) -> Hold | None:
    gate = context.gate
    if gate is None or gate.quiet is None or not gate.quiet.is_quiet(context.now):
        return None
    opens = gate.quiet.opens_at(context.now)
    until = "around the clock" if math.isinf(opens) else f"until {show(opens)}"
    described = gate.quiet.describe()
    return Hold("quiet", f"queue {gate.queue} is in its quiet hours ({described}) {until}", opens)


def cap(context: Context) -> Hold | None:
    gate = context.gate
    if gate is None or gate.max_running is None or gate.running < gate.max_running:
        return None
    return Hold(
        "cap",
        f"queue {gate.queue} has its cap of {gate.max_running} running job(s) reached "
        f"({gate.running} running)",
    )


def rate(context: Context) -> Hold | None:
    gate = context.gate
    if gate is None or gate.rate is None or gate.rate.allows(gate.rate_next, context.now):
        return None
    assert gate.rate_next is not None
    return Hold(
        "rate",
        f"queue {gate.queue} is rate limited to {gate.rate.describe()}: next start at "
        f"{show(gate.rate_next)}",
        gate.rate_next,
    )


def task_rate(context: Context) -> Hold | None:
    bucket = context.extra.get("bucket")
    if not isinstance(bucket, Bucket) or bucket.rate.allows(bucket.rate_next, context.now):
        return None
    assert bucket.rate_next is not None
    key = f" for key {bucket.key}" if bucket.key else ""
    return Hold(
        "rate",
        f"task {bucket.task} is rate limited to {bucket.rate.describe()}{key}: next start at "
        f"{show(bucket.rate_next)}",
        bucket.rate_next,
    )


def breaker(context: Context) -> Hold | None:
    # The line conveyor.limits.breakers.breaker_gate wrote, None when no breaker holds the job.
    line = context.extra.get("breaker")
    if not isinstance(line, str):
        return None
    return Hold("breaker", line.removeprefix("waiting: "))


def no_worker(context: Context) -> Hold | None:
    queue = context.job.queue
    serving = [
        worker
        for worker in context.workers
        if worker.state is WorkerState.RUNNING
        and worker.health is not WorkerHealth.DEAD
        and not worker.stop_requested
        and (worker.queues is None or queue in worker.queues)
    ]
    if serving:
        return None
    return Hold("no worker", f"no live worker serves queue {queue}")


for _name, _check in (
    ("scheduled", scheduled),
    ("blocked", blocked),
    ("paused", paused),
    ("quiet", quiet),
    ("cap", cap),
    ("rate", rate),
    ("task rate", task_rate),
    ("breaker", breaker),
    ("no worker", no_worker),
):
    register(_name, _check)
