"""Workers as the database knows them: what a worker registers, the record every reader gets
back, and how healthy its beats make it look.

A worker beats every ``beat_interval`` seconds (database time). It is *late* once it missed a
beat, and *dead* once it went ``dead_after`` seconds without one, or once maintenance declared it
dead (and released its running jobs): after that silence, or at once when a worker of the same
machine found its process gone. Both durations are the worker's own, stored in its row, so
every reader and every sweeper judges a worker alike whatever its own settings are.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

#: A beat older than this many intervals is late: the next one should have come already.
LATE_AFTER_BEATS = 2.0


class WorkerState(enum.StrEnum):
    RUNNING = "running"
    #: Stopping gracefully: claims nothing new, finishes (or puts back) its running jobs.
    STOPPING = "stopping"
    #: Declared dead by maintenance (no beat for ``dead_after`` seconds, or its process gone);
    #: its runs were released.
    DEAD = "dead"


class WorkerHealth(enum.StrEnum):
    ALIVE = "alive"
    LATE = "late"
    DEAD = "dead"


@dataclass(frozen=True)
class WorkerRegistration:
    """What a starting worker writes about itself."""

    id: str
    host: str
    pid: int
    #: None: every queue.
    queues: tuple[str, ...] | None
    concurrency: int
    #: Seconds between beats.
    beat_interval: float
    #: Seconds without a beat after which the worker counts as dead.
    dead_after: float
    #: The kernel boot and PID namespace ``pid`` belongs to (``conveyor.worker.machine``);
    #: None where unknown. Workers of one machine tell a dead one by its pid being gone.
    machine: str | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """One registered worker, read at database time ``observed_at``. Times are UNIX seconds."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...] | None
    concurrency: int
    state: WorkerState
    stop_requested: bool
    started_at: float
    last_beat_at: float
    beat_interval: float
    dead_after: float
    observed_at: float
    machine: str | None = None

    @property
    def last_beat_age(self) -> float:
        """Seconds since the last beat (never negative: clocks of two readers may differ)."""
        return max(0.0, self.observed_at - self.last_beat_at)

    @property
    def health(self) -> WorkerHealth:
        age = self.last_beat_age
        if self.state is WorkerState.DEAD or age > self.dead_after:
            return WorkerHealth.DEAD
        if age > LATE_AFTER_BEATS * self.beat_interval:
            return WorkerHealth.LATE
        return WorkerHealth.ALIVE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, for the CLI and the HTTP API."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": None if self.queues is None else list(self.queues),
            "concurrency": self.concurrency,
            "state": self.state.value,
            "stop_requested": self.stop_requested,
            "health": self.health.value,
            "started_at": self.started_at,
            "last_beat_at": self.last_beat_at,
            "last_beat_age": self.last_beat_age,
            "beat_interval": self.beat_interval,
            "dead_after": self.dead_after,
            "machine": self.machine,
        }
