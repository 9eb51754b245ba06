"""Redis durability: acknowledged enqueues lost when the redis-server process is SIGKILLed, and
single-enqueue throughput with AOF ``always``, ``everysec`` and no persistence.

python bench/redis_everysec_loss.py [--trials 5] [--jobs 2000] [--runs 3]

Each configuration gets a private redis-server on a free port with a folder of its own (the
shared server at 6379 is never touched).

Loss: a thread enqueues one job per call and keeps every id whose ``enqueue`` returned; the
server is SIGKILLed at a random moment, started again on the same port and folder (it replays its
AOF), and every kept id is looked up. What this measures is a *process* crash: the kernel still
holds what Redis wrote, so even ``everysec`` loses nothing here. What it cannot measure is a
machine crash or power loss: then ``everysec`` loses what was written in the last second or so
(up to about two seconds if the disk stalls), and only ``always`` keeps every acknowledged write.

Throughput: ``--jobs`` single enqueues (one round trip each) per configuration, configurations
alternated run by run; the ceiling beside each is a bare INCR round trip on the same server.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from common import machine, parser, report
from conveyor import Conveyor
from conveyor.errors import BackendUnavailable, JobNotFound

MODES: dict[str, tuple[str, ...]] = {
    "no persistence": ("--appendonly", "no"),
    "AOF everysec": ("--appendonly", "yes", "--appendfsync", "everysec"),
    "AOF always": ("--appendonly", "yes", "--appendfsync", "always"),
}


class Server:
    """A private redis-server that can be SIGKILLed and started again on its port and folder."""

    def __init__(self, *options: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server is not installed")
        self.argv = [binary, "--bind", "127.0.0.1", "--save", "", *options]
        self.folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-redis-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*self.argv, "--port", str(self.port), "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.dbsize()  # not PING: that answers while the AOF is still loading
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.01)
        client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def loss_trial(options: tuple[str, ...]) -> tuple[int, int]:
    """Acknowledged enqueues, and how many of them are missing after a SIGKILL and restart."""
    server = Server(*options)
    server.start()
    app = Conveyor(server.url, redis_prefix="loss")

    @app.task(name="noop")
    def noop(n: int) -> None:
        return None

    noop.enqueue(0)
    acknowledged: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                acknowledged.append(noop.enqueue(n).id)
            except BackendUnavailable:
                time.sleep(0.01)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(random.uniform(0.5, 1.5))
    server.kill()
    server.start()
    stop.set()
    producer.join()
    missing = 0
    for job_id in acknowledged:
        try:
            app.get_job(job_id)
        except JobNotFound:
            missing += 1
    app.close()
    server.close()
    return len(acknowledged), missing


def enqueue_rate(server: Server, jobs: int) -> tuple[float, float]:
    """Single enqueues per second, and bare INCR round trips per second (the ceiling)."""
    app = Conveyor(server.url, redis_prefix=f"rate{random.randrange(10**9)}")

    @app.task(name="noop")
    def noop(n: int) -> None:
        return None

    noop.enqueue(0)
    start = time.perf_counter()
    for n in range(jobs):
        noop.enqueue(n)
    rate = jobs / (time.perf_counter() - start)
    app.close()
    client = redis.Redis.from_url(server.url)
    start = time.perf_counter()
    for _ in range(jobs):
        client.incr("ceiling")
    ceiling = jobs / (time.perf_counter() - start)
    client.close()
    return rate, ceiling


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--trials", type=int, default=5, help="SIGKILLs per AOF mode")
    p.add_argument("--jobs", type=int, default=2_000)
    args = p.parse_args()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Redis durability, {machine()}, Redis {redis_version()}, load average {load}")
    for name in ("AOF everysec", "AOF always"):
        results = [loss_trial(MODES[name]) for _ in range(args.trials)]
        acked = sum(a for a, _ in results)
        lost = sum(m for _, m in results)
        print(
            f"  {name}, redis-server SIGKILLed mid-enqueue ({args.trials} trials): "
            f"{lost} of {acked:,} acknowledged enqueues lost "
            f"(per trial: {', '.join(str(m) for _, m in results)})"
        )
    servers = {name: Server(*options) for name, options in MODES.items()}
    rates: dict[str, list[float]] = {name: [] for name in MODES}
    ceilings: dict[str, list[float]] = {name: [] for name in MODES}
    try:
        for server in servers.values():
            server.start()
        for _ in range(args.runs):
            for name, server in servers.items():
                rate, ceiling = enqueue_rate(server, args.jobs)
                rates[name].append(rate)
                ceilings[name].append(ceiling)
    finally:
        for server in servers.values():
            server.close()
    print(f"  single enqueue, {args.jobs} jobs per run, configurations alternated:")
    for name in MODES:
        report(f"    {name:<15} enqueue", rates[name], "jobs/s")
        report(f"    {name:<15} ceiling (bare INCR)", ceilings[name], "calls/s")


def redis_version() -> str:
    found = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return next((w.removeprefix("v=") for w in found if w.startswith("v=")), "redis ?")


if __name__ == "__main__":
    main()
