"""Enqueue jobs one call at a time until told to stop: ``python -m tests.redis_engine.producer
LOG STOP``.

The URL, key prefix and settings come from CONVEYOR_* variables. After each ``enqueue`` returns,
the job's id is appended to LOG and flushed, so LOG lists exactly the enqueues that returned. An
enqueue that raises BackendUnavailable (the server stayed away longer than the client's retries)
did not return: it is counted on stderr and the loop goes on with the same app, as a producer
would, which is how the test sees that a producer carries on by itself after a restart. The loop
ends when the file STOP exists.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from conveyor.errors import BackendUnavailable
from tests.worker.sample_app import build_app

#: A bound, in case the test that should stop this process does not.
MAX_JOBS = 20_000


def main() -> None:
    log_path, stop = sys.argv[1], Path(sys.argv[2])
    app = build_app()
    quick = app.get_task("sample.quick")
    app.backend  # connect before announcing readiness  # noqa: B018
    print("producer ready", file=sys.stderr, flush=True)
    with open(log_path, "a", encoding="utf-8") as log:
        for n in range(MAX_JOBS):
            if stop.exists():
                break
            try:
                job = quick.enqueue(n)
            except BackendUnavailable as exc:
                print(f"enqueue failed: {exc}", file=sys.stderr, flush=True)
                time.sleep(0.05)
                continue
            log.write(f"{job.id}\n")
            log.flush()
            # A steady trickle, not a flood: the worker must keep up on a shared 2-core machine.
            time.sleep(0.002)
    app.close()
    print("producer exiting normally", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
