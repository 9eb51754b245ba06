"""``GET /metrics``: Prometheus text, built at each scrape from the same cheap reads as
``/api/queues`` (counts by queue and state, the oldest ready jobs, the caps, the worker
registry) and from the per-minute aggregates every worker writes (conveyor/backends/tally.py):
counters of jobs enqueued, succeeded, failed, retried, dead, cancelled and rescued, and the
histograms of run time and queue wait, per queue and task. Those describe the whole fleet, not
this process, and never go down when old jobs and minutes are pruned.

Labels are bounded: queue and task names, states, worker health -- never job ids or arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from conveyor.app import Conveyor
from conveyor.backends.tally import BOUNDS, Tally
from conveyor.job import JobState
from conveyor.worker_info import WorkerHealth

from .counts import CountsCache

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The most queue x task series of each counter and histogram; past it, the quietest are summed
#: into one series labelled OTHER.
MAX_SERIES = 500
OTHER = "(other)"


class ConveyorCollector(Collector):
    """Gauges read from the database at each scrape."""

    def __init__(self, app: Conveyor, counts: CountsCache) -> None:
        self.app = app
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counted = self.counts.get()
        counts = counted.jobs
        caps = self.app.concurrency_limits()
        jobs = GaugeMetricFamily(
            "conveyor_jobs", "Jobs in the database, by queue and state.", labels=["queue", "state"]
        )
        for queue in sorted(counts):
            for state in JobState:
                jobs.add_metric([queue, state.value], counts[queue].get(state, 0))
        yield jobs
        estimated = GaugeMetricFamily(
            "conveyor_jobs_estimated",
            "1 where conveyor_jobs is an estimate (a big table), by queue and state.",
            labels=["queue", "state"],
        )
        for queue, state in sorted(counted.estimated):
            estimated.add_metric([queue, state.value], 1)
        yield estimated
        oldest = GaugeMetricFamily(
            "conveyor_queue_oldest_ready_age_seconds",
            "Seconds the oldest ready job of a queue has been due.",
            labels=["queue"],
        )
        for queue, run_at in sorted(counted.oldest_ready.items()):
            oldest.add_metric([queue], max(0.0, counted.counted_at - run_at))
        yield oldest
        totals = bounded(counted.totals)
        yield from _counters(totals)
        yield _histogram(
            "conveyor_job_run_seconds",
            "Run time of the runs that ended (not lost ones), every worker.",
            totals,
            lambda t: (t.run_le, t.run_count, t.run_sum),
        )
        yield _histogram(
            "conveyor_job_queue_wait_seconds",
            "Seconds from due to started, of the runs that ended, every worker.",
            totals,
            lambda t: (t.wait_le, t.wait_count, t.wait_sum),
        )
        capped = GaugeMetricFamily(
            "conveyor_queue_max_running",
            "The cap on running jobs of a queue, across every worker.",
            labels=["queue"],
        )
        for queue, cap in sorted(caps.items()):
            capped.add_metric([queue], cap)
        yield capped
        workers = GaugeMetricFamily(
            "conveyor_workers", "Registered workers, by health.", labels=["health"]
        )
        health = {kind: 0 for kind in WorkerHealth}
        for worker in self.app.workers():
            health[worker.health] += 1
        for kind, number in health.items():
            workers.add_metric([kind.value], number)
        yield workers
        yield GaugeMetricFamily(
            "conveyor_workers_alive",
            "Registered workers beating on time.",
            value=health[WorkerHealth.ALIVE],
        )


#: Counter name -> (help, how a Tally counts it).
_COUNTERS: dict[str, tuple[str, Callable[[Tally], int]]] = {
    "conveyor_jobs_enqueued": ("Jobs enqueued.", lambda t: t.enqueued),
    "conveyor_jobs_succeeded": ("Runs that succeeded.", lambda t: t.succeeded),
    "conveyor_jobs_failed": ("Runs that failed: retried, or dead.", lambda t: t.failed),
    "conveyor_jobs_retried": ("Runs that failed, to be tried again.", lambda t: t.retried),
    "conveyor_jobs_dead": ("Jobs that ended in the dead-letter queue.", lambda t: t.dead),
    "conveyor_jobs_cancelled": ("Runs that ended cancelled.", lambda t: t.cancelled),
    "conveyor_jobs_rescued": (
        "Lost runs rescued (worker gone, lease expired).",
        lambda t: t.rescued,
    ),
}


def _counters(totals: Sequence[Tally]) -> Iterator[Metric]:
    for name, (doc, count) in _COUNTERS.items():
        family = CounterMetricFamily(
            name, f"{doc} Every worker, per queue and task.", labels=["queue", "task"]
        )
        for row in totals:
            family.add_metric([row.queue, row.task], count(row))
        yield family


def _histogram(
    name: str,
    doc: str,
    totals: Sequence[Tally],
    part: Callable[[Tally], tuple[Sequence[int], int, float]],
) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=["queue", "task"])
    for row in totals:
        le, count, total = part(row)
        buckets = [(f"{bound:g}", float(n)) for bound, n in zip(BOUNDS, le, strict=True)]
        buckets.append(("+Inf", float(count)))
        family.add_metric([row.queue, row.task], buckets, total)
    return family


def bounded(totals: Sequence[Tally], most: int = MAX_SERIES) -> list[Tally]:
    """At most ``most`` queue x task series: the busiest, the rest summed into one series
    labelled ``OTHER`` (task names come from whoever enqueues, an HTTP client without the app
    included)."""
    if len(totals) <= most:
        return list(totals)
    ranked = sorted(totals, key=lambda t: t.enqueued + t.ended + t.retried, reverse=True)
    rest = Tally(OTHER, OTHER)
    for row in ranked[most - 1 :]:
        rest.merge(row)
    return [*sorted(ranked[: most - 1], key=lambda t: (t.queue, t.task)), rest]


def registry_for(app: Conveyor, counts: CountsCache) -> CollectorRegistry:
    """A registry of this app's own: two apps in one process do not mix their figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConveyorCollector(app, counts))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
