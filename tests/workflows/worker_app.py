"""The worker application of the workflow process tests, on either engine (CONVEYOR_URL and
CONVEYOR_POSTGRES_SCHEMA); effects go to per-process files (tests/postgres/worker_app.py)."""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

from conveyor import Conveyor, JobContext
from tests.postgres.worker_app import record


def step(ctx: JobContext, n: int, release: str) -> int:
    """Record "start", wait for the ``release`` file (if named), record "done"; return ``n``
    plus the results of its parents."""
    record("start", ctx)
    while release and not os.path.exists(release):
        time.sleep(0.02)
    record("done", ctx)
    return n + int(sum(ctx.parent_results.values()))


def build_app(url: str | None = None, **overrides: Any) -> Conveyor:
    app = Conveyor(url, **overrides)
    app.task(name="wf.step", pass_context=True, max_attempts=5)(step)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=4)
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s pid={os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    app = build_app()
    try:
        app.worker(concurrency=options.concurrency).run()
    finally:
        app.close()


if __name__ == "__main__":
    main()
