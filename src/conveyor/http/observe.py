"""The routes that describe the fleet and steer it: queues (with their caps), workers, stats.

Every figure here comes from reads that stay cheap on a big table (counts grouped by queue and
state, the caps, the worker registry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter

from conveyor.app import Conveyor
from conveyor.job import JobState
from conveyor.limits import QueueGate

from .counts import Counts, CountsCache
from .models import LimitIn, StopIn
from .problems import Problem


def router(app: Conveyor, write: Sequence[Any], counts: CountsCache) -> APIRouter:
    """The routes; ``write`` are the dependencies of those that change something."""
    api = APIRouter()

    @api.get("/queues", tags=["queues"], summary="Every queue: jobs by state, caps and gates")
    def list_queues() -> dict[str, Any]:
        return {"queues": queues_document(app, counts.get())}

    @api.put(
        dependencies=write,
        path="/queues/{name}/limit",
        tags=["queues"],
        summary="Cap a queue's running jobs",
    )
    def put_limit(name: str, limit: LimitIn) -> dict[str, Any]:
        """At most ``max_running`` jobs of the queue run at once, across every worker."""
        app.set_concurrency_limit(name, limit.max_running)
        return {"queue": name, "max_running": limit.max_running}

    @api.delete(
        dependencies=write,
        path="/queues/{name}/limit",
        tags=["queues"],
        summary="Remove a queue's cap",
    )
    def delete_limit(name: str) -> dict[str, Any]:
        app.set_concurrency_limit(name, None)
        return {"queue": name, "max_running": None}

    @api.get("/workers", tags=["workers"], summary="Every registered worker, with its health")
    def list_workers() -> dict[str, Any]:
        return {"workers": [worker.to_dict() for worker in app.workers()]}

    @api.post(
        dependencies=write,
        path="/workers/stop",
        tags=["workers"],
        summary="Ask workers to stop gracefully",
    )
    def stop_workers(selection: StopIn) -> dict[str, Any]:
        if (selection.ids is not None) == selection.all:
            raise Problem(
                422,
                "invalid-request",
                "Invalid request",
                "give the ids of the workers, or all: true (not both)",
                field="ids",
            )
        if selection.ids is not None and not selection.ids:
            return {"stopping": []}
        asked = app.stop_workers(selection.ids or (), every=selection.all)
        return {"stopping": asked}

    @api.get("/stats", tags=["stats"], summary="Jobs in each state, per queue, and workers")
    def stats() -> dict[str, Any]:
        return stats_document(app, counts.get())

    return api


def _counts(counts: Mapping[JobState, int]) -> dict[str, int]:
    # Every state, zero or not, so clients index without guarding (as `conveyor stats --json`).
    return {state.value: counts.get(state, 0) for state in JobState}


def queues_document(app: Conveyor, counted: Counts) -> list[dict[str, Any]]:
    counts, caps = counted.jobs, app.concurrency_limits()
    gates = {gate.queue: gate for gate in app.queue_gates()}
    waiting_limits = app.settings.queue_limits
    return [
        {
            "name": queue,
            "jobs": _counts(counts.get(queue, {})),
            "max_running": caps.get(queue),
            # CONVEYOR_QUEUE_LIMITS: enqueue refuses (429) past this many waiting jobs.
            "max_waiting": waiting_limits.get(queue),
            # Pause, quiet hours, rate limit (see GET /api/queues/{name}/gates).
            "gates": (gates.get(queue) or QueueGate(queue)).to_dict(),
        }
        for queue in sorted({*counts, *caps, *gates})
    ]


def stats_document(app: Conveyor, counted: Counts) -> dict[str, Any]:
    """What the app can count now: jobs by state (all queues, and per queue), the dead-letter
    queue's size, workers by health. Figures over time (throughput, run times) belong in a
    key of their own beside these, from per-minute aggregates."""
    counts = counted.jobs
    totals = {state.value: 0 for state in JobState}
    for per_queue in counts.values():
        for state, number in per_queue.items():
            totals[state.value] += number
    health: dict[str, int] = {}
    for worker in app.workers():
        health[worker.health.value] = health.get(worker.health.value, 0) + 1
    return {
        "jobs": totals,
        "dead_letters": totals[JobState.DEAD.value],
        "queues": {queue: _counts(counts[queue]) for queue in sorted(counts)},
        "workers": health,
        "counted_at": counted.counted_at,
    }
