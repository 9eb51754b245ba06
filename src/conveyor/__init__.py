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
)
from conveyor.job import Job, JobError, JobState
from conveyor.retry import Exponential, Fixed, Linear, RetryBudget
from conveyor.settings import Settings
from conveyor.task import JobSpec, NonRetryable, Task
from conveyor.worker import JobContext, Pool, Worker

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
    "__version__",
]
