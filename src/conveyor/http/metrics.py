"""``GET /metrics``: Prometheus text, built at each scrape from the same cheap reads as
``/api/queues`` (counts grouped by queue and state, the caps, the worker registry).

Labels are bounded: queue names, states, worker health -- never job ids or arguments.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor.app import Conveyor
from conveyor.job import JobState
from conveyor.worker_info import WorkerHealth

from .counts import CountsCache

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ConveyorCollector(Collector):
    """Gauges read from the database at each scrape."""

    def __init__(self, app: Conveyor, counts: CountsCache) -> None:
        self.app = app
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.counts.get().jobs
        caps = self.app.concurrency_limits()
        jobs = GaugeMetricFamily(
            "conveyor_jobs", "Jobs in the database, by queue and state.", labels=["queue", "state"]
        )
        for queue in sorted(counts):
            for state in JobState:
                jobs.add_metric([queue, state.value], counts[queue].get(state, 0))
        yield jobs
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


def registry_for(app: Conveyor, counts: CountsCache) -> CollectorRegistry:
    """A registry of this app's own: two apps in one process do not mix their figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConveyorCollector(app, counts))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
