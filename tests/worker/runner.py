"""Run one worker of the sample app in this process: ``python -m tests.worker.runner``.

Settings (URL, lease, heartbeat, sweep interval) come from CONVEYOR_* variables; worker options
from the command line. Logs go to stderr with the pid, so tests can read what a worker said.
"""

from __future__ import annotations

import argparse
import logging
import os

from tests.worker.sample_app import build_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--prefetch", type=int, default=None)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--queue", action="append", dest="queues")
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s pid={os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    app = build_app()
    try:
        app.worker(
            queues=options.queues,
            concurrency=options.concurrency,
            prefetch=options.prefetch,
            burst=options.burst,
            grace=options.grace,
        ).run()
    finally:
        app.close()
    logging.getLogger("conveyor.worker").info("worker process exiting normally")


if __name__ == "__main__":
    main()
