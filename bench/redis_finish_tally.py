"""What tallying the per-minute aggregates costs the Redis finish script: server time per job of
finish.lua as shipped (it tallies each run it ends, lua/tally.lua) against the same script with
the tally made a no-op, alternated batch by batch on a private redis-server (its INFO
commandstats counts only our calls: the time its one thread spent in them), beside the claim
script's cost per job measured in the same rounds (the ceiling's other half: a job costs a
claim and a finish).

    .venv/bin/python bench/redis_finish_tally.py [--jobs 5000] [--rounds 5] [--batch 100]

The no-op variant still reads the three fields the tally needs (task, started_at, run_at) in the
success path's HMGET: the difference is the tally's own work, per job and per batch.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from typing import Any, cast

import redis

from common import machine
from conveyor.backends import open_backend
from conveyor.backends.base import NewJob, Outcome, OutcomeKind
from conveyor.backends.redis.backend import RedisBackend
from conveyor.backends.redis.scripts import script_text
from conveyor.settings import Settings

#: Put after tally.lua's code: its functions then do nothing (the locals are reassigned).
_NO_TALLY = "tally_run = function() end\ntally_flush = function() end\n"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _evalsha_usec(client: redis.Redis) -> float:
    stats = cast("dict[str, Any]", client.info("commandstats"))
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))


def _round(
    backend: RedisBackend,
    client: redis.Redis,
    variants: list[Any],
    jobs: int,
    batch: int,
    figures: dict[str, list[float]],
) -> None:
    """Enqueue, claim and finish ``jobs`` jobs, the batches finished by each of ``variants``
    (name, script) in turn, so that a busy spell of the machine falls on all alike; appends the
    server µs per job of every claim and finish batch to ``figures``."""
    scripts = backend._scripts
    for start in range(0, jobs, 1000):
        backend.enqueue_many(
            [NewJob("bench.t", "default", "[]", "{}") for _ in range(min(1000, jobs - start))]
        )
    turn = 0
    while True:
        before = _evalsha_usec(client)
        runs = backend.claim("bench", None, batch, 60.0)
        if not runs:
            break
        middle = _evalsha_usec(client)
        name, script = variants[turn % len(variants)]
        turn += 1
        scripts._scripts["finish"] = script
        backend.finish_many(
            [Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED, result_json="1") for r in runs]
        )
        figures[name].append((_evalsha_usec(client) - middle) / len(runs))
        figures["claim"].append((middle - before) / len(runs))
    backend.prune(older_than=-1.0, batch=jobs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="conveyor-bench-")
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            folder,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        backend = cast("RedisBackend", open_backend(Settings(url=url)))
        scripts = backend._scripts
        scripts.run("finish", None, "[]")  # registered: the shipped finish script
        shipped = scripts._scripts["finish"]
        # The variant: tally.lua's functions reassigned right after it, before finish.lua.
        text = script_text("finish")
        cut = text.index("\n", text.index("tallies = {}\nend", text.index("tally_flush()"))) + 1
        plain = client.register_script(text[:cut] + _NO_TALLY + text[cut:])
        figures: dict[str, list[float]] = {"tally": [], "no tally": [], "claim": []}
        for i in range(args.rounds):
            # Each round starts with the other variant.
            variants = [("tally", shipped), ("no tally", plain)][:: 1 if i % 2 == 0 else -1]
            _round(backend, client, variants, args.jobs, args.batch, figures)
        backend.close()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{machine()}; {args.jobs} jobs x {args.rounds} rounds, batches of {args.batch}")
    for name, values in figures.items():
        print(
            f"{name:>8}: {statistics.median(values):.1f} µs of server time per job, median of "
            f"{len(values)} batches (lowest {min(values):.1f})"
        )
    ratio = statistics.median(figures["tally"]) / statistics.median(figures["no tally"])
    print(f"finish with tally / without: {ratio:.3f}")


if __name__ == "__main__":
    main()
