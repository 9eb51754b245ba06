"""A PostgreSQL backend on its own TCP settings (no URL overrides), run by test_hosts.py inside
a network namespace: for each line read from stdin it makes one call and prints how it went."""

from __future__ import annotations

import logging
import sys

from conveyor.backends.postgres import PostgresBackend
from conveyor.errors import ConveyorError
from conveyor.settings import Settings


def main() -> None:
    url, schema = sys.argv[1:3]
    # The log (stderr) shows when each attempt failed, should the test fail.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings.load(env={}, url=url, postgres_schema=schema, postgres_connect_timeout=3)
    backend = PostgresBackend(settings)
    print("ready", flush=True)
    log = logging.getLogger("probe")
    for _ in sys.stdin:
        log.info("call")
        try:
            backend.stats()
            print("ok", flush=True)
        except ConveyorError as exc:
            print(f"{type(exc).__name__}: {exc}", flush=True)
        log.info("answered")
    backend.close()


if __name__ == "__main__":
    main()
