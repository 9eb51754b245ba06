"""The gates of a queue, as a claim weighs them: how many jobs it may start now, and when a
gate held shut by time opens.

A queue has a gate when its row in ``conveyor_queue_limits`` sets any of: a cap on running jobs
(``set_concurrency_limit``), a pause (``pause_queue``, until a time or until resumed), quiet
hours (``set_quiet_hours``) or a rate limit (``set_rate_limit``). A claim reads the rows of the
gated queues it serves inside its transaction -- locked on PostgreSQL, under the write lock on
SQLite -- asks ``room`` of each, and writes back the rate limit's next start
(``rate_next_after``) for the queues it started jobs from. Queues without a row never reach this
module: their claims keep the one-statement path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.limits.quiet import QuietHours
from conveyor.limits.rates import RateLimit


@dataclass(frozen=True, slots=True)
class QueueGate:
    """One queue's row of gates. Times are UNIX seconds; ``paused_until`` is ``inf`` for a
    pause that lasts until resumed, None when the queue is not paused."""

    queue: str
    max_running: int | None = None
    #: Jobs of the queue running now (counted only when it has a cap; 0 otherwise).
    running: int = 0
    paused_until: float | None = None
    quiet: QuietHours | None = None
    rate: RateLimit | None = None
    #: The earliest moment the rate limit lets the next job start (None: at once).
    rate_next: float | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> QueueGate:
        """A row of the ``queue_gates`` query: queue, max_running, running, paused_until,
        quiet (JSON), rate_count, rate_per, rate_next."""
        queue, max_running, running, paused_until, quiet, count, per, rate_next = row[:8]
        return cls(
            queue=str(queue),
            max_running=None if max_running is None else int(max_running),
            running=int(running or 0),
            paused_until=None if paused_until is None else float(paused_until),
            quiet=None if quiet is None else QuietHours.from_json(str(quiet)),
            rate=None if count is None else RateLimit(int(count), per=float(per)),
            rate_next=None if rate_next is None else float(rate_next),
        )

    def to_dict(self) -> dict[str, Any]:
        """The gates as ``conveyor queues gates --json`` and the HTTP API show them: a pause
        until resumed has ``paused`` true and ``paused_until`` null."""
        paused = self.paused_until
        return {
            "queue": self.queue,
            "max_running": self.max_running,
            "paused_until": None if paused is None or math.isinf(paused) else paused,
            "paused": paused is not None,
            "quiet": None if self.quiet is None else self.quiet.describe(),
            "rate_limit": None if self.rate is None else self.rate.describe(),
            "rate_next": self.rate_next,
        }

    def paused(self, now: float) -> bool:
        return self.paused_until is not None and now < self.paused_until

    def room(self, now: float) -> int | None:
        """How many jobs of the queue a claim may start at ``now``; None for no bound."""
        if self.paused(now) or (self.quiet is not None and self.quiet.is_quiet(now)):
            return 0
        room: int | None = None
        if self.max_running is not None:
            room = max(self.max_running - self.running, 0)
        if self.rate is not None:
            # One start per claim at most: the next one is a whole interval away.
            room = min(room if room is not None else 1, int(RateLimit.allows(self.rate_next, now)))
        return room

    def opens_at(self, now: float) -> float | None:
        """When the gates that hold the queue shut by time (a pause with an end, quiet hours,
        the rate limit) next let a job through: ``inf`` while paused until resumed, None when
        no such gate holds it now (a cap opens when a run ends, not at a time)."""
        moment = now
        if self.paused(now):
            assert self.paused_until is not None
            moment = self.paused_until
        if math.isinf(moment):
            return moment
        # A rate token and quiet hours may each push the other: settle on a moment both allow.
        for _ in range(4):
            before = moment
            if self.quiet is not None:
                moment = self.quiet.opens_at(moment)
                if math.isinf(moment):
                    return moment
            if self.rate is not None and self.rate_next is not None:
                moment = max(moment, self.rate_next)
            if moment == before:
                break
        return moment if moment > now else None


def rooms(gates: Iterable[QueueGate], now: float) -> dict[str, int]:
    """The room of every gated queue that has a bound, for ``turns.claim_in_turns``."""
    bounded: dict[str, int] = {}
    for gate in gates:
        room = gate.room(now)
        if room is not None:
            bounded[gate.queue] = room
    return bounded


def quiet_queues(gates: Iterable[QueueGate], now: float) -> list[str]:
    """The queues in their quiet hours at ``now``: a check the databases leave to Python."""
    return sorted(g.queue for g in gates if g.quiet is not None and g.quiet.is_quiet(now))


def rate_updates(
    gates: Iterable[QueueGate], started: Mapping[str, int], now: float
) -> list[tuple[str, float]]:
    """``(queue, rate_next)`` to write back for the rate-limited queues a claim started
    ``started[queue]`` jobs from."""
    updates: list[tuple[str, float]] = []
    for gate in gates:
        count = started.get(gate.queue, 0)
        if gate.rate is not None and count:
            updates.append((gate.queue, gate.rate.next_after(gate.rate_next, now, count)))
    return updates


def started_by_queue(rows: Iterable[Sequence[Any]], queue_column: int = 2) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        queue = row[queue_column]
        counts[queue] = counts.get(queue, 0) + 1
    return counts
