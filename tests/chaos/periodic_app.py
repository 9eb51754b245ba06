"""A worker of an app with one periodic job a second, for tests/chaos/test_periodic.py:
``python -m tests.chaos.periodic_app``. The database and settings come from CONVEYOR_*
variables; logs go to stderr, where the test reads which worker runs maintenance."""

from __future__ import annotations

import logging
import os

from conveyor import Conveyor
from conveyor.worker import scheduler

#: Seconds this worker waits before trying a tick while another holds maintenance: 0 makes it
#: race the holder for every tick (then only the database keeps each tick to one job).
STANDBY_ENV = "CHAOS_SCHEDULER_STANDBY"

app = Conveyor()


@app.periodic(every=1, name="beat")
@app.task(name="chaos.beat")
def beat(scheduled_at: str) -> None:
    return None


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CHAOS_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s pid={os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    if os.environ.get(STANDBY_ENV):
        scheduler.STANDBY = float(os.environ[STANDBY_ENV])
    try:
        app.worker(concurrency=2).run()
    finally:
        app.close()


if __name__ == "__main__":
    main()
