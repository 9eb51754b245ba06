"""Conveyor: a durable job queue for Python.

The public names below are imported on first use (see lazy.py), so that importing one module of
the package does not import them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor import lazy

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.errors import (
        ArgumentsMismatch,
        ConveyorError,
        InvalidArguments,
        JobCancelled,
        JobDead,
        JobFailed,
        JobNotFound,
        JobWasCancelled,
        PayloadTooLarge,
        QueueFull,
        ResultNotSerializable,
        ResultTimeout,
        UnknownTask,
        WorkerNotFound,
    )
    from conveyor.hooks import RunInfo
    from conveyor.job import Job, JobError, JobState
    from conveyor.limits.rates import RateLimit
    from conveyor.retry import Exponential, Fibonacci, Fixed, Immediate, Linear, RetryBudget
    from conveyor.settings import Settings
    from conveyor.snapshot.moves import copy
    from conveyor.task import JobSpec, NonRetryable, Task
    from conveyor.worker import JobContext, Pool, Worker
    from conveyor.worker_info import WorkerHealth, WorkerInfo, WorkerState
    from conveyor.workflows.canvas import Workflow, chain, chord, group

__version__ = "0.1.0"

__all__ = [
    "ArgumentsMismatch",
    "Conveyor",
    "ConveyorError",
    "Exponential",
    "Fibonacci",
    "Fixed",
    "Immediate",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobDead",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "JobWasCancelled",
    "Linear",
    "NonRetryable",
    "PayloadTooLarge",
    "Pool",
    "QueueFull",
    "RateLimit",
    "ResultNotSerializable",
    "ResultTimeout",
    "RetryBudget",
    "RunInfo",
    "Settings",
    "Task",
    "UnknownTask",
    "Worker",
    "WorkerHealth",
    "WorkerInfo",
    "WorkerNotFound",
    "WorkerState",
    "Workflow",
    "__version__",
    "chain",
    "chord",
    "copy",
    "group",
]

#: The module each public name comes from.
_SOURCES = {
    "Workflow": "conveyor.workflows.canvas",
    "chain": "conveyor.workflows.canvas",
    "chord": "conveyor.workflows.canvas",
    "group": "conveyor.workflows.canvas",
    "Conveyor": "conveyor.app",
    "copy": "conveyor.snapshot.moves",
    "ArgumentsMismatch": "conveyor.errors",
    "ConveyorError": "conveyor.errors",
    "InvalidArguments": "conveyor.errors",
    "JobCancelled": "conveyor.errors",
    "JobDead": "conveyor.errors",
    "JobFailed": "conveyor.errors",
    "JobNotFound": "conveyor.errors",
    "JobWasCancelled": "conveyor.errors",
    "PayloadTooLarge": "conveyor.errors",
    "QueueFull": "conveyor.errors",
    "ResultNotSerializable": "conveyor.errors",
    "ResultTimeout": "conveyor.errors",
    "UnknownTask": "conveyor.errors",
    "WorkerNotFound": "conveyor.errors",
    "RunInfo": "conveyor.hooks",
    "Job": "conveyor.job",
    "JobError": "conveyor.job",
    "JobState": "conveyor.job",
    "RateLimit": "conveyor.limits.rates",
    "Exponential": "conveyor.retry",
    "Fibonacci": "conveyor.retry",
    "Fixed": "conveyor.retry",
    "Immediate": "conveyor.retry",
    "Linear": "conveyor.retry",
    "RetryBudget": "conveyor.retry",
    "Settings": "conveyor.settings",
    "JobSpec": "conveyor.task",
    "NonRetryable": "conveyor.task",
    "Task": "conveyor.task",
    "JobContext": "conveyor.worker",
    "Pool": "conveyor.worker",
    "Worker": "conveyor.worker",
    "WorkerHealth": "conveyor.worker_info",
    "WorkerInfo": "conveyor.worker_info",
    "WorkerState": "conveyor.worker_info",
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy.exports(globals(), _SOURCES)
