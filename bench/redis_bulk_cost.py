"""W1's bulk enqueue on Redis in costs that a loaded machine moves little, beside the minimal
bulk script of redis_ceiling.py (1,000 jobs per call), interleaved run by run:

- server CPU per job: the run time of the server's main thread (/proc/<pid>/task/<pid>/
  schedstat, in nanoseconds), which does all the command work; the server must run on this
  machine, and serve nobody else (start a private one: the shared one serves the others);
- server usec per job: what INFO commandstats counts for EVALSHA, its "usec" before and after;
- client CPU per job: time.process_time() of this process around the call;
- jobs/s, the wall-clock figure, which a loaded machine does move.

python bench/redis_bulk_cost.py --url redis://127.0.0.1:<port>/0 [--jobs 10000] [--runs 7]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import redis

from common import finish, fresh_app, machine, parser
from conveyor.backends.redis.connection import key_prefix
from redis_ceiling import Bare

#: The keys besides the jobs' that a run of plain jobs writes to (the id counter stays).
_INDEXES = ("jobs", "ready", "ready:default", "stats", "queues")


def _server_ns(pid: int) -> int:
    """Nanoseconds the server's main thread has run so far."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0])


def _evalsha_usec(client: Any) -> int:
    found = client.info("commandstats").get("cmdstat_evalsha")
    return 0 if found is None else int(found["usec"])


def costs(client: Any, pid: int, jobs: int, work: Callable[[], Any]) -> dict[str, float]:
    """The figures of one call of ``work`` writing ``jobs`` jobs."""
    usec, server = _evalsha_usec(client), _server_ns(pid)
    cpu, start = time.process_time(), time.perf_counter()
    work()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    server, usec = _server_ns(pid) - server, _evalsha_usec(client) - usec
    return {
        "jobs/s": jobs / wall,
        "server CPU us/job": server / jobs / 1000,
        "server usec/job": usec / jobs,
        "client CPU us/job": cpu / jobs * 1e6,
    }


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000)
    p.set_defaults(runs=7)
    args = p.parse_args()
    if args.url is None:
        raise SystemExit("--url of a private redis-server on this machine is required")
    client = redis.Redis.from_url(args.url, decode_responses=True)
    pid = int(cast("dict[str, Any]", client.info("server"))["process_id"])
    app, _folder = fresh_app(args.url, args.synchronous)
    bare = Bare(args.url)
    figures: dict[str, list[dict[str, float]]] = {"conveyor": [], "minimal script": []}
    pattern = key_prefix(app.settings).replace("{", "\\{").replace("}", "\\}") + ":job:*"
    try:

        @app.task(name="noop")
        def noop() -> None:
            return None

        app.enqueue_many([noop.job() for _ in range(10)])  # connect, load the scripts
        bare.script_many(1)
        for _ in range(args.runs):
            figures["minimal script"].append(
                costs(client, pid, args.jobs, lambda: bare.script_many(args.jobs))
            )
            specs = [noop.job() for _ in range(args.jobs)]
            figures["conveyor"].append(
                costs(client, pid, args.jobs, partial(app.enqueue_many, specs))
            )
            bare.clear()
            # Each run into an empty store, as W1's and the minimal script's.
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
            client.delete(*(f"{key_prefix(app.settings)}:{name}" for name in _INDEXES))
    finally:
        bare.close()
        finish(app)
        client.close()
    print(
        f"Redis bulk enqueue of {args.jobs:,} no-op jobs, medians of {args.runs} runs, "
        f"{machine()}, {args.url}"
    )
    for name, runs in figures.items():
        line = "   ".join(
            f"{key} {statistics.median(run[key] for run in runs):,.2f}" for key in runs[0]
        )
        print(f"  {name:<15} {line}")


if __name__ == "__main__":
    main()
