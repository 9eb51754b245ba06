"""The job context handed to tasks declared with ``pass_context=True``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import payload
from conveyor.errors import JobCancelled, LeaseLost

if TYPE_CHECKING:
    from conveyor.backends.base import Backend, ClaimedJob


class JobContext:
    """What a running task may know and do about its own run.

    ``progress`` and ``checkpoint`` are fenced writes: if this worker lost the run they raise
    LeaseLost, and the task should stop. ``last_checkpoint`` is what an earlier attempt saved.
    """

    def __init__(self, job: ClaimedJob, backend: Backend, worker_id: str) -> None:
        self.job_id = job.id
        self.task = job.task
        self.queue = job.queue
        self.attempt = job.attempt
        self.max_attempts = job.max_attempts
        self.worker_id = worker_id
        self.last_checkpoint: Any = job.checkpoint
        self._token = job.lease_token
        self._backend = backend
        # Plain flags, not threading.Events: set once by the worker, read by the task's thread;
        # an attribute store is atomic, and an Event per job is a measurable cost at 10k jobs/s.
        self._cancelled = False
        self._lost = False
        self.saved_checkpoint_json: str | None = None

    def __repr__(self) -> str:
        return f"<JobContext job={self.job_id} attempt={self.attempt}/{self.max_attempts}>"

    @property
    def cancelled(self) -> bool:
        """True once someone asked to cancel this job."""
        return self._cancelled

    @property
    def lost(self) -> bool:
        """True once this worker learned that it no longer owns the run."""
        return self._lost

    @property
    def parent_results(self) -> dict[int, Any]:
        """The results of this job's parents that succeeded, by parent id (``depends_on``,
        chains and chords: see conveyor.workflows). Read from the database on first use; a
        parent's result is kept while a child of its is waiting, whatever the retention."""
        return {p: result for p, (state, result) in self._parents().items() if state == "succeeded"}

    @property
    def parent_states(self) -> dict[int, str]:
        """The state of each parent, by id: with ``on_parent_failure="run"`` a job runs after
        parents that ended dead or cancelled, and sees which here."""
        return {p: state for p, (state, _) in self._parents().items()}

    def _parents(self) -> dict[int, tuple[str, Any]]:
        cached: dict[int, tuple[str, Any]] | None = getattr(self, "_parent_cache", None)
        if cached is None:
            cached = self._load_parents(None)
            self._parent_cache = cached
        return cached

    def _load_parents(self, _: Any) -> dict[int, tuple[str, Any]]:
        parents = self._backend.dependencies(self.job_id).parents
        return {p: (state.value, result) for p, state, result in parents}

    @property
    def escalation(self) -> dict[str, Any] | None:
        """For a job enqueued by an escalation rule (conveyor.workflows.escalation), what
        happened to the job it replaces: {"job_id", "task", "attempts", "reason", "error"}
        (the last error as a dict); None for any other job."""
        return self._load_escalation(None)

    def _load_escalation(self, _: Any) -> dict[str, Any] | None:
        origin_id = self._backend.get(self.job_id).escalated_from
        if origin_id is None:
            return None
        origin = self._backend.get(origin_id)
        return {
            "job_id": origin.id,
            "task": origin.task,
            "attempts": origin.attempts,
            "reason": origin.dead_reason,
            "error": None if origin.last_error is None else origin.last_error.to_dict(),
        }

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def progress(self, value: float | str | dict[str, Any]) -> None:
        """Record progress: a fraction in [0, 1], a message, or a JSON object."""
        self._save(payload.dumps(value, "progress"), None)

    def checkpoint(self, state: Any) -> None:
        """Persist ``state``; the next attempt (after a crash, retry or shutdown) gets it back
        as ``ctx.last_checkpoint``."""
        encoded = payload.dumps(state, "checkpoint")
        self._save(None, encoded)
        self.saved_checkpoint_json = encoded

    def _save(self, progress_json: str | None, checkpoint_json: str | None) -> None:
        if self.lost:
            raise LeaseLost(f"job {self.job_id}: this worker no longer owns the run")
        if not self._backend.save_progress(
            self.job_id, self._token, progress_json, checkpoint_json
        ):
            self._lost = True
            raise LeaseLost(f"job {self.job_id}: this worker no longer owns the run")

    # --- set by the worker ----------------------------------------------------------------

    def _mark_cancelled(self) -> None:
        self._cancelled = True

    def _mark_lost(self) -> None:
        self._lost = True
