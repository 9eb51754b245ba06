"""Conveyor: a durable job queue for Python."""

from conveyor.app import Conveyor
from conveyor.errors import (
    ArgumentsMismatch,
    ConveyorError,
    InvalidArguments,
    JobCancelled,
    JobNotFound,
    PayloadTooLarge,
    QueueFull,
    UnknownTask,
    WorkerNotFound,
)
from conveyor.job import Job, JobError, JobState
from conveyor.retry import Exponential, Fixed, Linear, RetryBudget
from conveyor.settings import Settings
from conveyor.task import JobSpec, NonRetryable, Task
from conveyor.worker import JobContext, Pool, Worker
from conveyor.worker_info import WorkerHealth, WorkerInfo, WorkerState

__version__ = "0.1.0"

__all__ = [
    "ArgumentsMismatch",
    "Conveyor",
    "ConveyorError",
    "Exponential",
    "Fixed",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "Linear",
    "NonRetryable",
    "PayloadTooLarge",
    "Pool",
    "QueueFull",
    "RetryBudget",
    "Settings",
    "Task",
    "UnknownTask",
    "Worker",
    "WorkerHealth",
    "WorkerInfo",
    "WorkerNotFound",
    "WorkerState",
    "__version__",
]
