"""Typed errors. Each carries what the user needs to fix the problem, in one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.job import Job, JobError


class ConveyorError(Exception):
    """Base class of every error Conveyor raises on purpose."""


class ConfigurationError(ConveyorError, ValueError):
    """A setting is missing, malformed or contradicts another one."""


# --- enqueue validation: raised before anything is written -------------------------------


class EnqueueError(ConveyorError, ValueError):
    """The job was rejected before anything was written."""


class UnknownTask(EnqueueError):
    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" (registered: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"unknown task {name!r}{hint}")
        self.name = name


class InvalidArguments(EnqueueError):
    """Arguments are not plain JSON (NaN, bytes, objects, NUL in strings ...)."""


class ArgumentsMismatch(EnqueueError):
    """Arguments do not bind to the task's signature."""


class PayloadTooLarge(EnqueueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"job payload is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class QueueFull(EnqueueError):
    def __init__(self, queue: str, depth: int, limit: int) -> None:
        super().__init__(
            f"queue {queue!r} is full: {depth} waiting jobs, limit {limit}; "
            "retry later or raise the queue limit"
        )
        self.queue = queue
        self.depth = depth
        self.limit = limit


class DependencyError(EnqueueError):
    """The dependencies of a job are impossible (see conveyor.workflows)."""


class UnknownParent(DependencyError, LookupError):
    def __init__(self, job_ids: list[int]) -> None:
        names = ", ".join(str(i) for i in job_ids)
        super().__init__(
            f"a job depends on job(s) {names}, which do not exist: give the ids of stored jobs, "
            "or the JobSpec of a job in the same batch"
        )
        self.job_ids = job_ids


class DependencyCycle(DependencyError):
    def __init__(self, positions: list[int]) -> None:
        where = " -> ".join(str(i) for i in positions)
        super().__init__(f"the jobs of this batch depend on each other in a cycle: {where}")
        self.positions = positions


# --- operations on existing jobs ----------------------------------------------------------


class JobNotFound(ConveyorError, LookupError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class WorkflowNotFound(ConveyorError, LookupError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow with id {workflow_id!r} (or all its jobs were pruned)")
        self.workflow_id = workflow_id


class InvalidTransition(ConveyorError):
    """The job is in a state that does not allow the requested operation."""

    def __init__(self, job_id: int, state: str, operation: str) -> None:
        super().__init__(f"cannot {operation} job {job_id}: it is {state}")
        self.job_id = job_id
        self.state = state
        self.operation = operation


class IdempotencyConflict(InvalidTransition):
    """The job cannot go live again: another live job holds its idempotency key."""

    def __init__(self, job_id: int, key: str | None = None) -> None:
        ConveyorError.__init__(
            self,
            f"cannot requeue job {job_id}: another live job holds its idempotency key"
            + (f" {key!r}" if key else ""),
        )
        self.job_id = job_id
        self.state = "dead or cancelled"
        self.operation = "requeue"
        self.key = key


# --- waiting for results ----------------------------------------------------------------


class JobFailed(ConveyorError):
    """The job ended without a result (``app.result``, ``job.wait``): it is dead or cancelled.

    ``job`` is the job as it ended; ``state``, ``dead_reason`` and ``last_error`` (a
    ``JobError``: type, message, traceback of its last failed attempt, or None) come from it.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.job_id = job.id
        self.state = job.state
        self.dead_reason = job.dead_reason
        self.last_error: JobError | None = job.last_error
        super().__init__(self._describe())

    def _describe(self) -> str:
        error = self.last_error
        detail = f": {error.type}: {error.message}" if error is not None else ""
        return f"job {self.job_id} ({self.job.task}) ended {self.state.value}{detail}"

    def __reduce__(self) -> tuple[type[JobFailed], tuple[Job]]:
        return (type(self), (self.job,))


class JobDead(JobFailed):
    """The job is in the dead-letter queue: attempts exhausted, or a non-retryable error."""

    def _describe(self) -> str:
        reason = self.dead_reason or "dead"
        return f"job {self.job_id} ({self.job.task}) is dead: {reason}"


class JobWasCancelled(JobFailed):
    """Someone cancelled the job before it succeeded."""


class ResultTimeout(ConveyorError, TimeoutError):
    """The job had not ended when the wait for its result ran out (the job goes on)."""

    def __init__(self, job_id: int, timeout: float, state: str) -> None:
        super().__init__(f"job {job_id} is still {state} after waiting {timeout:g}s for it")
        self.job_id = job_id
        self.timeout = timeout
        self.state = state

    def __reduce__(self) -> tuple[type[ResultTimeout], tuple[int, float, str]]:
        return (type(self), (self.job_id, self.timeout, self.state))


# --- circuit breakers -----------------------------------------------------------------------


class UnknownBreaker(ConfigurationError, LookupError):
    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" (known: {', '.join(known)})" if known else " (none declared or stored)"
        super().__init__(f"unknown breaker {name!r}{hint}")
        self.name = name


# --- workers ------------------------------------------------------------------------------


class WorkerNotFound(ConveyorError, LookupError):
    def __init__(self, worker_id: str) -> None:
        super().__init__(f"no worker with id {worker_id!r}")
        self.worker_id = worker_id


class ScheduleNotFound(ConveyorError, LookupError):
    def __init__(self, name: str, known: list[str] | None = None) -> None:
        hint = f" (known: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"no schedule named {name!r}{hint}")
        self.name = name


# --- storage ------------------------------------------------------------------------------


class BackendError(ConveyorError):
    """The storage engine failed in a way the caller should know about."""


class DatabaseBusy(BackendError):
    """The database stayed locked by another process for longer than the configured timeout."""


class StorageFull(BackendError):
    """The disk (or the database's size limit) is full; nothing was written."""


class DatabaseNotWritable(BackendError, PermissionError):
    """This process may not write the database file, or the folder it is (to be) created in."""


class DatabaseCorrupt(BackendError):
    """The file is not a Conveyor database, or it is damaged."""


class SchemaError(BackendError):
    """The database schema is missing, too old or written by a newer Conveyor."""


class BackendUnavailable(BackendError):
    """The database server could not be reached."""

    @classmethod
    def enqueue_lost(cls, where: str, why: object) -> BackendUnavailable:
        """An enqueue whose connection to ``where`` was lost once it was sent whole: it may
        have been written, and is not sent again (a second copy would be a second job). The
        same words on every engine."""
        detail = str(why).strip() or "no reply"
        return cls(
            f"lost the connection to {where} while enqueueing: the job may or may not have "
            f"been written ({detail})"
        )


# --- backup and restore (conveyor.snapshot) --------------------------------------------------


class SnapshotError(ConveyorError, ValueError):
    """A backup file cannot be written, or cannot be restored: missing, not a backup, an
    unknown format version, a damaged line (named by its number), or cut short. A restore
    that fails writes nothing; a backup that fails leaves no file."""


class TargetNotEmpty(ConveyorError):
    """A restore or copy names a database that already holds jobs or queue settings: a
    restore fills an empty database only, so that no job of either side is lost or clashes."""


# --- inside a running task ----------------------------------------------------------------


class JobCancelled(ConveyorError):
    """Raised inside a task (``ctx.raise_if_cancelled()``) when someone cancelled the job."""


class LeaseLost(ConveyorError):
    """This worker no longer owns the run (its lease expired and the job moved on)."""


class JobTimeout(ConveyorError, TimeoutError):
    """The task ran longer than its timeout."""


class ChildProcessDied(ConveyorError):
    """The process of an ``isolation="process"`` task ended without returning: it crashed
    (a signal such as SIGSEGV), called ``os._exit``, or was killed from outside."""

    def __init__(self, message: str, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[type[ChildProcessDied], tuple[str, int | None]]:
        return (type(self), (str(self), self.exitcode))


class CPULimitExceeded(ConveyorError):
    """The process of an ``isolation="process"`` task used up its CPU time (``cpu_limit_s``,
    ``RLIMIT_CPU``): it was stopped at the limit, or killed a second after it."""


class ResultNotSerializable(ConveyorError, TypeError):
    """A task returned a value that is not plain JSON (a set, bytes, an object, NaN ...).

    Returning it again would fail again: the job is dead-lettered at once, without retries."""

    def __init__(self, task: str, type_name: str, detail: str) -> None:
        super().__init__(f"task {task} returned a result that is not JSON ({type_name}): {detail}")
        self.task = task
        self.type_name = type_name
        self.detail = detail

    def __reduce__(self) -> tuple[type[ResultNotSerializable], tuple[str, str, str]]:
        return (type(self), (self.task, self.type_name, self.detail))
