"""Per-minute aggregates of what the fleet did: the records the Backend returns, the fixed
histogram bounds, and the accumulator engines without SQL aggregates use (SQLite, Redis).

Each engine keeps, per minute x queue x task: the jobs enqueued (counted afterwards by the
maintenance leader past an id watermark, so enqueue pays nothing), the runs that ended --
succeeded, retried (failed, another attempt to come), dead, cancelled -- and the lost runs
rescued, plus the run time and the queue wait of every run that ended (started - due) as a
sum and cumulative counts under ``BOUNDS`` (Prometheus ``le`` buckets; the last, ``+Inf``, is
the count). They are written in the transaction that ends the runs, survive retention pruning
of the jobs, and are pruned themselves after ``Settings.stats_retention``.

Closed minutes are folded into per queue x task totals (``Backend.fold_stats``): counters read
as totals + unfolded minutes never go down when old minutes are pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: Upper bounds (seconds) of the run-time and queue-wait buckets, the same on every engine
#: (the PostgreSQL function conveyor_tally and the SQLite columns r0..r9, w0..w9 follow it).
BOUNDS: tuple[float, ...] = (0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0)

#: How a run ended, as tallied. A rescue's outcomes count as rescued and, when the job ended
#: dead or cancelled, as that too.
SUCCEEDED = "succeeded"
RETRIED = "retried"
DEAD = "dead"
CANCELLED = "cancelled"
RESCUED = "rescued"
RESCUED_DEAD = "rescued_dead"
RESCUED_CANCELLED = "rescued_cancelled"

#: The counter each outcome of a finish adds to.
_FIELDS = {SUCCEEDED: "succeeded", RETRIED: "retried", DEAD: "dead", CANCELLED: "cancelled"}

#: A rescue's row state -> its outcome.
RESCUE_OUTCOMES = {"retrying": RESCUED, "dead": RESCUED_DEAD, "cancelled": RESCUED_CANCELLED}

#: Seconds a job must have existed before count_enqueued counts it: a transaction that
#: enqueued it may still be open, with a lower id than jobs committed since.
ENQUEUE_SETTLE = 60.0
#: Minutes end this many seconds before fold_stats folds them: a finish transaction writes into
#: the minute it began in, and commits a little later.
FOLD_MARGIN = 120.0


#: The counters of a Tally, in the order of the tables' columns.
COUNTERS = ("enqueued", "succeeded", "retried", "dead", "cancelled", "rescued")


def minute_of(at: float) -> int:
    """UNIX seconds of the start of the minute holding ``at``."""
    return int(at // 60) * 60


@dataclass
class Tally:
    """The counts of one queue x task, over one minute (``minute``) or since ever (None)."""

    queue: str
    task: str
    minute: int | None = None
    enqueued: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    rescued: int = 0
    run_count: int = 0
    run_sum: float = 0.0
    #: Cumulative: run_le[i] runs took at most BOUNDS[i] seconds.
    run_le: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))
    wait_count: int = 0
    wait_sum: float = 0.0
    wait_le: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))

    @property
    def failed(self) -> int:
        """Runs that failed: retried, or ended dead (a rescue's dead included)."""
        return self.retried + self.dead

    @property
    def ended(self) -> int:
        """Jobs that reached a terminal state."""
        return self.succeeded + self.dead + self.cancelled

    def add_run(self, outcome: str, run: float | None, wait: float | None) -> None:
        if outcome == SUCCEEDED:
            self.succeeded += 1
        elif outcome == RETRIED:
            self.retried += 1
        elif outcome in (DEAD, RESCUED_DEAD):
            self.dead += 1
        elif outcome in (CANCELLED, RESCUED_CANCELLED):
            self.cancelled += 1
        if outcome in RESCUE_OUTCOMES.values():
            self.rescued += 1
        if run is not None:
            self.run_count += 1
            self.run_sum += run
            _bucket(self.run_le, run)
        if wait is not None:
            self.wait_count += 1
            self.wait_sum += wait
            _bucket(self.wait_le, wait)

    def add_runs(
        self,
        outcome: str,
        count: int,
        run_bucket: int,
        run_sum: float,
        wait_bucket: int,
        wait_sum: float,
    ) -> None:
        """``count`` runs that ended with ``outcome``, their run times all in the bucket
        ``run_bucket`` (an index of BOUNDS, len(BOUNDS) past the last) and summing
        ``run_sum``, their waits likewise."""
        setattr(self, _FIELDS[outcome], getattr(self, _FIELDS[outcome]) + count)
        self.run_count += count
        self.run_sum += run_sum
        self.wait_count += count
        self.wait_sum += wait_sum
        for i in range(run_bucket, len(BOUNDS)):
            self.run_le[i] += count
        for i in range(wait_bucket, len(BOUNDS)):
            self.wait_le[i] += count

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to these."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.run_count += other.run_count
        self.run_sum += other.run_sum
        self.wait_count += other.wait_count
        self.wait_sum += other.wait_sum
        self.run_le = [a + b for a, b in zip(self.run_le, other.run_le, strict=True)]
        self.wait_le = [a + b for a, b in zip(self.wait_le, other.wait_le, strict=True)]


def _bucket(counts: list[int], value: float) -> None:
    for i, bound in enumerate(BOUNDS):
        if value <= bound:
            counts[i] += 1


def quantile(le: Sequence[int], count: int, q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, interpolated within its bucket as Prometheus'
    histogram_quantile does; None without observations. Past the last bound: that bound."""
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0
    for bound, cumulative in zip(BOUNDS, le, strict=True):
        if cumulative >= rank:
            inside = cumulative - below
            share = 1.0 if inside == 0 else (rank - below) / inside
            return lower + (bound - lower) * share
        lower, below = bound, cumulative
    return BOUNDS[-1]


def combine(rows: Iterable[Tally], *, by_minute: bool) -> list[Tally]:
    """Rows summed per queue x task (and minute, with ``by_minute``), in key order."""
    summed: dict[tuple[int | None, str, str], Tally] = {}
    for row in rows:
        minute = row.minute if by_minute else None
        key = (minute, row.queue, row.task)
        if key not in summed:
            summed[key] = Tally(row.queue, row.task, minute)
        summed[key].merge(row)
    return [summed[key] for key in sorted(summed, key=lambda k: (k[0] or 0, k[1], k[2]))]
