"""Rate limits of tasks, per key: the buckets a claim takes tokens from.

A task declared with ``rate_limit=`` has one bucket per key given at enqueue (``rate_key=``;
jobs enqueued without one share the key ``""``). Each bucket is a GCRA of its own
(conveyor/limits/rates.py): its jobs start at most ``count`` per ``per`` seconds, whatever the
other keys do. Such jobs carry their key in ``conveyor_jobs.rate_key``, which keeps them out of
the ready indexes that ordinary claims walk; a claim takes them bucket by bucket instead, one
job per bucket whose next start has come, and moves that bucket's next start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.limits.rates import RateLimit


@dataclass(frozen=True, slots=True)
class Bucket:
    task: str
    key: str
    rate: RateLimit
    #: The earliest moment its next job may start (None: at once).
    rate_next: float | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Bucket:
        """task, key, rate_count, rate_per, rate_next."""
        task, key, count, per, rate_next = row[:5]
        return cls(
            str(task),
            str(key),
            RateLimit(int(count), per=float(per)),
            None if rate_next is None else float(rate_next),
        )


def picked(rows: Iterable[Sequence[Any]]) -> dict[int, Bucket]:
    """The rows of ``pick_rate_limited`` (bucket columns, then the job id) by job id."""
    return {int(row[5]): Bucket.from_row(row) for row in rows}


def admit(
    picks: Mapping[int, Bucket], queue_of: Mapping[int, str], rooms: Mapping[str, int]
) -> list[int]:
    """The picked jobs the gates of their queues let start (``gates.rooms``: the room of each
    gated queue), in the order picked: a paused queue, or one at its cap, starts none."""
    left = dict(rooms)
    admitted = []
    for job_id in picks:
        queue = queue_of.get(job_id)
        if queue in left:
            if left[queue] <= 0:
                continue
            left[queue] -= 1
        admitted.append(job_id)
    return admitted


def bucket_updates(
    picks: Mapping[int, Bucket], claimed: Iterable[int], now: float
) -> list[tuple[str, str, float]]:
    """``(task, key, rate_next)`` for the buckets whose picked job the claim did start."""
    updates = []
    for job_id in claimed:
        bucket = picks.get(job_id)
        if bucket is not None:
            updates.append(
                (bucket.task, bucket.key, bucket.rate.next_after(bucket.rate_next, now, 1))
            )
    return updates


def new_buckets(jobs: Iterable[Any]) -> dict[tuple[str, str], RateLimit]:
    """The buckets of a batch of NewJobs with a rate key, each once, with its task's limit."""
    found: dict[tuple[str, str], RateLimit] = {}
    for job in jobs:
        if job.rate_key is not None and job.rate_limit is not None:
            found[(job.task, job.rate_key)] = job.rate_limit
    return found
