"""Bulk-enqueue forever, logging every batch that returned: ``python -m tests.chaos.enqueuer``.

Arguments: the log file and the batch size. The URL and synchronous mode come from CONVEYOR_*
variables. After each ``enqueue_many`` returns, the batch's ids are appended to the log as one
JSON line and fsynced, so the log lists only jobs whose enqueue had returned. The test kills this
process with SIGKILL at a random moment.
"""

from __future__ import annotations

import json
import os
import sys

from tests.worker.sample_app import build_app

#: A bound, in case the test that should kill this process does not.
MAX_BATCHES = 2000


def main() -> None:
    log_path, batch = sys.argv[1], int(sys.argv[2])
    app = build_app()
    quick = app.get_task("sample.quick")
    app.backend  # open (and check) the file before announcing readiness  # noqa: B018
    print(f"enqueuer ready synchronous={app.settings.sqlite_synchronous}", file=sys.stderr)
    sys.stderr.flush()
    with open(log_path, "a", encoding="utf-8") as log:
        for number in range(MAX_BATCHES):
            jobs = app.enqueue_many([quick.job(number * batch + n) for n in range(batch)])
            log.write(json.dumps([job.id for job in jobs]) + "\n")
            log.flush()
            os.fsync(log.fileno())
    app.close()


if __name__ == "__main__":
    main()
