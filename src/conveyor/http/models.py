"""The shapes of request bodies; they make the OpenAPI schema. Ranges are checked by the
library (conveyor.bounds) once a body has the right shape, so that the API and Python refuse
exactly the same values with the same messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

#: Jobs in one POST /api/jobs/batch.
MAX_BATCH = 1000
#: Ids in one bulk request.
MAX_IDS = 10_000
#: Parents of one job.
MAX_PARENTS = 1000


class JobIn(BaseModel):
    """A job to enqueue. Options left out take the task's defaults (with ``--app``), else
    Conveyor's: queue "default", priority "normal", 3 attempts."""

    model_config = ConfigDict(extra="forbid")

    task: StrictStr = Field(description="The task's registered name.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    queue: StrictStr | None = None
    priority: StrictInt | StrictStr | None = Field(
        None, description="Higher runs first: a number, or critical, high, normal, low."
    )
    delay: float | None = Field(None, description="Seconds to wait before running.")
    run_at: float | datetime | None = Field(
        None, description="Run no sooner: UNIX seconds, or an ISO 8601 time with its offset."
    )
    max_attempts: StrictInt | None = None
    timeout: float | None = Field(None, description="Seconds a run may take.")
    idempotency_key: StrictStr | None = Field(
        None,
        description="While a job holds this key, return it (200) instead of a new one (201). "
        "Also accepted as the Idempotency-Key header.",
    )
    depends_on: Annotated[list[StrictInt | StrictStr], Field(max_length=MAX_PARENTS)] | None = (
        Field(
            None,
            description="Parents: the job waits (blocked) until every one succeeded. A number "
            "is the id of a stored job; in a batch, a string is the ref of another job of the "
            "same batch.",
        )
    )
    on_parent_failure: Literal["cancel", "run", "dead", "run_only"] | None = Field(
        None,
        description="When a parent ends dead or cancelled: cancel this job (the default), run "
        "it anyway, end it dead, or run it only then (run_only: cancelled once every parent "
        "succeeded).",
    )
    workflow_id: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = Field(
        None, description="Group the job under this workflow (GET /api/workflows/{id})."
    )
    ref: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = Field(
        None,
        description="In a batch: a name for this job that depends_on of other jobs of the "
        "batch may use.",
    )

    def options(self) -> dict[str, Any]:
        """The library's options; references to jobs of a batch (strings in depends_on) are
        resolved by the caller."""
        stored = [parent for parent in self.depends_on or () if isinstance(parent, int)]
        return {
            "queue": self.queue,
            "priority": self.priority,
            "delay": self.delay,
            "run_at": self.run_at,
            "idempotency_key": self.idempotency_key,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "depends_on": stored or None,
            "on_parent_failure": self.on_parent_failure,
            "workflow_id": self.workflow_id,
        }

    def batch_refs(self) -> list[str]:
        return [parent for parent in self.depends_on or () if isinstance(parent, str)]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: Annotated[list[JobIn], Field(min_length=1, max_length=MAX_BATCH)]


class DeadSelection(BaseModel):
    """Dead jobs to requeue or discard: by ``ids``, or every dead job matching ``queue`` and
    ``task`` (``all: true``), at most ``limit`` of them, newest first."""

    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[StrictInt], Field(max_length=MAX_IDS)] | None = None
    all: StrictBool = False
    queue: StrictStr | None = None
    task: StrictStr | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=MAX_IDS)] = 1000
    reset_attempts: StrictBool = Field(
        False, description="Requeue only: count attempts from zero again."
    )


class RequeueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reset_attempts: StrictBool = False


class LimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_running: StrictInt = Field(description="Jobs of the queue running at once, at least 1.")


class StopIn(BaseModel):
    """Workers to stop gracefully: by ``ids``, or ``all: true`` for every one not dead."""

    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[StrictStr], Field(max_length=MAX_IDS)] | None = None
    all: StrictBool = False


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: float | datetime | None = Field(
        None,
        description="Resume by itself then: UNIX seconds, or an ISO 8601 time with its "
        "offset. Left out: paused until resumed.",
    )


class RateLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: StrictStr = Field(
        description="COUNT/UNIT: '100/m', '5/s', '1000/h', '10/d', '3/10s'.", max_length=100
    )


class QuietHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: StrictStr = Field(
        description="HH:MM-HH:MM of local time, several separated by commas; '22:00-06:00' "
        "crosses midnight.",
        max_length=1000,
    )
    days: StrictStr | None = Field(
        None, description="Days of the week: 'mon-fri', 'sat,sun'. Null: every day.", max_length=100
    )
    timezone: StrictStr = Field("UTC", description="An IANA time zone, e.g. 'Europe/Berlin'.")
