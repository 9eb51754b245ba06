"""The job record and its state machine.

Allowed transitions (the only ones any backend performs):

    (new)      -> blocked | scheduled | queued     enqueue
    (new)      -> cancelled | dead                  enqueue after a parent that failed
                                                    (the job's on_parent_failure policy)
    blocked    -> queued | scheduled                every parent ended (succeeded, or failed
                                                    under the "run" policy), in the
                                                    transaction of the last parent's end
    blocked    -> cancelled | dead                  a parent ended dead or cancelled (policy
                                                    "cancel" or "dead"), in that transaction
    scheduled  -> queued                            run_at reached (promotion)
    retrying   -> queued                            run_at reached (promotion), unless suspect
    retrying   -> running                           claim of a suspect, alone (poison isolation)
    queued     -> running                           claim: new run, fresh lease token
    running    -> succeeded                         fenced success
    running    -> retrying                          fenced failure with attempts left, or lease
                                                    expired or worker declared dead (rescue:
                                                    the job becomes a suspect, and gets its
                                                    attempt back unless it ran alone), or a
                                                    suspect released at shutdown
    running    -> queued                            released before it started (no attempt charged)
    running    -> dead                              fenced failure, attempts exhausted,
                                                    non-retryable error, or rescue of a run that
                                                    was alone in its worker with attempts
                                                    exhausted (the job keeps killing its worker)
    running    -> cancelled                         cancellation observed by the worker
    blocked | scheduled | queued | retrying -> cancelled     cancel
    dead | cancelled -> queued                      requeue (from the dead-letter queue)
    dead | cancelled -> blocked                     revived with the requeue of the parent
                                                    whose failure ended it

Terminal states (succeeded, dead, cancelled) change only through an explicit requeue of a dead
or cancelled job; a succeeded job never changes again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.app import Conveyor


class JobState(enum.StrEnum):
    BLOCKED = "blocked"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_live(self) -> bool:
        return self not in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})
LIVE_STATES = frozenset(JobState) - TERMINAL_STATES
CANCELLABLE_STATES = frozenset(
    {JobState.BLOCKED, JobState.SCHEDULED, JobState.QUEUED, JobState.RETRYING}
)
REQUEUEABLE_STATES = frozenset({JobState.DEAD, JobState.CANCELLED})

ALLOWED_TRANSITIONS: dict[JobState | None, frozenset[JobState]] = {
    None: frozenset(
        {
            JobState.BLOCKED,
            JobState.SCHEDULED,
            JobState.QUEUED,
            JobState.CANCELLED,
            JobState.DEAD,
        }
    ),
    JobState.BLOCKED: frozenset(
        {JobState.QUEUED, JobState.SCHEDULED, JobState.CANCELLED, JobState.DEAD}
    ),
    JobState.SCHEDULED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.RETRYING: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.RETRYING,
            JobState.QUEUED,
            JobState.DEAD,
            JobState.CANCELLED,
        }
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.DEAD: frozenset({JobState.QUEUED, JobState.BLOCKED}),
    JobState.CANCELLED: frozenset({JobState.QUEUED, JobState.BLOCKED}),
}


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


@dataclass(slots=True)
class JobError:
    """One failed attempt."""

    attempt: int
    type: str
    message: str
    traceback: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobError:
        return cls(
            attempt=int(data.get("attempt", 0)),
            type=str(data.get("type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
            at=float(data.get("at", 0.0)),
        )


@dataclass(slots=True)
class Job:
    """A snapshot of one job as stored. Times are UNIX seconds (UTC).

    Not frozen on purpose: a frozen dataclass costs ten times as much to build, and the bulk
    enqueue path builds one per job. Changing a snapshot changes nothing in the database.
    """

    id: int
    task: str
    queue: str
    state: JobState
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    run_at: float
    attempts: int
    max_attempts: int
    created_at: float
    idempotency_key: str | None = None
    lost_runs: int = 0
    result: Any = None
    errors: list[JobError] = field(default_factory=list)
    dead_reason: str | None = None
    timeout: float | None = None
    progress: Any = None
    checkpoint: Any = None
    cancel_requested: bool = False
    #: Its worker died while it ran beside other jobs: it runs alone until it returns (see
    #: ``Backend.claim_suspect``).
    suspect: bool = False
    worker_id: str | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: Parents not yet ended, while the job is blocked (see conveyor.workflows).
    pending_parents: int = 0
    #: The parent whose failure ended this job (its on_parent_failure policy), if one did.
    stopped_by: int | None = None
    workflow_id: str | None = None
    #: The job this one's failure was escalated to, and the job this one escalates.
    escalated_to: int | None = None
    escalated_from: int | None = None
    #: The app that returned this snapshot, for ``wait``; not part of the record.
    _app: Conveyor | None = field(default=None, repr=False, compare=False)

    def __reduce__(self) -> tuple[type[Job], tuple[Any, ...]]:
        # The app (connections, locks) does not travel with a pickled job.
        return (type(self), tuple(getattr(self, f.name) for f in fields(self) if f.name != "_app"))

    def wait(self, timeout: float | None = None) -> Any:
        """Wait until the job ends and return its result (``app.result(job.id, timeout=)``).

        Raises JobDead or JobWasCancelled (both JobFailed, carrying the job, its state,
        ``dead_reason`` and ``last_error``) if it ended without one, and ResultTimeout (a
        TimeoutError) if it has not ended within ``timeout`` seconds (None: no limit)."""
        return self._owner().result(self.id, timeout=timeout)

    async def wait_async(self, timeout: float | None = None) -> Any:
        """``wait`` from async code."""
        return await self._owner().result_async(self.id, timeout=timeout)

    def _owner(self) -> Conveyor:
        if self._app is None:
            from conveyor.errors import ConfigurationError

            raise ConfigurationError(
                f"job {self.id} was not returned by an app (enqueue, get_job ...): "
                "wait with app.result(job_id) instead"
            )
        return self._app

    @property
    def last_error(self) -> JobError | None:
        return self.errors[-1] if self.errors else None

    @property
    def created(self) -> datetime:
        created = _utc(self.created_at)
        assert created is not None
        return created

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, for the CLI and the HTTP API."""
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "state": self.state.value,
            "args": self.args,
            "kwargs": self.kwargs,
            "priority": self.priority,
            "run_at": self.run_at,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "lost_runs": self.lost_runs,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "errors": [e.to_dict() for e in self.errors],
            "dead_reason": self.dead_reason,
            "timeout": self.timeout,
            "progress": self.progress,
            "checkpoint": self.checkpoint,
            "cancel_requested": self.cancel_requested,
            "suspect": self.suspect,
            "worker_id": self.worker_id,
            "lease_expires_at": self.lease_expires_at,
            "pending_parents": self.pending_parents,
            "stopped_by": self.stopped_by,
            "workflow_id": self.workflow_id,
            "escalated_to": self.escalated_to,
            "escalated_from": self.escalated_from,
        }
