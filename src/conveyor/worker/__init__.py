"""The worker runtime."""

from conveyor.worker.context import JobContext
from conveyor.worker.pools import Pool
from conveyor.worker.worker import Worker

__all__ = ["JobContext", "Pool", "Worker"]
