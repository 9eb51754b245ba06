"""Conveyor's enqueue on Redis beside what the bare client reaches on the same server, in the
same run, interleaved in blocks so that a slow spell of a loaded machine falls on both alike.

python bench/redis_ceiling.py [--url redis://127.0.0.1:6379/0] [--jobs 3000] [--bulk 20000]

Single: one task.enqueue per job (one EVALSHA each), and one ``await task.enqueue_async`` per
job, beside one EVALSHA per job of a minimal Lua script writing the same shape (INCR for the
id, HSET of the job's fields, ZADD to the ready index) and beside the hard ceiling of any one
call per job: a PING loop on a kept connection, the command packed once (no script, no
encoding, no redis-py call machinery).

Bulk: app.enqueue_many of ``--bulk`` jobs beside the minimal script taking 1,000 jobs per call
(variadic ZADD), and beside a bare pipeline of HSET + ZADD per job (1,000 per round trip).
The server's own rate comes from redis-benchmark (SET, 1 connection, no pipelining, then 16
deep), the most any one-connection client can reach.

Pickup: the ceiling of bench/w2_latency.py's figure, a bare consumer in another process
blocked in BLPOP while this one LPUSHes its send time ``--pickups`` times, 20 ms apart
(latency = the consumer's receive time - the send time: one hop, no claim, no thread).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any, cast
from urllib.parse import urlparse

import redis

from common import finish, fresh_app, machine, parser, percentile
from conveyor import Conveyor

#: The minimal single enqueue: an id, the job's hash, its place in the ready index.
_SINGLE = """
local id = redis.call('INCR', KEYS[1] .. ':seq')
local t = redis.call('TIME')
redis.call('HSET', KEYS[1] .. ':job:' .. id, 'id', id, 'task', ARGV[1], 'queue', ARGV[2],
  'args', ARGV[3], 'kwargs', '{}', 'priority', '0', 'run_at', t[1], 'max_attempts', '3',
  'created_at', t[1], 'state', 'queued')
redis.call('ZADD', KEYS[1] .. ':ready', 0, id)
return id
"""

#: The minimal bulk enqueue: ARGV = task, queue, then one args text per job.
_BULK = """
local n = #ARGV - 2
local first = redis.call('INCRBY', KEYS[1] .. ':seq', n) - n
local t = redis.call('TIME')
local ranks = {}
for i = 1, n do
  local id = first + i
  redis.call('HSET', KEYS[1] .. ':job:' .. id, 'id', id, 'task', ARGV[1], 'queue', ARGV[2],
    'args', ARGV[i + 2], 'kwargs', '{}', 'priority', '0', 'run_at', t[1], 'max_attempts', '3',
    'created_at', t[1], 'state', 'queued')
  ranks[#ranks + 1] = 0
  ranks[#ranks + 1] = id
end
redis.call('ZADD', KEYS[1] .. ':ready', unpack(ranks))
return first + 1
"""

_CHUNK = 1_000


class Bare:
    """The bare client (redis-py with hiredis), writing under a prefix of its own."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = f"{{ceiling:{secrets.token_hex(4)}}}"
        self.single = self.client.register_script(_SINGLE)
        self.bulk = self.client.register_script(_BULK)
        self.seq = 0

    def one(self, n: int) -> None:
        self.single(keys=[self.prefix], args=["noop", "default", f"[{n}]"])

    def pings(self, count: int) -> None:
        connection: Any = self.client.connection_pool.get_connection()
        try:
            packed = connection.pack_command("PING")
            for _ in range(count):
                connection.send_packed_command(packed)
                connection.read_response()
        finally:
            self.client.connection_pool.release(connection)

    def script_many(self, count: int) -> None:
        for start in range(0, count, _CHUNK):
            jobs = [f"[{n}]" for n in range(start, min(count, start + _CHUNK))]
            self.bulk(keys=[self.prefix], args=["noop", "default", *jobs])

    def pipeline_many(self, count: int) -> None:
        now = str(time.time())
        for start in range(0, count, _CHUNK):
            with self.client.pipeline(transaction=False) as pipe:
                for n in range(start, min(count, start + _CHUNK)):
                    self.seq += 1
                    pipe.hset(
                        f"{self.prefix}:job:{self.seq}",
                        mapping={
                            "id": self.seq,
                            "task": "noop",
                            "queue": "default",
                            "args": f"[{n}]",
                            "kwargs": "{}",
                            "priority": "0",
                            "run_at": now,
                            "max_attempts": "3",
                            "created_at": now,
                            "state": "queued",
                        },
                    )
                    pipe.zadd(f"{self.prefix}:ready", {str(self.seq): 0})
                pipe.execute()

    def clear(self) -> None:
        pattern = self.prefix.replace("{", "\\{").replace("}", "\\}") + ":*"
        keys = list(self.client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            self.client.delete(*keys[start : start + 1000])

    def close(self) -> None:
        self.clear()
        self.client.close()


def rate(calls: int, work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return calls / (time.perf_counter() - start)


def server_rate(url: str) -> tuple[float, float] | None:
    """redis-benchmark's SET rate, one connection, unpipelined then 16 deep."""
    if shutil.which("redis-benchmark") is None:
        return None
    where = urlparse(url)
    found = []
    for depth in ("1", "16"):
        out = subprocess.run(
            [
                "redis-benchmark",
                "-h",
                where.hostname or "127.0.0.1",
                "-p",
                str(where.port or 6379),
                "-c",
                "1",
                "-n",
                "20000",
                "-P",
                depth,
                "-t",
                "set",
                "-q",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # "SET: 12345.67 requests per second, p50=..." (a \r-separated progress line first)
        line = out.replace("\r", "\n").strip().splitlines()[-1]
        found.append(float(line.split(":")[1].split()[0]))
    return found[0], found[1]


#: The bare consumer: BLPOP a send time, push back the latency in ms, until told "stop".
_CONSUMER = """
import sys, time, redis
r = redis.Redis.from_url(sys.argv[1], decode_responses=True)
inbox, outbox = sys.argv[2], sys.argv[3]
r.rpush(outbox, "ready")
while True:
    sent = r.blpop([inbox], 0)[1]
    if sent == "stop":
        break
    r.rpush(outbox, (time.time() - float(sent)) * 1000)
"""


def pickup_ceiling(url: str, count: int, gap: float = 0.02) -> list[float]:
    """Milliseconds from LPUSH to a blocked BLPOP's return in another process, ``count``
    times."""
    client = redis.Redis.from_url(url, decode_responses=True)
    inbox, outbox = f"ceiling:{secrets.token_hex(4)}:in", f"ceiling:{secrets.token_hex(4)}:out"
    child = subprocess.Popen([sys.executable, "-c", _CONSUMER, url, inbox, outbox])
    try:
        client.blpop([outbox], 30)
        for _ in range(count):
            client.lpush(inbox, repr(time.time()))
            time.sleep(gap)
        client.lpush(inbox, "stop")
        child.wait(30)
        found = cast("list[str]", client.lrange(outbox, 0, -1))
        return [float(ms) for ms in found]
    finally:
        child.kill()
        client.delete(inbox, outbox)
        client.close()


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=3_000, help="single enqueues per measure")
    p.add_argument("--bulk", type=int, default=20_000, help="jobs per bulk measure")
    p.add_argument("--block", type=int, default=250, help="single calls per interleaved block")
    p.add_argument("--pickups", type=int, default=200, help="pickups of the BLPOP ceiling")
    args = p.parse_args()
    url = args.url or "redis://127.0.0.1:6379/0"
    app, _folder = fresh_app(url, args.synchronous)
    bare = Bare(url)
    try:
        figures = measure(app, bare, args.jobs, args.bulk, args.block, args.runs)
    finally:
        bare.close()
        finish(app)
    benchmark = server_rate(url)
    pickups = pickup_ceiling(url, args.pickups)
    print(f"Redis enqueue beside its ceiling, {machine()}, {url}")
    for name, conveyor_name in (
        ("single", "conveyor single"),
        ("single", "conveyor single async"),
        ("bulk", "conveyor bulk"),
    ):
        got = statistics.median(figures[conveyor_name])
        for ceiling in [c for c in figures if c.startswith(f"bare {name}")]:
            top = statistics.median(figures[ceiling])
            print(
                f"  {conveyor_name:<21} {got:>9,.0f} jobs/s   {ceiling:<22} {top:>9,.0f} jobs/s"
                f"   ratio {got / top:.2f}"
            )
    print(
        f"  PING loop, 1 connection (the ceiling of one call per job): "
        f"{statistics.median(figures['ping loop']):,.0f}/s"
    )
    if benchmark is not None:
        print(
            f"  redis-benchmark SET, 1 connection: {benchmark[0]:,.0f}/s unpipelined, "
            f"{benchmark[1]:,.0f}/s 16 deep"
        )
    print(
        f"  pickup ceiling (LPUSH -> BLPOP in another process, {len(pickups)} times 20 ms apart):"
        f" p50 {percentile(pickups, 50):.2f} ms, p99 {percentile(pickups, 99):.2f} ms"
    )


def measure(
    app: Conveyor, bare: Bare, jobs: int, bulk: int, block: int, runs: int
) -> dict[str, list[float]]:
    @app.task(name="noop")
    def noop(n: int) -> None:
        return None

    async def enqueue_async(first: int, count: int) -> float:
        start = time.perf_counter()
        for n in range(first, first + count):
            await noop.enqueue_async(n)
        return time.perf_counter() - start

    loop = asyncio.new_event_loop()
    noop.enqueue(0)  # connect and load the scripts outside the timing
    loop.run_until_complete(enqueue_async(0, 1))
    bare.one(0)
    bare.script_many(1)
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for _ in range(runs):
        single = dict.fromkeys(
            ("conveyor single", "conveyor single async", "bare single (script)", "ping loop"), 0.0
        )
        for first in range(0, jobs, block):
            count = min(block, jobs - first)
            start = time.perf_counter()
            bare.pings(count)
            single["ping loop"] += time.perf_counter() - start
            start = time.perf_counter()
            for n in range(first, first + count):
                bare.one(n)
            single["bare single (script)"] += time.perf_counter() - start
            start = time.perf_counter()
            for n in range(first, first + count):
                noop.enqueue(n)
            single["conveyor single"] += time.perf_counter() - start
            single["conveyor single async"] += loop.run_until_complete(enqueue_async(first, count))
        for name, spent in single.items():
            add(name, jobs / spent)
        specs = [noop.job(n) for n in range(bulk)]
        add("bare bulk (script)", rate(bulk, lambda: bare.script_many(bulk)))
        add("conveyor bulk", rate(bulk, partial(app.enqueue_many, specs)))
        add("bare bulk (pipeline)", rate(bulk, lambda: bare.pipeline_many(bulk)))
        bare.clear()
    loop.close()
    return figures


if __name__ == "__main__":
    main()
