"""The routes that describe the fleet and steer it: queues (with their caps), workers, stats.

Every figure here comes from reads that stay cheap on a big table (see counts.py: job counts,
estimated past a threshold, the oldest ready job of each queue, the per-minute aggregates of
the last hour; the caps, the worker registry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter

from conveyor import history
from conveyor.app import Conveyor
from conveyor.backends.tally import Tally
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

    @api.get(
        "/stats",
        tags=["stats"],
        summary="Jobs in each state, workers, and the last hour: throughput, run times, retries",
    )
    def stats() -> dict[str, Any]:
        return stats_document(app, counts.get())

    return api


def _counts(counts: Mapping[JobState, int]) -> dict[str, int]:
    # Every state, zero or not, so clients index without guarding (as `conveyor stats --json`).
    return {state.value: counts.get(state, 0) for state in JobState}


def _estimated(counted: Counts, queue: str | None = None) -> list[Any]:
    """The counts that are estimates: states of ``queue``, or (queue, state) pairs."""
    pairs = sorted((q, s.value) for q, s in counted.estimated)
    if queue is not None:
        return [s for q, s in pairs if q == queue]
    return [{"queue": q, "state": s} for q, s in pairs]


def queues_document(app: Conveyor, counted: Counts) -> list[dict[str, Any]]:
    counts, caps = counted.jobs, app.concurrency_limits()
    gates = {gate.queue: gate for gate in app.queue_gates()}
    waiting_limits = app.settings.queue_limits
    hour = history.per_queue(counted.minutes)
    empty = Tally("", "")
    documents = []
    for queue in sorted({*counts, *caps, *gates}):
        oldest = counted.oldest_ready.get(queue)
        ended = hour.get(queue, empty)
        documents.append(
            {
                "name": queue,
                "jobs": _counts(counts.get(queue, {})),
                # States whose count is an estimate (a big table: see http/counts.py).
                "estimated": _estimated(counted, queue),
                "max_running": caps.get(queue),
                # CONVEYOR_QUEUE_LIMITS: enqueue refuses (429) past this many waiting jobs.
                "max_waiting": waiting_limits.get(queue),
                # Pause, quiet hours, rate limit (see GET /api/queues/{name}/gates).
                "gates": (gates.get(queue) or QueueGate(queue)).to_dict(),
                # Seconds the oldest ready job has been due; None with nothing ready.
                "oldest_ready_age": None
                if oldest is None
                else max(0.0, counted.counted_at - oldest),
                # Over the last hour, from the per-minute aggregates of every worker.
                "throughput": {
                    "enqueued_last_hour": ended.enqueued,
                    "ended_last_hour": ended.ended,
                    "succeeded_last_hour": ended.succeeded,
                    "failed_last_hour": ended.failed,
                    "per_minute": ended.ended / history.MINUTES,
                },
            }
        )
    return documents


def stats_document(app: Conveyor, counted: Counts) -> dict[str, Any]:
    """Jobs by state (all queues, and per queue), the dead-letter queue's size, workers by
    health -- what the app can count now -- and, from the per-minute aggregates of the last
    hour, throughput per minute, run times and queue waits by task, and retry rates."""
    counts = counted.jobs
    totals = {state.value: 0 for state in JobState}
    for per_queue in counts.values():
        for state, number in per_queue.items():
            totals[state.value] += number
    health: dict[str, int] = {}
    for worker in app.workers():
        health[worker.health.value] = health.get(worker.health.value, 0) + 1
    hour = history.overall(counted.minutes)
    return {
        "jobs": totals,
        "dead_letters": totals[JobState.DEAD.value],
        "queues": {queue: _counts(counts[queue]) for queue in sorted(counts)},
        # Counts above are exact but for these (queue, state) pairs, estimated on a big table.
        "estimated": _estimated(counted),
        "workers": health,
        "counted_at": counted.counted_at,
        "last_hour": {
            "retry_rate": history.retry_rate(hour),
            "run_time": history.durations(hour.run_count, hour.run_sum, hour.run_le),
            "queue_wait": history.durations(hour.wait_count, hour.wait_sum, hour.wait_le),
            "tasks": history.by_task(counted.minutes),
            "throughput": history.throughput(counted.minutes, counted.counted_at),
        },
    }
