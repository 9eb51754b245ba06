"""Power loss under SQLite, simulated at many moments (issue 14, point 6).

The README promises that with ``synchronous=FULL`` every commit survives a power loss, and that
with ``NORMAL`` (WAL) a power loss may roll back the last transactions only. Here enqueuers and
a worker run against a Conveyor database on a disk that can lose power (power_vfs.py: an APSW
VFS that keeps each file as of its last sync), the power goes out at a random write, sync or
truncate, the files are put back as the disk would hold them, and the file is reopened by the
real engine.

What runs for real: the file made and migrated by SQLiteBackend itself; Conveyor's own schema
and its own named queries (insert_job, promote_due, claim_any, extend_leases,
finish_succeeded_many, finish_retry, rescue_expired) with the engine's pragmas (WAL, the
synchronous mode under test), in BEGIN IMMEDIATE transactions, on two enqueuer connections and
one worker connection; the recovery by SQLite when the file is opened again, and every check
after it, through the stdlib ``sqlite3`` module and SQLiteBackend.

What is simulated: the workload runs through APSW, not through SQLiteBackend -- APSW brings its
own SQLite library, and a VFS registered there cannot serve the stdlib ``sqlite3`` module's
connections. The steps are the engine's queries in the engine's transactions, not the worker
runtime (no heartbeat process, no threads: one step after another). The WAL is checkpointed
every 50 pages instead of SQLite's default 1000, so that a short run crosses many checkpoints.
The disk model (drop, tear, keep) and what it leaves out are in power_vfs.py. ``randomblob`` is
seeded, so that every transaction can be played first on an in-memory copy: what each prefix of
the committed transactions leaves in ``conveyor_jobs`` is known, and so is the transaction under
way at the cut.

After each cut: ``PRAGMA integrity_check`` is ok, the engine opens the file and finishes every
job in it, and the jobs table is exactly what some prefix of the transactions left (no torn
transaction, no hole, so no job in a state no transaction put it in). Under FULL that prefix
holds every transaction whose commit returned; under NORMAL every transaction committed before
the last sync (a checkpoint), and the loss is reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import pytest

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.backend import MIGRATIONS, split_statements
from conveyor.backends.sqlite.connection import Q
from conveyor.settings import Settings
from tests.chaos.helpers import integrity_check
from tests.chaos.power_vfs import CutMode, Disk, PowerCut

#: Cut points per synchronous mode: each a fresh file, a random workload, a random moment.
CUTS = 50
#: The power goes out at a write, sync or truncate numbered up to this: about 150 transactions.
MAX_OPERATIONS = 2000
#: Steps of a run whose cut point was not reached: then the power goes out while idle.
MAX_STEPS = 400
LEASE = 30.0
MODES: tuple[CutMode, ...] = ("drop", "tear", "keep")

Statements = list[tuple[str, dict[str, Any]]]


def fingerprint(rows: Iterator[Any]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


JOBS = "SELECT * FROM conveyor_jobs ORDER BY id"


@dataclass
class Workload:
    """Chooses the next transaction from what the earlier ones returned (on the copy)."""

    rng: random.Random
    now: float = 1_800_000_000.0
    uptime: float = 1000.0
    #: Runs the worker holds: job id -> lease token.
    held: dict[int, str] = field(default_factory=dict)
    jobs: int = 0

    def next(self) -> tuple[str, Statements]:
        rng = self.rng
        self.now += rng.uniform(0.01, 1.0)
        self.uptime += rng.uniform(0.01, 1.0)
        boot = {"boot": "boot-1", "uptime": self.uptime}
        roll = rng.random()
        if roll < 0.4 or self.jobs == 0:
            return rng.choice(["enqueuer-1", "enqueuer-2"]), self._enqueue()
        if roll < 0.65:
            claim = {"now": self.now, "lease": LEASE, "worker_id": "w", "limit": rng.randint(1, 8)}
            return "worker", [("promote_due", {"now": self.now}), ("claim_any", claim | boot)]
        if roll < 0.75 and self.held:
            tokens = json.dumps(list(self.held.values()))
            return "worker", [
                ("extend_leases", {"now": self.now, "lease": LEASE, "tokens": tokens} | boot)
            ]
        if roll < 0.95 and self.held:
            return "worker", self._finish()
        if rng.random() < 0.5:
            self.uptime += LEASE  # the worker went quiet: its leases run out
        return "worker", [("rescue_expired", {"now": self.now, "exclude": None} | boot)]

    def _enqueue(self) -> Statements:
        statements: Statements = []
        for _ in range(self.rng.randint(1, 5)):
            self.jobs += 1
            delay = self.rng.choice([0.0, 0.0, 0.0, self.rng.uniform(0.5, 20.0)])
            job = {
                "queue": self.rng.choice(["default", "mail"]),
                "task": "tests.noop",
                "args": json.dumps([self.jobs, "x" * self.rng.randint(50, 2500)]),
                "kwargs": "{}",
                "state": "scheduled" if delay else "queued",
                "priority": self.rng.randint(0, 2),
                "run_at": self.now + delay,
                "max_attempts": 3,
                "timeout": None,
                "idempotency_key": None,
                "now": self.now,
            }
            statements.append(("insert_job", job))
        return statements

    def _finish(self) -> Statements:
        chosen = self.rng.sample(sorted(self.held), self.rng.randint(1, len(self.held)))
        statements: Statements = []
        if self.rng.random() < 0.3:
            job_id = chosen.pop()
            error = json.dumps({"type": "ValueError", "message": "no", "attempt": 1})
            retry = {
                "id": job_id,
                "token": self.held[job_id],
                "now": self.now,
                "retry_in": self.rng.uniform(0.0, 5.0),
                "error": error,
                "checkpoint": None,
            }
            statements.append(("finish_retry", retry))
        if chosen:
            outcomes = json.dumps([[i, self.held[i], json.dumps(i)] for i in chosen])
            statements.append(("finish_succeeded_many", {"now": self.now, "outcomes": outcomes}))
        return statements

    def learn(self, statements: Statements, results: list[list[tuple[Any, ...]]]) -> None:
        for (query, params), rows in zip(statements, results, strict=True):
            if query == "claim_any":
                self.held.update({row[0]: row[8] for row in rows})
            elif query == "rescue_expired":
                for row in rows:
                    self.held.pop(row[0], None)
            elif query == "finish_retry":
                self.held.pop(params["id"], None)
            elif query == "finish_succeeded_many":
                for job_id, _, _ in json.loads(params["outcomes"]):
                    self.held.pop(job_id, None)


def seeded_randomblob(connection: apsw.Connection, seed: int) -> None:
    """Lease tokens drawn from a seeded generator: the copy and the file hand out the same."""
    rng = random.Random(seed)

    def randomblob(*size: Any) -> Any:
        return rng.randbytes(int(size[0]))

    connection.create_scalar_function("randomblob", randomblob, 1)


def run(conn: apsw.Connection, statements: Statements) -> list[list[tuple[Any, ...]]]:
    """One transaction, as the engine writes: BEGIN IMMEDIATE, the statements, COMMIT."""
    conn.execute(Q["begin_immediate"])
    results = [list(conn.execute(Q[query], params)) for query, params in statements]
    conn.execute(Q["commit"])
    return results


@dataclass
class Cut:
    """What one run left, and what it may lawfully leave."""

    #: The jobs table after each prefix of the transactions whose commit returned.
    committed: list[str]
    #: After the transaction under way at the cut, had it committed.
    in_flight: str | None
    #: Transactions committed before the last sync of any file.
    synced: int
    steps: int
    #: What the power went out on ("write of jobs.db-wal" ...); "idle" between transactions.
    during: str


def make_file(path: Path) -> None:
    """The database as the engine makes it: migrated, in WAL mode, closed cleanly."""
    SQLiteBackend(Settings.load(env={}, url=f"sqlite:///{path}")).close()


def copy_of_schema() -> apsw.Connection:
    copy = apsw.Connection(":memory:")
    for _, _, script in MIGRATIONS:
        for statement in split_statements(script):
            copy.execute(statement)
    return copy


def power_cut_run(path: Path, synchronous: str, seed: int, mode: CutMode) -> Cut:
    rng = random.Random(seed)
    disk = Disk(f"power-{seed}-{synchronous}", cut_at=rng.randint(1, MAX_OPERATIONS))
    copy = copy_of_schema()
    seeded_randomblob(copy, seed)
    roles: dict[str, apsw.Connection] = {}
    committed = [fingerprint(copy.execute(JOBS))]
    synced = [0]
    disk.on_sync.append(lambda _path: synced.__setitem__(0, len(committed) - 1))
    in_flight: str | None = None
    workload = Workload(random.Random(seed + 1))
    steps = 0
    try:
        for role in ("enqueuer-1", "enqueuer-2", "worker"):
            conn = apsw.Connection(str(path), vfs=disk.name)
            conn.execute(Q["pragma_wal"])
            conn.execute(Q[f"pragma_synchronous_{synchronous.lower()}"])
            conn.execute("PRAGMA wal_autocheckpoint = 50")
            if role == "worker":
                seeded_randomblob(conn, seed)
            roles[role] = conn
        for steps in range(1, MAX_STEPS + 1):  # noqa: B007 -- steps is reported
            role, statements = workload.next()
            results = run(copy, statements)
            in_flight = fingerprint(copy.execute(JOBS))
            run(roles[role], statements)
            committed.append(in_flight)
            in_flight = None
            workload.learn(statements, results)
        disk.cut()  # the cut point lies beyond the run: the power goes out while idle
    except apsw.Error as exc:
        if not disk.off:
            raise
        assert isinstance(exc, PowerCut) or "disk I/O error" in str(exc) or disk.off, exc
    finally:
        disk.cut()
        for conn in roles.values():
            # The closing connection's last writes fail: the power is off.
            with contextlib.suppress(apsw.Error):
                conn.close(True)
        copy.close()
        disk.restore(mode, rng)
        disk.unregister()
    return Cut(committed, in_flight, synced[0], steps, disk.cut_during or "idle")


def reopen_and_check(path: Path, cut: Cut, synchronous: str, label: str) -> int:
    """The checks after one cut; returns how many committed transactions were lost."""
    assert integrity_check(path) == ["ok"], label
    db = sqlite3.connect(path, isolation_level=None)
    try:
        found = fingerprint(db.execute(JOBS))
    finally:
        db.close()
    last = len(cut.committed) - 1
    if found == cut.in_flight:
        kept = last + 1
    else:
        matches = [k for k, state in enumerate(cut.committed) if state == found]
        assert matches, f"{label}: the jobs table is no state the transactions left"
        kept = max(matches)
    if synchronous == "FULL":
        assert kept >= last, f"{label}: lost {last - kept} transaction(s) whose commit returned"
    else:
        assert kept >= cut.synced, f"{label}: lost transactions committed before the last sync"
    # The engine opens what is left and can finish every job in it.
    backend = SQLiteBackend(Settings.load(env={}, url=f"sqlite:///{path}"))
    try:
        assert backend.verify_schema().problems == [], label
        backend.promote_due()
        backend.rescue_expired()
        runs = backend.claim("after", None, 10_000, LEASE)
        results = backend.finish_many(
            [Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED) for r in runs]
        )
        assert all(r.applied for r in results), label
    finally:
        backend.close()
    return max(0, last - kept)


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_a_power_cut_at_any_moment_loses_only_what_the_mode_allows(
    tmp_path: Path, synchronous: str
) -> None:
    base = random.randrange(2**32)
    lost: list[int] = []
    during: Counter[str] = Counter()
    for n in range(CUTS):
        seed = base + n
        mode = MODES[n % len(MODES)]
        path = tmp_path / f"cut-{n}" / "jobs.db"
        path.parent.mkdir()
        make_file(path)
        cut = power_cut_run(path, synchronous, seed, mode)
        during[cut.during] += 1
        label = f"seed {seed}, {mode}, {synchronous}, after {cut.steps} step(s)"
        lost.append(reopen_and_check(path, cut, synchronous, label))
    if synchronous == "FULL":
        assert set(lost) == {0}
    print(
        f"{synchronous}: {CUTS} cuts from seed {base}, during {dict(during)}; "
        f"committed transactions lost per cut: {lost}"
    )
