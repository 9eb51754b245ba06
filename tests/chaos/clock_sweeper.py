"""``python -m tests.chaos.clock_sweeper URL``: one maintenance sweep, as any process on the
machine would run it, with the clocks it finds (no injection): rescue of expired leases, then
of the jobs of workers silent for too long. Prints what it rescued as one JSON line."""

from __future__ import annotations

import json
import sys

from conveyor.backends import open_backend
from conveyor.settings import Settings


def main(url: str) -> None:
    backend = open_backend(Settings.load(url=url), check_schema=False)
    try:
        rescued = backend.rescue_expired()
        reaped = backend.reap_dead_workers("clock-sweeper", reachable_since=backend.now() - 60)
    finally:
        backend.close()
    print(
        json.dumps(
            {
                "rescued": [*rescued.requeued, *rescued.dead, *rescued.cancelled],
                "dead_workers": reaped.workers,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
