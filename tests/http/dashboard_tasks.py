"""The tasks of the dashboard tests, and a database holding a job in every state.

A worker process imports this module (``--app tests.http.dashboard_tasks:app``) in the
browser tests; the in-process tests call ``register`` on their own app."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

from conveyor import Conveyor, Fixed
from conveyor.job import JobState
from conveyor.worker_info import WorkerRegistration

#: A task name that is markup: every page must show it as text.
SCRIPT_TASK = "<script>alert('owned')</script>"
#: An error message that is markup too.
MARKUP_ERROR = "<img src=x onerror=alert('owned')>"
KEY = "order-42"
#: A breaker, a schedule and a queue named in markup, for the flow-control pages.
BREAKER = "partner-<b>api</b>"
SCHEDULE = "<em>yearly</em>"
PARTNER_TASK = "call_partner"


def register(app: Conveyor) -> None:
    @app.task(name="add", queue="math", max_attempts=1)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="explode", max_attempts=1)
    def explode(reason: str = "boom") -> None:
        raise RuntimeError(reason)

    @app.task(name="flaky", max_attempts=3, retry=Fixed(3600))
    def flaky() -> None:
        raise ValueError("not yet")

    @app.task(name=SCRIPT_TASK, queue="held")
    def script() -> None:
        return None

    app.breaker(BREAKER, failures=3, window=60, cooldown=30)

    # Once a year (and a missed tick is skipped): no test sees it enqueue a job.
    @app.periodic(cron="0 0 1 1 *", name=SCHEDULE)
    @app.task(name=PARTNER_TASK, queue="partner", breaker=BREAKER)
    def call_partner() -> None:
        return None

    @app.task(name="hold", queue="slow")
    async def hold(release: str) -> str:
        """Runs until the file ``release`` exists (or it is cancelled)."""
        while not os.path.exists(release):
            await asyncio.sleep(0.05)
        return "released"


def populate(app: Conveyor, *, running: bool = True) -> dict[JobState, int]:
    """One job in every state (``running``: claimed by a registered worker of this process,
    which runs nothing, with progress 0.25 and a checkpoint), returning their ids. The task of
    the queued one is SCRIPT_TASK; the dead one's error is MARKUP_ERROR."""
    succeeded = app.enqueue("add", [1, 2])
    dead = app.enqueue("explode", kwargs={"reason": MARKUP_ERROR})
    retrying = app.enqueue("flaky")
    app.run_worker(queues=["default", "math"], concurrency=1, burst=True)
    queued = app.enqueue(SCRIPT_TASK, idempotency_key=KEY)
    scheduled = app.enqueue("add", [2, 3], delay=3600)
    blocked = app.enqueue("add", [3, 4], depends_on=[scheduled])
    cancelled = app.enqueue("add", [4, 5], delay=3600)
    app.cancel(cancelled.id)
    ids = {
        JobState.SUCCEEDED: succeeded.id,
        JobState.DEAD: dead.id,
        JobState.RETRYING: retrying.id,
        JobState.QUEUED: queued.id,
        JobState.SCHEDULED: scheduled.id,
        JobState.BLOCKED: blocked.id,
        JobState.CANCELLED: cancelled.id,
    }
    if running:
        held = app.enqueue("hold", ["/nonexistent"])
        app.backend.register_worker(
            WorkerRegistration(
                id="test-worker",
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=("slow",),
                concurrency=1,
                beat_interval=3600.0,
                dead_after=7200.0,
            )
        )
        (claimed,) = app.backend.claim("test-worker", ["slow"], 1, 3600.0)
        assert claimed.id == held.id
        app.backend.save_progress(
            held.id, claimed.lease_token, json.dumps(0.25), json.dumps({"done": ["<i>a</i>"]})
        )
        ids[JobState.RUNNING] = held.id
    for state, job_id in ids.items():
        assert app.get_job(job_id).state is state, (state, app.get_job(job_id).state)
    return ids


def wait_for(condition: object, timeout: float = 30.0) -> None:
    """Poll ``condition()`` (a callable) until it is true."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


app = Conveyor()
register(app)
