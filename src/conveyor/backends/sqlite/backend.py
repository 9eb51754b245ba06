"""The SQLite engine: the embedded default. One file, one writer connection per process."""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from conveyor.backends.base import (
    FORGET_DEAD_WORKERS_AFTER,
    Backend,
    ClaimedJob,
    Dependencies,
    EnqueueResult,
    FinishResult,
    LeaseReport,
    NewJob,
    Outcome,
    OutcomeKind,
    ReapReport,
    RescueReport,
    ScheduleState,
    SchemaStatus,
    rescued_by_state,
)
from conveyor.backends.breakers import claim_gate, held_tasks, record_outcomes
from conveyor.backends.caps import CappedQueues
from conveyor.backends.dependencies import (
    Settlement,
    Sql,
    T,
    escalate,
    has_dependencies,
    link_new_jobs,
    requeue_links,
    settle_rows,
)
from conveyor.backends.sql import load_migrations, load_queries
from conveyor.backends.sqlite import stats as minutes
from conveyor.backends.sqlite.breakers import QB, SQLiteBreakers, list_breakers
from conveyor.backends.sqlite.connection import Connection, Q, path_from_url, translate
from conveyor.backends.sqlite.enqueue import insert_jobs
from conveyor.backends.sqlite.group import GroupCommit
from conveyor.backends.sqlite.snapshot import export_records, import_records
from conveyor.backends.tally import ENQUEUE_SETTLE, FOLD_MARGIN, Tally, combine, minute_of
from conveyor.backends.turns import claim_in_turns
from conveyor.boottime import BootClock, BootTime, boot_clock
from conveyor.errors import (
    IdempotencyConflict,
    InvalidTransition,
    JobNotFound,
    SchemaError,
    WorkerNotFound,
)
from conveyor.job import CANCELLABLE_STATES, REQUEUEABLE_STATES, Job, JobError, JobState
from conveyor.limits import QueueGate, QuietHours, RateLimit
from conveyor.limits.breakers import Breaker, BreakerRow, closed_by_hand, opened_by_hand
from conveyor.limits.buckets import Bucket, admit, bucket_updates, picked
from conveyor.limits.gates import quiet_queues, rate_updates, rooms, started_by_queue
from conveyor.settings import Settings
from conveyor.snapshot.records import Record, Summary
from conveyor.worker_info import WorkerInfo, WorkerRegistration, WorkerState

MIGRATIONS = load_migrations("conveyor.backends.sqlite")
#: The queries of schedules (periodic jobs).
S = load_queries("conveyor.backends.sqlite", "schedules.sql")
LATEST_VERSION = MIGRATIONS[-1][0]
_WAITING = ("blocked", "scheduled", "queued", "retrying")


def split_statements(script: str) -> list[str]:
    """Split a migration script into statements (sqlite3 runs one statement per execute)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement.rstrip(";").strip():
                statements.append(statement)
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") for part in buffer.strip().splitlines()
    ):
        raise ValueError(f"unterminated SQL statement in migration: {buffer.strip()[:80]!r}")
    return statements


def _normalize_sql(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _claimed(r: tuple[Any, ...]) -> ClaimedJob:
    return ClaimedJob(
        id=r[0],
        task=r[1],
        queue=r[2],
        args=[] if r[3] == "[]" else json.loads(r[3]),
        kwargs={} if r[4] == "{}" else json.loads(r[4]),
        priority=r[5],
        attempt=r[6],
        max_attempts=r[7],
        lease_token=r[8],
        timeout=r[9],
        checkpoint=None if r[10] is None else json.loads(r[10]),
    )


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        task=row["task"],
        queue=row["queue"],
        state=JobState(row["state"]),
        args=json.loads(row["args"]),
        kwargs=json.loads(row["kwargs"]),
        priority=row["priority"],
        run_at=row["run_at"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        created_at=row["created_at"],
        idempotency_key=row["idempotency_key"],
        lost_runs=row["lost_runs"],
        result=None if row["result"] is None else json.loads(row["result"]),
        errors=[JobError.from_dict(e) for e in json.loads(row["errors"])],
        dead_reason=row["dead_reason"],
        timeout=row["timeout"],
        progress=None if row["progress"] is None else json.loads(row["progress"]),
        checkpoint=None if row["checkpoint"] is None else json.loads(row["checkpoint"]),
        cancel_requested=bool(row["cancel_requested"]),
        suspect=bool(row["suspect"]),
        worker_id=row["worker_id"],
        lease_token=row["lease_token"],
        lease_expires_at=row["lease_expires_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        pending_parents=row["pending_parents"],
        stopped_by=row["stopped_by"],
        workflow_id=row["workflow_id"],
        escalated_to=row["escalated_to"],
        escalated_from=row["escalated_from"],
    )


class SQLiteBackend(Backend):
    """``clock``: the wall clock ("now": run_at, created_at, finished_at ...); ``boot``: the
    clock leases, beats and leaderships are measured on (see conveyor/boottime.py). By default
    the machine's boot clock -- unless a wall clock is injected, which then measures leases too
    (``boot`` None), as every process on the file did before leases used the boot clock."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] | None = None,
        *,
        boot: BootClock | None = None,
        auto_migrate: bool | None = None,
        check_schema: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.path = path_from_url(settings.url)
        self._clock = clock or time.time
        self._boot: BootClock = boot or (boot_clock if clock is None else _no_boot_clock)

        self._writer = self._connect()
        #: Single enqueues of this process's threads, sharing commits (see group.py).
        self._group = GroupCommit(self._writer)
        in_memory = self.path == ":memory:"
        self.shared = not in_memory
        self._reader = self._writer if in_memory else self._connect()
        self._poller = self._writer if in_memory else self._connect()
        self._reader.raw.row_factory = sqlite3.Row
        self._queue_turn = itertools.count()
        self._capped = CappedQueues(self.now)
        #: Whether any rate limit bucket of a task exists (the same cache, of one name).
        self._limited = CappedQueues(self.now)
        #: The breakers that are not closed, kept like the capped queues.
        self._unsettled = CappedQueues(self.now)
        if check_schema:
            self._check_schema(settings.auto_migrate if auto_migrate is None else auto_migrate)

    def _connect(self) -> Connection:
        return Connection(
            self.path,
            synchronous=self.settings.sqlite_synchronous,
            lock_timeout=self.settings.lock_timeout,
        )

    # --- schema ---------------------------------------------------------------------------

    def _current_version(self) -> int:
        with self._reader.read() as db:
            if not db.execute(Q["has_migrations_table"]).fetchone()[0]:
                return 0
            return int(db.execute(Q["schema_version"]).fetchone()[0])

    def _check_schema(self, auto_migrate: bool) -> None:
        current = self._current_version()
        if current > LATEST_VERSION:
            raise self._too_new(current)
        if current < LATEST_VERSION:
            if not auto_migrate:
                raise SchemaError(
                    f"{self.path} has schema version {current}, this Conveyor needs "
                    f"{LATEST_VERSION}: run `conveyor schema migrate`"
                )
            self.migrate()

    def _too_new(self, current: int) -> SchemaError:
        return SchemaError(
            f"{self.path} was written by a newer Conveyor (schema version {current}, this one "
            f"knows up to {LATEST_VERSION}): upgrade Conveyor to use it"
        )

    def migrate(self) -> list[int]:
        applied: list[int] = []
        with self._writer.write() as db:
            db.execute(Q["create_migrations_table"])
            current = int(db.execute(Q["schema_version"]).fetchone()[0])
            if current > LATEST_VERSION:
                raise self._too_new(current)
            for version, name, script in MIGRATIONS[current:]:
                for statement in split_statements(script):
                    db.execute(statement)
                db.execute(
                    Q["record_migration"], {"version": version, "name": name, "now": self.now()}
                )
                applied.append(version)
        return applied

    def verify_schema(self) -> SchemaStatus:
        current = self._current_version()
        problems: list[str] = []
        expected = _expected_schema()
        with self._reader.read() as db:
            actual = {
                (row["type"], row["name"]): _normalize_sql(row["sql"])
                for row in db.execute(Q["schema_objects"])
            }
        for key, sql in sorted(expected.items()):
            if key not in actual:
                problems.append(f"missing {key[0]} {key[1]}")
            elif actual[key] != sql:
                problems.append(f"{key[0]} {key[1]} differs from the migrations")
        problems.extend(f"unexpected {t} {n}" for t, n in sorted(set(actual) - set(expected)))
        if current > LATEST_VERSION:
            problems.append(str(self._too_new(current)))
        return SchemaStatus(current=current, latest=LATEST_VERSION, problems=problems)

    # --- enqueue --------------------------------------------------------------------------

    def enqueue_many(
        self,
        jobs: Sequence[NewJob],
        meanwhile: Callable[[list[EnqueueResult]], None] | None = None,
    ) -> list[EnqueueResult]:
        if not jobs:
            return []
        now = self.now()
        limits = self.settings.queue_limits
        job = jobs[0]
        single = (
            len(jobs) == 1
            and job.idempotency_key is None
            and job.rate_key is None
            and job.queue not in limits
        )
        if single and not has_dependencies(jobs):
            results = [self._group.insert(job, now)]
        else:
            with self._writer.write() as db:
                results = insert_jobs(db, jobs, now, limits)
                if has_dependencies(jobs):
                    _run(db, link_new_jobs(jobs, results, now))
            if any(job.rate_key is not None for job in jobs):
                self._limited.forget()  # this process's claims look for rate-limited jobs at once
        self._notify_local(sorted({job.queue for job in jobs}))
        return results

    def enqueue_one(self, job: NewJob) -> EnqueueResult:
        if not self._plain(job):
            return self.enqueue_many([job])[0]
        result = self._group.insert(job, self._clock())
        self._notify_local([job.queue])
        return result

    def enqueue_one_now(self, job: NewJob) -> EnqueueResult | None:
        # A commit without a disk flush takes tens of microseconds, less than handing the
        # call to a thread; with synchronous=FULL each one waits for the disk.
        if self.settings.sqlite_synchronous == "FULL" or not self._plain(job):
            return None
        result = self._group.insert_now(job, self._clock())
        if result is not None:
            self._notify_local([job.queue])
        return result

    def _plain(self, job: NewJob) -> bool:
        """A job the group commit takes: no key, no rate key, no limited queue, no links."""
        return (
            job.idempotency_key is None
            and job.rate_key is None
            and job.queue not in self.settings.queue_limits
            and not (job.depends_on or job.depends_on_batch or job.workflow_id)
            and job.trace_context is None
        )

    # --- the run of a job -----------------------------------------------------------------

    def claim(
        self, worker_id: str, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        with self._writer.write() as db:
            # Read the clock once the write lock is ours: a claim that waited for another
            # process must not hand out leases that expired while it waited.
            now = self.now()
            params: dict[str, Any] = {
                "now": now,
                "lease": lease,
                "worker_id": worker_id,
                **self._boot_params(),
            }
            db.execute(Q["promote_due"], {"now": now})
            rows: list[tuple[Any, ...]] = []
            capped = self._capped.get(lambda: [row[0] for row in db.execute(Q["capped_queues"])])
            limited = bool(
                self._limited.get(lambda: [r[0] for r in db.execute(Q["rate_buckets_exist"])])
            )
            # --- circuit breakers: skip the tasks behind open ones, take the probes due (a
            # probe of a rate-limited task needs its bucket's token like any start).
            held: list[str] = []
            if self._unsettled.get(lambda: [r[0] for r in db.execute(QB["unsettled_breakers"])]):

                def rate_probe(tasks: Sequence[str]) -> tuple[Any, ...] | None:
                    if not limited:
                        return None
                    found = self._claim_rate_limited(db, params, queues, 1, capped, only=tasks)
                    return found[0] if found else None

                store = SQLiteBreakers(db, params, rate_probe)
                breakers = claim_gate(store, now, queues, capped, limit)
                held, limit = breakers.held, limit - len(breakers.probes)
                rows += breakers.probes
                params["held"] = json.dumps(held)
                self.breaker_probe_at = breakers.next_probe_at
            else:
                self.breaker_probe_at = None
            # --- end of circuit breakers
            # --- rate limits of tasks (conveyor/limits/buckets.py), past the held tasks ---
            if limited and limit > 0:
                taken = self._claim_rate_limited(db, params, queues, limit, capped, held=held)
                rows += taken
                limit -= len(taken)
            # --- end of rate limits of tasks ---
            if queues is None and capped:
                ready = [row[0] for row in db.execute(Q["ready_queues"])]
                # No other writer can fill a capped queue before this transaction ends.
                if not capped.isdisjoint(ready):
                    queues = ready
            if limit <= 0:
                pass
            elif queues is None:
                query = QB["claim_any_held"] if held else Q["claim_any"]
                rows += db.execute(query, {**params, "limit": limit}).fetchall()
            else:
                rows += self._claim_in_turn(db, params, queues, limit, capped, held)
        rows.sort(key=lambda r: (-r[5], r[11], r[0]))
        return [_claimed(r) for r in rows]

    def claim_suspect(
        self, worker_id: str, queues: Sequence[str] | None, lease: float
    ) -> ClaimedJob | None:
        # An idle worker asks at every poll, and there is almost never a suspect: look without
        # the write lock first.
        if not self.suspect_waiting(queues):
            return None
        with self._writer.write() as db:
            # Caps are counted inside the write transaction: pick_suspect's check is exact.
            now = self.now()
            gates, pick_params = self._suspect_gates(db, queues, now)
            picked = db.execute(Q["pick_suspect"], pick_params).fetchone()
            if picked is None:
                return None
            queue, task, key = str(picked[1]), str(picked[2]), picked[3]
            # The queue's other gates (conveyor/limits/gates.py): a pause, quiet hours, a rate.
            if rooms(gates, now).get(queue, 1) <= 0:
                return None
            bucket: Bucket | None = None
            if key is not None:
                found = db.execute(Q["lock_suspect_bucket"], {"task": task, "key": key}).fetchone()
                bucket = None if found is None else Bucket.from_row(tuple(found))
            params = {
                "now": now,
                "lease": lease,
                "worker_id": worker_id,
                "id": picked[0],
                **self._boot_params(),
            }
            row = db.execute(Q["claim_suspect"], params).fetchone()
            if row is not None:
                # A suspect's start spends a token of its queue's and its task's rate limits.
                for name, rate_next in rate_updates(gates, {queue: 1}, now):
                    db.execute(Q["take_rate"], {"queue": name, "rate_next": rate_next})
                if bucket is not None:
                    rate_next = bucket.rate.next_after(bucket.rate_next, now, 1)
                    db.execute(Q["take_bucket"], {"task": task, "key": key, "rate_next": rate_next})
        return None if row is None else _claimed(row)

    def suspect_waiting(self, queues: Sequence[str] | None) -> bool:
        with self._reader.read() as db:
            _, params = self._suspect_gates(db, queues, self.now())
            return db.execute(Q["pick_suspect"], params).fetchone() is not None

    def _suspect_gates(
        self, db: sqlite3.Connection, queues: Sequence[str] | None, now: float
    ) -> tuple[list[QueueGate], dict[str, Any]]:
        """The gates of the gated queues among ``queues``, and pick_suspect's parameters: the
        queues in quiet hours and the tasks behind breakers that are not closed are left out
        (the other gates are in the query)."""
        capped = self._capped.get(lambda: [row[0] for row in db.execute(Q["capped_queues"])])
        wanted = sorted(capped if queues is None else capped.intersection(queues))
        gates: list[QueueGate] = []
        if wanted:
            gate_params = {"queues": json.dumps(wanted), "now": now}
            gates = [QueueGate.from_row(r) for r in db.execute(Q["queue_gates"], gate_params)]
        held: list[str] = []
        if self._unsettled.get(lambda: [r[0] for r in db.execute(QB["unsettled_breakers"])]):
            held = held_tasks(SQLiteBreakers(db), now)
        params = {
            "now": now,
            "queues": None if queues is None else json.dumps(list(queues)),
            "closed": json.dumps(quiet_queues(gates, now)),
            "held": json.dumps(held),
        }
        return gates, params

    def _claim_in_turn(
        self,
        db: sqlite3.Connection,
        params: dict[str, Any],
        queues: Sequence[str],
        limit: int,
        capped: frozenset[str],
        held: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """Queue after queue, each gated one up to the room its gates leave."""
        query = QB["claim_queue_held"] if held else Q["claim_queue"]
        wanted = sorted(capped.intersection(queues))
        # --- queue gates (conveyor/limits/gates.py): caps, pauses, quiet hours, rates ---
        gates: list[QueueGate] = []
        if wanted:
            gate_params = {"queues": json.dumps(wanted), "now": params["now"]}
            gates = [QueueGate.from_row(r) for r in db.execute(Q["queue_gates"], gate_params)]
        rows = claim_in_turns(
            queues,
            next(self._queue_turn),
            limit,
            rooms(gates, params["now"]),
            lambda queue, take: list(
                db.execute(query, {**params, "queue": queue, "limit": take}).fetchall()
            ),
        )
        for queue, rate_next in rate_updates(gates, started_by_queue(rows), params["now"]):
            db.execute(Q["take_rate"], {"queue": queue, "rate_next": rate_next})
        # --- end of queue gates ---
        return rows

    def _claim_rate_limited(
        self,
        db: sqlite3.Connection,
        params: dict[str, Any],
        queues: Sequence[str] | None,
        limit: int,
        capped: frozenset[str],
        *,
        held: Sequence[str] = (),
        only: Sequence[str] | None = None,
    ) -> list[tuple[Any, ...]]:
        """One job from each bucket whose next start has come, up to ``limit``, as far as the
        gates of their queues let them start: of the tasks ``only`` (None: any) that are not
        ``held`` (behind a breaker that is not closed)."""
        now = params["now"]
        wanted = None if queues is None else json.dumps(list(queues))
        pick_params = {
            "now": now,
            "queues": wanted,
            "limit": limit,
            "held": json.dumps(list(held)),
            "only": None if only is None else json.dumps(list(only)),
        }
        picks = picked(db.execute(Q["pick_rate_limited"], pick_params).fetchall())
        ids = list(picks)
        gates: list[QueueGate] = []
        if ids and capped:
            queue_of = dict(db.execute(Q["queues_of"], {"ids": json.dumps(ids)}).fetchall())
            gated = sorted(capped.intersection(queue_of.values()))
            if gated:
                gate_params = {"queues": json.dumps(gated), "now": now}
                gates = [QueueGate.from_row(r) for r in db.execute(Q["queue_gates"], gate_params)]
                ids = admit(picks, queue_of, rooms(gates, now))
        if not ids:
            return []
        rows = list(db.execute(Q["claim_ids"], {**params, "ids": json.dumps(ids)}).fetchall())
        for task, key, rate_next in bucket_updates(picks, (r[0] for r in rows), now):
            db.execute(Q["take_bucket"], {"task": task, "key": key, "rate_next": rate_next})
        # Later gated claims of this transaction read the queues' rate tokens as moved here.
        for queue, rate_next in rate_updates(gates, started_by_queue(rows), now):
            db.execute(Q["take_rate"], {"queue": queue, "rate_next": rate_next})
        return rows

    def extend_leases(self, tokens: Sequence[str], lease: float) -> LeaseReport:
        if not tokens:
            return LeaseReport()
        with self._writer.write() as db:
            rows = db.execute(
                Q["extend_leases"],
                {
                    "now": self.now(),
                    "lease": lease,
                    "tokens": json.dumps(list(tokens)),
                    **self._boot_params(),
                },
            ).fetchall()
        extended = frozenset(r[0] for r in rows)
        return LeaseReport(
            extended=extended,
            lost=frozenset(tokens) - extended,
            cancel_requested=frozenset(r[0] for r in rows if r[1]),
        )

    def cancel_requests(self, worker_id: str) -> frozenset[str]:
        with self._reader.read() as db:
            rows = db.execute(Q["cancel_requests"], {"worker_id": worker_id}).fetchall()
        return frozenset(row[0] for row in rows)

    def save_progress(
        self, job_id: int, token: str, progress_json: str | None, checkpoint_json: str | None
    ) -> bool:
        with self._writer.write() as db:
            cursor = db.execute(
                Q["save_progress"],
                {
                    "id": job_id,
                    "token": token,
                    "progress": progress_json,
                    "checkpoint": checkpoint_json,
                },
            )
            return cursor.rowcount == 1

    def finish_many(self, outcomes: Sequence[Outcome]) -> list[FinishResult]:
        if not outcomes:
            return []
        # A run is finished once: a repeated (id, token) in the batch is never applied twice.
        firsts = list({(o.job_id, o.token): o for o in reversed(outcomes)}.values())[::-1]
        ended: dict[tuple[int, str], JobState] = {}
        # Jobs ended with children: their children follow in this same transaction.
        parents: list[tuple[int, str]] = []
        escalated: set[str] = set()
        settlement = Settlement()
        with self._writer.write() as db:
            now = self.now()
            waits = minutes.waits_of_retries(db, firsts)
            bulk = _one_success_per_job(firsts)
            if bulk:
                batch = json.dumps([[o.job_id, o.token, o.result_json] for o in bulk.values()])
                for job_id, has_children in db.execute(
                    Q["finish_succeeded_many"], {"now": now, "outcomes": batch}
                ):
                    ended[(job_id, bulk[job_id].token)] = JobState.SUCCEEDED
                    if has_children:
                        parents.append((job_id, "succeeded"))
            for outcome in firsts:
                if bulk.get(outcome.job_id) is outcome:
                    continue
                if outcome.kind is OutcomeKind.RETRY and outcome.retry_budget is not None:
                    owner = db.execute(
                        Q["owns_run"], {"id": outcome.job_id, "token": outcome.token}
                    ).fetchone()
                    if owner is None:
                        continue
                    outcome = self._spend_retry_budget(db, outcome, now)
                query = Q[f"finish_{outcome.kind.value}"]
                row = db.execute(query, _outcome_params(outcome, now)).fetchone()
                if row is not None:
                    ended[(outcome.job_id, outcome.token)] = JobState(row[0])
                    if row[1]:
                        parents.append((outcome.job_id, row[0]))
                    if outcome.escalate is not None:
                        queue = _run(db, escalate(outcome, now))
                        if queue is not None:
                            escalated.add(queue)
            if parents:
                settlement = self._settle(db, [(i, s, True) for i, s in parents], now)
            minutes.tally_finished(db, waits, ended, firsts, now)
            reporting = [
                o for o in firsts if o.breaker is not None and (o.job_id, o.token) in ended
            ]
            if reporting and record_outcomes(SQLiteBreakers(db), reporting, now):
                self._unsettled.forget()
        results: list[FinishResult] = []
        for outcome in outcomes:
            state = ended.pop((outcome.job_id, outcome.token), None)
            results.append(FinishResult(outcome.job_id, state is not None, state))
        if settlement.queues or escalated:
            self._notify_local(sorted(settlement.queues | escalated))
        self._finished_local()
        return results

    @staticmethod
    def _settle(db: sqlite3.Connection, rows: Sequence[Sequence[Any]], now: float) -> Settlement:
        """Children of the jobs in ``rows`` (id, state, has_children) that just ended."""
        return _run(db, settle_rows(rows, now))

    @staticmethod
    def _spend_retry_budget(db: sqlite3.Connection, outcome: Outcome, now: float) -> Outcome:
        assert outcome.retry_budget is not None
        task, limit, window = outcome.retry_budget
        db.execute(Q["budget_open_window"], {"task": task, "now": now, "window": window})
        if db.execute(Q["budget_take"], {"task": task, "limit": limit}).fetchone() is not None:
            return outcome
        return replace(
            outcome,
            kind=OutcomeKind.DEAD,
            dead_reason=f"retry budget exhausted: more than {limit} retries of {task} "
            f"within {window:g}s",
        )

    # --- caps on running jobs -------------------------------------------------------------

    def set_concurrency_limit(self, queue: str, max_running: int | None) -> None:
        with self._writer.write() as db:
            if max_running is None:
                db.execute(Q["remove_concurrency_limit"], {"queue": queue})
            else:
                db.execute(Q["set_concurrency_limit"], {"queue": queue, "max_running": max_running})
        self._capped.forget()
        # A raised or removed cap may leave room for jobs that idle workers here could take.
        self._notify_local([queue])

    def capped_queues(self) -> frozenset[str]:
        def read() -> list[str]:
            with self._reader.read() as db:
                return [row[0] for row in db.execute(Q["capped_queues"])]

        return self._capped.get(read)

    def ready_queues(self) -> frozenset[str]:
        with self._reader.read() as db:
            return frozenset(row[0] for row in db.execute(Q["ready_queues"]))

    def concurrency_limits(self) -> dict[str, int]:
        with self._reader.read() as db:
            return {queue: int(cap) for queue, cap in db.execute(Q["queue_limits"])}

    # --- queue gates: pause, quiet hours, rate limits -------------------------------------

    def _set_gate(self, query: str, queue: str, **params: Any) -> None:
        with self._writer.write() as db:
            db.execute(Q[query], {"queue": queue, **params})
        self._capped.forget()
        # A lifted gate may leave room for jobs that idle workers here could take.
        self._notify_local([queue])

    def pause_queue(self, queue: str, until: float | None) -> None:
        self._set_gate("pause_queue", queue, until=math.inf if until is None else until)

    def resume_queue(self, queue: str) -> None:
        self._set_gate("resume_queue", queue)

    def set_quiet_hours(self, queue: str, quiet: QuietHours | None) -> None:
        self._set_gate("set_quiet_hours", queue, quiet=None if quiet is None else quiet.to_json())

    def set_rate_limit(self, queue: str, rate: RateLimit | None) -> None:
        count, per = (None, None) if rate is None else (rate.count, rate.per)
        self._set_gate("set_rate_limit", queue, count=count, per=per)

    def queue_gates(self) -> list[QueueGate]:
        with self._reader.read() as db:
            rows = db.execute(Q["every_queue_gate"], {"now": self.now()}).fetchall()
        return [QueueGate.from_row(tuple(row)) for row in rows]

    def rate_limited(self) -> bool:
        def read() -> list[str]:
            with self._reader.read() as db:
                return [row[0] for row in db.execute(Q["rate_buckets_exist"])]

        return bool(self._limited.get(read))

    def next_rate_token(self, queues: Sequence[str] | None) -> float | None:
        if not self.rate_limited():
            return None
        params = {"now": self.now(), "queues": None if queues is None else json.dumps(queues)}
        with self._reader.read() as db:
            value = db.execute(Q["next_rate_token"], params).fetchone()[0]
        return None if value is None else float(value)

    def rate_bucket_of(self, job_id: int) -> Bucket | None:
        with self._reader.read() as db:
            row = db.execute(Q["rate_bucket_of"], {"id": job_id}).fetchone()
        return None if row is None else Bucket.from_row(tuple(row))

    # --- circuit breakers -----------------------------------------------------------------

    def breakers(self) -> list[BreakerRow]:
        with self._reader.read() as db:
            return list_breakers(db)

    def set_breaker(self, breaker: Breaker, opened: bool) -> BreakerRow:
        with self._writer.write() as db:
            now = self.now()
            store = SQLiteBreakers(db)
            found = store.lock([breaker.name], wait=True)
            before = found[0] if found else None
            if opened:
                row = opened_by_hand(before, breaker, now)
            else:
                row = closed_by_hand(before, breaker)
            store.save(row, now)
        self._unsettled.forget()
        if not opened:
            self._notify_local(sorted({*self.ready_queues()}))
        return row

    # --- maintenance ----------------------------------------------------------------------

    def rescue_expired(self, exclude_worker: str | None = None) -> RescueReport:
        with self._writer.write() as db:
            params = {"now": self.now(), "exclude": exclude_worker, **self._boot_params()}
            rows = db.execute(Q["rescue_expired"], params).fetchall()
            settlement = self._settle(db, rows, params["now"])
            minutes.tally_rescued(db, rows, params["now"])
        if settlement.queues:
            self._notify_local(sorted(settlement.queues))
        return RescueReport(**rescued_by_state(rows))

    def reap_dead_workers(
        self,
        exclude_worker: str | None = None,
        reachable_since: float | None = None,
        forget_after: float = FORGET_DEAD_WORKERS_AFTER,
        known_dead: Sequence[str] = (),
    ) -> ReapReport:
        rows: list[tuple[Any, ...]] = []
        settlement = Settlement()
        with self._writer.write() as db:
            now = self.now()
            boot = self._boot_params()
            # The sweeper's own "since" is wall time: moved onto the boot clock by its age.
            since_uptime = None
            if reachable_since is not None and boot["uptime"] is not None:
                since_uptime = boot["uptime"] - (now - reachable_since)
            params = {
                "now": now,
                "exclude": exclude_worker,
                "since": reachable_since,
                "since_uptime": since_uptime,
                "known_dead": json.dumps(list(known_dead)),
                **boot,
            }
            workers = [r[0] for r in db.execute(Q["mark_dead_workers"], params).fetchall()]
            if workers:
                dead = {"now": now, "workers": json.dumps(workers)}
                rows = db.execute(Q["rescue_dead_workers"], dead).fetchall()
                settlement = self._settle(db, rows, now)
                minutes.tally_rescued(db, rows, now)
                db.execute(Q["release_dead_leaderships"], dead)
            db.execute(Q["forget_dead_workers"], {"now": now, "forget_after": forget_after})
        if settlement.queues:
            self._notify_local(sorted(settlement.queues))
        return ReapReport(workers=sorted(workers), **rescued_by_state(rows))

    def promote_due(self) -> int:
        with self._writer.write() as db:
            return db.execute(Q["promote_due"], {"now": self.now()}).rowcount

    def next_due(self) -> float | None:
        with self._reader.read() as db:
            value = db.execute(Q["next_due"]).fetchone()[0]
        return None if value is None else float(value)

    def prune(self, older_than: float, batch: int = 1000) -> int:
        with self._writer.write() as db:
            params = {"cutoff": self.now() - older_than, "batch": batch}
            pruned = [row[0] for row in db.execute(Q["prune"], params).fetchall()]
            if pruned:
                db.execute(Q["forget_edges"], {"ids": json.dumps(pruned)})
            return len(pruned)

    # --- workers and leadership -----------------------------------------------------------

    def register_worker(self, worker: WorkerRegistration) -> None:
        params = {
            "id": worker.id,
            "host": worker.host,
            "pid": worker.pid,
            "machine": worker.machine,
            "queues": None if worker.queues is None else json.dumps(list(worker.queues)),
            "concurrency": worker.concurrency,
            "beat_interval": worker.beat_interval,
            "dead_after": worker.dead_after,
        }
        with self._writer.write() as db:
            db.execute(Q["register_worker"], {**params, "now": self.now(), **self._boot_params()})

    def beat_worker(self, worker_id: str, state: WorkerState) -> bool | None:
        with self._writer.write() as db:
            params = {
                "id": worker_id,
                "state": WorkerState(state).value,
                "now": self.now(),
                **self._boot_params(),
            }
            row = db.execute(Q["beat_worker"], params).fetchone()
        return None if row is None else bool(row[0])

    def worker_stop_requested(self, worker_id: str) -> bool:
        with self._reader.read() as db:
            row = db.execute(Q["worker_stop_requested"], {"id": worker_id}).fetchone()
        return row is not None and bool(row[0])

    def deregister_worker(self, worker_id: str) -> None:
        with self._writer.write() as db:
            db.execute(Q["deregister_worker"], {"id": worker_id})
            db.execute(Q["release_leaderships"], {"holder": worker_id})

    def list_workers(self) -> list[WorkerInfo]:
        with self._reader.read() as db:
            rows = db.execute(Q["list_workers"]).fetchall()
        now = self.now()
        boot = self._boot()
        return [_row_to_worker(row, now, boot) for row in rows]

    def request_worker_stop(self, worker_ids: Sequence[str] | None) -> list[str]:
        with self._writer.write() as db:
            if worker_ids is None:
                return [r[0] for r in db.execute(Q["request_every_worker_stop"]).fetchall()]
            wanted = list(dict.fromkeys(worker_ids))
            rows = db.execute(Q["request_worker_stop"], {"ids": json.dumps(wanted)}).fetchall()
            found = {r[0] for r in rows}
            for worker_id in wanted:
                if worker_id not in found:
                    raise WorkerNotFound(worker_id)  # rolls back the requests of the others
        return wanted

    def acquire_leadership(self, name: str, holder: str, ttl: float) -> bool:
        with self._writer.write() as db:
            params = {
                "name": name,
                "holder": holder,
                "ttl": ttl,
                "now": self.now(),
                **self._boot_params(),
            }
            return db.execute(Q["acquire_leadership"], params).fetchone() is not None

    def release_leadership(self, name: str, holder: str) -> None:
        with self._writer.write() as db:
            db.execute(Q["release_leadership"], {"name": name, "holder": holder})

    # --- schedules of periodic jobs -------------------------------------------------------

    def register_schedules(self, names: Sequence[str]) -> None:
        with self._writer.write() as db:
            now = self.now()
            db.executemany(S["register_schedule"], [{"name": n, "now": now} for n in names])

    def schedule_states(self) -> list[ScheduleState]:
        with self._reader.read() as db:
            return [_row_to_schedule(row) for row in db.execute(S["schedule_states"])]

    def enqueue_tick(self, name: str, tick: float, job: NewJob) -> EnqueueResult | None:
        now = self.now()
        with self._writer.write() as db:
            params = {"name": name, "tick": tick, "now": now}
            if db.execute(S["take_tick"], params).fetchone() is None:
                return None
            result = insert_jobs(db, [job], now, self.settings.queue_limits)[0]
            db.execute(S["record_tick_job"], {"name": name, "job_id": result.job_id})
        self._notify_local([job.queue])
        return result

    def set_schedule_paused(self, name: str, paused: bool) -> ScheduleState:
        with self._writer.write() as db:
            params = {"name": name, "now": self.now(), "paused": int(paused)}
            return _row_to_schedule(db.execute(S["set_schedule_paused"], params).fetchone())

    # --- operator actions -----------------------------------------------------------------

    def _state_of(self, db: sqlite3.Connection, job_id: int) -> JobState:
        row = db.execute(Q["job_state"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return JobState(row[0])

    def cancel(self, job_id: int) -> Job:
        settlement = Settlement()
        with self._writer.write() as db:
            state = self._state_of(db, job_id)
            if state in CANCELLABLE_STATES:
                now = self.now()
                row = db.execute(Q["cancel_waiting"], {"id": job_id, "now": now}).fetchone()
                if row is not None and row[0]:
                    settlement = self._settle(db, [(job_id, "cancelled", True)], now)
            elif state is JobState.RUNNING:
                db.execute(Q["request_cancel"], {"id": job_id})
            elif state is not JobState.CANCELLED:
                raise InvalidTransition(job_id, state, "cancel")
        if settlement.queues:
            self._notify_local(sorted(settlement.queues))
        self._finished_local()
        return self.get(job_id)

    def requeue(
        self, job_ids: Sequence[int], reset_attempts: bool = False, revive_children: bool = False
    ) -> list[Job]:
        with self._writer.write() as db:
            for job_id in job_ids:
                state = self._state_of(db, job_id)
                if state not in REQUEUEABLE_STATES:
                    raise InvalidTransition(job_id, state, "requeue")
                try:
                    db.execute(
                        Q["requeue"], {"id": job_id, "now": self.now(), "reset": reset_attempts}
                    )
                except sqlite3.IntegrityError:
                    raise IdempotencyConflict(job_id) from None
                _run(db, requeue_links(job_id, revive_children))
        if job_ids:
            self._notify_local(sorted({job.queue for job in map(self.get, job_ids)}))
        return [self.get(job_id) for job_id in job_ids]

    def discard(self, job_ids: Sequence[int]) -> int:
        with self._writer.write() as db:
            deleted = 0
            for job_id in job_ids:
                state = self._state_of(db, job_id)
                if state is not JobState.DEAD:
                    raise InvalidTransition(job_id, state, "discard")
                deleted += db.execute(Q["discard"], {"id": job_id}).rowcount
            db.execute(Q["forget_edges"], {"ids": json.dumps(list(job_ids))})
            return deleted

    # --- reads ----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        with self._reader.read() as db:
            row = db.execute(Q["get_job"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _row_to_job(row)

    def list_jobs(
        self,
        *,
        states: Sequence[JobState] | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
        idempotency_key: str | None = None,
    ) -> list[Job]:
        params = {
            "states": None if states is None else json.dumps([JobState(s).value for s in states]),
            "queue": queue,
            "task": task,
            "limit": limit,
            "before_id": before_id,
            "key": idempotency_key,
        }
        query = "list_jobs" if idempotency_key is None else "list_jobs_by_key"
        with self._reader.read() as db:
            rows = db.execute(Q[query], params).fetchall()
        return [_row_to_job(row) for row in rows]

    def dependencies(self, job_id: int) -> Dependencies:
        with self._reader.read() as db:
            if db.execute(Q["job_state"], {"id": job_id}).fetchone() is None:
                raise JobNotFound(job_id)
            parents = db.execute(Q["job_parents"], {"id": job_id}).fetchall()
            children = db.execute(Q["job_children"], {"id": job_id}).fetchall()
        return Dependencies(
            parents=[
                (p, JobState(s), None if r is None or s != "succeeded" else json.loads(r))
                for p, s, r in parents
            ],
            children=[(c, JobState(s)) for c, s in children],
        )

    def trace_context(self, job_id: int) -> str | None:
        with self._reader.read() as db:
            row = db.execute(Q["trace_context"], {"id": job_id}).fetchone()
        return None if row is None else row[0]

    def workflow_jobs(self, workflow_id: str) -> list[Job]:
        with self._reader.read() as db:
            rows = db.execute(Q["workflow_jobs"], {"workflow_id": workflow_id}).fetchall()
        return [_row_to_job(row) for row in rows]

    def stats(self) -> Mapping[str, Mapping[JobState, int]]:
        with self._reader.read() as db:
            rows = db.execute(Q["stats"]).fetchall()
        counts: dict[str, dict[JobState, int]] = {}
        for queue, state, count in rows:
            counts.setdefault(queue, {})[JobState(state)] = count
        return counts

    def oldest_ready(self) -> dict[str, float]:
        with self._reader.read() as db:
            return {queue: float(at) for queue, at in db.execute(Q["oldest_ready"]).fetchall()}

    def running_by_worker(self) -> dict[str, int]:
        with self._reader.read() as db:
            rows = db.execute(Q["running_by_worker"]).fetchall()
        return {worker: int(count) for worker, count in rows}

    def minute_stats(self, since: float) -> list[Tally]:
        with self._reader.read() as db:
            rows = db.execute(minutes.QS["minute_stats"], {"since": minute_of(since)}).fetchall()
        return [minutes.from_row(row[1:], int(row[0])) for row in rows]

    def stats_totals(self) -> list[Tally]:
        with self._reader.read() as db:
            rows = db.execute(minutes.QS["stats_totals"]).fetchall()
        return combine((minutes.from_row(row, None) for row in rows), by_minute=False)

    def count_enqueued(self, settle: float = ENQUEUE_SETTLE, batch: int = 10_000) -> int:
        with self._writer.write() as db:
            return minutes.count_enqueued(db, self.now(), settle, batch)

    def fold_stats(self, margin: float = FOLD_MARGIN) -> int:
        with self._writer.write() as db:
            return minutes.fold(db, self.now(), margin)

    def prune_stats(self, older_than: float) -> int:
        cutoff = minute_of(self.now() - older_than)
        with self._writer.write() as db:
            return db.execute(minutes.QS["prune_minutes"], {"cutoff": cutoff}).rowcount

    # --- backup, restore and moves between engines -------------------------------------------

    def export_snapshot(self) -> Iterator[Record]:
        # A connection of its own: the snapshot may stay open for minutes, and the reader's
        # lock would keep this process's other reads waiting that long.
        reader = self._reader if not self.shared else self._connect()
        try:
            with reader.read() as db:
                yield from export_records(db, self.now())
        finally:
            if reader is not self._reader:
                reader.close()

    def import_snapshot(self, records: Iterable[Record]) -> Summary:
        with self._writer.write() as db:
            summary = import_records(db, records, self.now(), self.path)
        self._capped.forget()
        self._limited.forget()
        self._unsettled.forget()
        return summary

    def now(self) -> float:
        return self._clock()

    def _boot_params(self) -> dict[str, Any]:
        """:boot and :uptime of the queries that write or judge leases and beats."""
        reading = self._boot()
        if reading is None:
            return {"boot": None, "uptime": None}
        return {"boot": reading.boot, "uptime": reading.seconds}

    def change_marker(self) -> int:
        with self._poller.lock:
            try:
                return int(self._poller.raw.execute(Q["data_version"]).fetchone()[0])
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None

    def close(self) -> None:
        for connection in {id(c): c for c in (self._writer, self._reader, self._poller)}.values():
            connection.close()


def _no_boot_clock() -> None:
    return None


def _run(db: sqlite3.Connection, steps: Sql[T]) -> T:
    """Run the statements of a dependency step generator (backends/dependencies.py)."""
    try:
        name, params = next(steps)
        while True:
            bound = {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
            rows = db.execute(Q[name], bound).fetchall()
            name, params = steps.send(rows)
    except StopIteration as done:
        result: T = done.value
        return result


def _row_to_worker(row: sqlite3.Row, now: float, boot: BootTime | None) -> WorkerInfo:
    if boot is not None and row["beat_boot"] == boot.boot:
        # The age of the last beat on the boot clock, as the registry judges it: a step of the
        # wall clock since that beat must not make the worker look silent (or fresh).
        now = row["last_beat_at"] + boot.seconds - row["last_beat_uptime"]
    return WorkerInfo(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        queues=None if row["queues"] is None else tuple(json.loads(row["queues"])),
        concurrency=row["concurrency"],
        state=WorkerState(row["state"]),
        stop_requested=bool(row["stop_requested"]),
        started_at=row["started_at"],
        last_beat_at=row["last_beat_at"],
        beat_interval=row["beat_interval"],
        dead_after=row["dead_after"],
        observed_at=now,
        machine=row["machine"],
    )


def _row_to_schedule(row: sqlite3.Row | tuple[Any, ...]) -> ScheduleState:
    name, paused, since, last_tick, last_job_id, last_enqueued_at = tuple(row)
    return ScheduleState(name, bool(paused), since, last_tick, last_job_id, last_enqueued_at)


def _one_success_per_job(outcomes: Sequence[Outcome]) -> dict[int, Outcome]:
    """Successes for the one-statement path, keyed by job. A job with two runs in the batch
    (a stale one and a newer one) takes the per-row path, where each run is told apart."""
    successes: dict[int, Outcome] = {}
    seen: set[int] = set()
    repeated: set[int] = set()
    for outcome in outcomes:
        if outcome.job_id in seen:
            repeated.add(outcome.job_id)
        seen.add(outcome.job_id)
        if outcome.kind is OutcomeKind.SUCCEEDED:
            successes[outcome.job_id] = outcome
    for job_id in repeated:
        successes.pop(job_id, None)
    return successes


def _outcome_params(outcome: Outcome, now: float) -> dict[str, Any]:
    return {
        "id": outcome.job_id,
        "token": outcome.token,
        "now": now,
        "result": outcome.result_json,
        "error": None if outcome.error is None else json.dumps(outcome.error.to_dict()),
        "retry_in": outcome.retry_in,
        "reason": outcome.dead_reason,
        "checkpoint": outcome.checkpoint_json,
    }


_expected: dict[tuple[str, str], str] | None = None


def _expected_schema() -> dict[tuple[str, str], str]:
    """The schema objects that applying every migration to an empty database produces."""
    global _expected
    if _expected is None:
        db = sqlite3.connect(":memory:", isolation_level=None)
        try:
            for _, _, script in MIGRATIONS:
                for statement in split_statements(script):
                    db.execute(statement)
            _expected = {
                (row[0], row[1]): _normalize_sql(row[3]) for row in db.execute(Q["schema_objects"])
            }
        finally:
            db.close()
    return _expected
