"""W4's cost per job on Redis, on an empty server and on one holding millions of finished jobs,
without a run of ten minutes: a worker process drains --jobs no-op jobs enqueued as W4 does,
then --fill finished jobs are written straight into the server (bench/w4_fill.lua: the fields
and index entries a finished job of a real run has), and the same drain runs again; twice.

For each round it prints the server's CPU per job (its main thread's, from INFO cpu), the
time spent in scripts per job (INFO commandstats) with the commands they spent it on, the
worker process's CPU per job (user + system, from /proc) and the wall-clock rate. The server
must be a private one (the tool resets its statistics):

    redis-server --port 6401 --save "" --appendonly no --daemonize yes
    python bench/w4_cost.py --url redis://127.0.0.1:6401/0 --fill 3000000
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, cast

import redis

from bench_app import noop
from common import engine, finish, fresh_app, machine, parser, spawn_worker
from conveyor import Conveyor
from conveyor.backends.redis.connection import key_prefix
from w4_steady import waiting_counter

HERE = Path(__file__).resolve().parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_seconds(client: Any) -> float:
    """CPU seconds of the server's main thread (user + system)."""
    cpu = cast("dict[str, float]", client.info("cpu"))
    return cpu["used_cpu_user_main_thread"] + cpu["used_cpu_sys_main_thread"]


def drain(app: Conveyor, client: Any, worker: int, jobs: int, backlog: int) -> dict[str, Any]:
    """Enqueue ``jobs`` in batches of at most 1,000, keeping about ``backlog`` waiting as W4
    does, until all are done; the server's and the worker's costs of it."""
    task = app.task(name="noop")(noop.fn)
    waiting = waiting_counter(app)
    client.config_resetstat()
    server_cpu = server_seconds(client)
    worker_cpu = cpu_seconds(worker)
    start = time.monotonic()
    enqueued = 0
    while True:
        pending = waiting()
        if enqueued >= jobs and pending == 0:
            break
        if enqueued < jobs and pending < backlog:
            count = min(backlog - pending, 1_000, jobs - enqueued)
            app.enqueue_many([task.job() for _ in range(count)])
            enqueued += count
        else:
            time.sleep(0.02)
    elapsed = time.monotonic() - start
    worker_cpu = cpu_seconds(worker) - worker_cpu
    server_cpu = server_seconds(client) - server_cpu
    stats = cast("dict[str, dict[str, float]]", client.info("commandstats"))
    scripts = stats.get("cmdstat_evalsha", {}).get("usec", 0.0)
    commands = {
        name.removeprefix("cmdstat_"): stat["usec"] / jobs
        for name, stat in stats.items()
        if name != "cmdstat_evalsha"
    }
    return {
        "rate": jobs / elapsed,
        "server_us": server_cpu * 1e6 / jobs,
        "scripts_us": scripts / jobs,
        "worker_us": worker_cpu * 1e6 / jobs,
        "commands": commands,
        "memory": cast("dict[str, Any]", client.info("memory"))["used_memory_human"],
    }


def show(label: str, r: dict[str, Any]) -> None:
    top = sorted(r["commands"].items(), key=lambda item: -item[1])[:6]
    commands = ", ".join(f"{name} {us:.1f}" for name, us in top)
    print(
        f"  {label}: {r['rate']:,.0f} jobs/s, server CPU {r['server_us']:.1f} us/job, "
        f"in scripts {r['scripts_us']:.1f} us/job (of which {commands}), "
        f"worker CPU {r['worker_us']:.1f} us/job, used_memory {r['memory']}",
        flush=True,
    )


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=200_000, help="jobs drained per measurement")
    p.add_argument("--fill", type=int, default=3_000_000, help="finished jobs written between")
    p.add_argument("--backlog", type=int, default=5_000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--rounds", type=int, default=2, help="fills (each followed by a drain)")
    args = p.parse_args()
    app, _folder = fresh_app(args.url, args.synchronous)
    client = redis.Redis.from_url(app.settings.url)
    worker = spawn_worker(app, args.concurrency)
    print(
        f"W4 cost per job, {machine()}, {engine(app)}, 1 worker process, concurrency "
        f"{args.concurrency}, {args.jobs:,} jobs per measurement",
        flush=True,
    )
    fill = client.register_script((HERE / "w4_fill.lua").read_text(encoding="utf-8"))
    prefix = key_prefix(app.settings)
    try:
        drain(app, client, worker.pid, 20_000, args.backlog)  # warm-up
        show("empty", drain(app, client, worker.pid, args.jobs, args.backlog))
        model = int(cast("bytes", client.get(f"{prefix}:seq")))
        held = args.jobs + 20_000
        for _ in range(args.rounds):
            started = time.monotonic()
            for done in range(0, args.fill, 50_000):
                fill(keys=[prefix], args=[min(50_000, args.fill - done), model])
            held += args.fill
            print(f"  filled {args.fill:,} in {time.monotonic() - started:.0f} s", flush=True)
            show(f"{held:,} finished", drain(app, client, worker.pid, args.jobs, args.backlog))
    finally:
        worker.terminate()
        worker.wait(30)
        client.close()
        finish(app)


if __name__ == "__main__":
    main()
