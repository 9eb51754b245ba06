"""The application of the busy-fleet suspect test: ``conveyor worker --app
tests.chaos.busy_app:app``. Its database and settings come from CONVEYOR_* variables.

``busy.feed`` enqueues its own replacement on every run until the file named by BUSY_STOP
exists: a backlog that never runs out, so no worker ever goes idle. ``busy.mark`` appends its
job id to the file named by BUSY_RUNS on every run.
"""

from __future__ import annotations

import os
import time

from conveyor import Conveyor, JobContext

RUNS_ENV = "BUSY_RUNS"
STOP_ENV = "BUSY_STOP"


#: Each feed job's run (seconds): long enough that the prefetched jobs outlast any delay of the
#: worker's event loop between two claims, so the worker never holds nothing by chance.
FEED_RUN = 0.02


def feed() -> None:
    time.sleep(FEED_RUN)
    if not os.path.exists(os.environ[STOP_ENV]):
        app.get_task("busy.feed").enqueue()


def mark(ctx: JobContext) -> None:
    # One short O_APPEND write a run: whole lines, whatever the processes do at once.
    fd = os.open(os.environ[RUNS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{ctx.job_id}\n".encode())
    finally:
        os.close(fd)


def register(app: Conveyor) -> Conveyor:
    app.task(name="busy.feed")(feed)
    app.task(name="busy.mark", pass_context=True)(mark)
    return app


app = register(Conveyor())
