"""The worker runtime."""

from conveyor.worker.context import JobContext
from conveyor.worker.worker import Worker

__all__ = ["JobContext", "Worker"]
