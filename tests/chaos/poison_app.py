"""The application of the poison-isolation fault test: ``conveyor worker --app
tests.chaos.poison_app:app``. Its database and settings come from CONVEYOR_* variables.

``poison.kill`` ends its process with ``os._exit(137)`` on every attempt: on a thread, that is
the whole worker process and every job it holds; ``poison.kill_alone`` does the same in a child
process of its own (``isolation="process"``). ``poison.work`` appends its job id to the file
named by POISON_RUNS on every run, so the test counts runs apart from the queue's bookkeeping.
"""

from __future__ import annotations

import os

from conveyor import Conveyor, Fixed, JobContext

RUNS_ENV = "POISON_RUNS"


def work(ctx: JobContext) -> int:
    # One short O_APPEND write a run: whole lines, whatever the processes do at once.
    fd = os.open(os.environ[RUNS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{ctx.job_id}\n".encode())
    finally:
        os.close(fd)
    return ctx.job_id


def kill() -> None:
    os._exit(137)


def kill_alone() -> None:
    os._exit(137)


def register(app: Conveyor) -> Conveyor:
    app.task(name="poison.work", pass_context=True, max_attempts=3)(work)
    app.task(name="poison.kill", max_attempts=3, retry=Fixed(0))(kill)
    app.task(name="poison.kill_alone", max_attempts=3, retry=Fixed(0), isolation="process")(
        kill_alone
    )
    return app


app = register(Conveyor())
