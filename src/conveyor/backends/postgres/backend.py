"""The PostgreSQL engine: for fleets of workers on many machines.

Every method is one transaction (or one autocommitted statement) on a pooled connection; the
SQL is in queries.sql, under the same names as the SQLite engine's. Claims lock with
``FOR UPDATE SKIP LOCKED`` so any number of workers claim side by side; every write of a run is
fenced by (id, lease token, state = 'running'); all times are the database's. Wake-ups across
processes travel by LISTEN/NOTIFY (see listener.py); a single enqueue sends its own behind its
INSERT, in the same round trip but a transaction of its own (see enqueue.insert_single), and
transactions that end jobs send theirs through the notifier after they commit (see
notifier.py).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from conveyor.backends.base import (
    FORGET_DEAD_WORKERS_AFTER,
    Backend,
    ClaimedJob,
    Dependencies,
    EnqueueResult,
    FinishResult,
    JobCounts,
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
from conveyor.backends.clock import DatabaseClock
from conveyor.backends.dependencies import Settlement, requeue_links, settle_rows
from conveyor.backends.postgres import stats as minutes
from conveyor.backends.postgres.breakers import QB, PostgresBreakers, list_breakers
from conveyor.backends.postgres.connection import Connection, Cursor, Database, Q
from conveyor.backends.postgres.deps import run_sql
from conveyor.backends.postgres.enqueue import (
    enqueue_steps,
    insert_single,
    is_single,
    needs_transaction,
)
from conveyor.backends.postgres.listener import Listener
from conveyor.backends.postgres.notifier import Notifier
from conveyor.backends.postgres.outcomes import Finished, finish_outcomes
from conveyor.backends.postgres.rows import (
    claimed_from_row,
    job_from_row,
    worker_from_row,
)
from conveyor.backends.postgres.schema import Migrator
from conveyor.backends.postgres.snapshot import export_records, import_records
from conveyor.backends.postgres.steps import Steps, drive, drive_async
from conveyor.backends.postgres.transactional import async_cursor, in_transaction, sync_cursor
from conveyor.backends.sql import load_queries
from conveyor.backends.tally import ENQUEUE_SETTLE, FOLD_MARGIN, Tally, minute_of
from conveyor.backends.turns import claim_in_turns
from conveyor.errors import IdempotencyConflict, InvalidTransition, JobNotFound, WorkerNotFound
from conveyor.job import CANCELLABLE_STATES, REQUEUEABLE_STATES, Job, JobState
from conveyor.limits import QueueGate, QuietHours, RateLimit
from conveyor.limits.breakers import Breaker, BreakerRow, closed_by_hand, opened_by_hand
from conveyor.limits.buckets import Bucket, admit, bucket_updates, picked
from conveyor.limits.gates import quiet_queues, rate_updates, rooms, started_by_queue
from conveyor.settings import Settings
from conveyor.snapshot.records import Record, Summary
from conveyor.worker_info import WorkerInfo, WorkerRegistration, WorkerState

if TYPE_CHECKING:
    from conveyor.backends.postgres.async_enqueue import AsyncSingles
    from conveyor.backends.postgres.sync_enqueue import SyncSingles

#: Seconds the first change_marker() call waits for the LISTEN session (connecting is a few ms;
#: with the server down it gives up and the listener keeps trying in the background).
_FIRST_LISTEN_WAIT = 2.0
#: The queries of schedules (periodic jobs).
S = load_queries("conveyor.backends.postgres", "schedules.sql")


class PostgresBackend(Backend):
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] | None = None,
        *,
        auto_migrate: bool | None = None,
        check_schema: bool = True,
        pool: ConnectionPool[Any] | None = None,
    ) -> None:
        """``pool``: a psycopg ConnectionPool of the application's own to run on (see lent.py);
        ``settings.url`` must then be how it connects (``lent.url_of``)."""
        super().__init__()
        self.settings = settings
        self._db = Database(settings, pool=pool)
        #: "database "x" on host:port (schema s)": how errors name this store.
        self.target = self._db.target
        self._migrator = Migrator(self._db)
        if check_schema:
            # The pool opens as soon as the check has connected: its first connection is made
            # in the background meanwhile, so a starting worker waits for one connection, not
            # two in a row (and a server that cannot be reached fails the check alone).
            try:
                self._migrator.ensure(
                    settings.auto_migrate if auto_migrate is None else auto_migrate,
                    connected=self._db.open,
                )
            except BaseException:
                self._db.close()
                raise
        else:
            self._db.open()
        # With an injected clock (tests), its time is passed to every query as %(now)s;
        # otherwise %(now)s is NULL and the queries use the server's now().
        self._injected_clock = clock
        self._clock = clock or DatabaseClock(self._server_now)
        self._channel = f"{settings.postgres_schema}_jobs"
        # A NOTIFY wakes this process's idle workers at once, as a local enqueue does.
        self._listener = Listener(self._connect_listener, self._channel, self._notify_local)
        # Jobs ending, for those waiting on results: a channel of its own, so that finishes do
        # not wake idle workers. Its listener starts when someone first waits.
        self._finished_channel = f"{settings.postgres_schema}_finished"
        self._finish_listener = Listener(
            self._connect_listener, self._finished_channel, self._finished_local
        )
        self._notifier = Notifier(self._connect_notifier)
        #: enqueue_one_async from event loops, on sessions of their own (made on its first
        #: call: asyncio is no import of a heartbeat process); not on a pool the application
        #: lent us, whose connections are the application's to count.
        self._singles: AsyncSingles | None = None
        self._sync_singles: SyncSingles | None = None
        #: Single enqueues on sessions of their own (not with a lent pool: the application
        #: decides what connects).
        self._singles_allowed = pool is None
        self._singles_lock = threading.Lock()
        self._queue_turn = itertools.count()
        self._capped = CappedQueues(self.now)
        #: Whether any rate limit bucket of a task exists (the same cache, of one name).
        self._limited = CappedQueues(self.now)
        #: The breakers that are not closed, kept like the capped queues.
        self._unsettled = CappedQueues(self.now)

    # --- schema ---------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        return self._migrator.migrate()

    def verify_schema(self) -> SchemaStatus:
        return self._migrator.verify()

    # --- enqueue --------------------------------------------------------------------------

    def enqueue_many(
        self,
        jobs: Sequence[NewJob],
        meanwhile: Callable[[list[EnqueueResult]], None] | None = None,
    ) -> list[EnqueueResult]:
        if not jobs:
            return []
        now = self._now_param()

        limits = self.settings.queue_limits
        if is_single(jobs, limits):
            job = jobs[0]
            return [self._insert_single(job, now)]

        def body(cur: Cursor) -> list[EnqueueResult]:
            return drive(cur, enqueue_steps(jobs, now, limits, self._channel, None, meanwhile))

        # The plain batch (no keys, no limits, not COPYed) is one statement: one round trip.
        results = self._db.run(body, transaction=needs_transaction(jobs, limits))
        if any(job.rate_key is not None for job in jobs):
            self._limited.forget()  # this process's claims look for rate-limited jobs at once
        self._notify_local(sorted({job.queue for job in jobs}))
        return results

    def enqueue_one(self, job: NewJob) -> EnqueueResult:
        if needs_transaction((job,), self.settings.queue_limits):
            return self.enqueue_many([job])[0]
        return self._insert_single(job, self._now_param())

    def _insert_single(self, job: NewJob, now: float | None) -> EnqueueResult:
        singles = self._sync_singles or self._make_sync_singles()
        if singles is not None:
            written = singles.insert(job, now)
            if written is not None:
                return written
        result, woken = self._db.run_single(
            lambda conn: insert_single(conn, job, now, self._channel)
        )
        self._enqueued_single(job.queue, woken)
        return result

    async def enqueue_one_async(self, job: NewJob) -> EnqueueResult:
        singles = self._singles or self._make_singles()
        if singles is None or needs_transaction((job,), self.settings.queue_limits):
            return await super().enqueue_one_async(job)
        return await singles.insert(job, self._now_param())

    def _make_sync_singles(self) -> SyncSingles | None:
        # Without prepared statements (PgBouncer before 1.21) the pool's path, whose
        # wake-up the notifier sends.
        if not self._singles_allowed or self.settings.postgres_prepare_threshold < 0:
            return None
        with self._singles_lock:
            if self._sync_singles is None and self._singles_allowed:
                from conveyor.backends.postgres.sync_enqueue import SyncSingles

                self._sync_singles = SyncSingles(
                    self._db,
                    max_sessions=self.settings.postgres_pool_max_size,
                    max_idle=self.settings.postgres_pool_max_idle,
                    channel=self._channel,
                    committed=self._enqueued_single,
                )
            return self._sync_singles

    def _make_singles(self) -> AsyncSingles | None:
        if not self._singles_allowed:
            return None
        from conveyor.backends.postgres.async_enqueue import AsyncSingles

        with self._singles_lock:
            if self._singles is None and self._singles_allowed:
                self._singles = AsyncSingles(
                    self._db,
                    max_sessions=self.settings.postgres_pool_max_size,
                    prepared=self.settings.postgres_prepare_threshold >= 0,
                    channel=self._channel,
                    committed=self._enqueued_single,
                    read_clock=self.now,
                )
            return self._singles

    def _enqueued_single(self, queue: str, woken: bool) -> None:
        """A single job committed: this process's wake-up, and the notifier's after the
        commit unless the insert's own went behind it (``woken``)."""
        if not woken:
            # Committed: now the wake-up, from a session of its own (see notifier.py).
            self._after_commit((queue,))
        self._notify_local((queue,))

    def enqueue_many_in(self, connection: Any, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """enqueue_many inside the application's open transaction on its psycopg
        ``connection`` (see transactional.py); the application commits or rolls back."""
        cur = sync_cursor(connection, self.target)
        if not jobs:
            return []
        with self._db.translated():
            return drive(cur, self._in_transaction(jobs))

    async def enqueue_many_in_async(
        self, connection: Any, jobs: Sequence[NewJob]
    ) -> list[EnqueueResult]:
        """enqueue_many_in on the application's psycopg AsyncConnection."""
        cur = async_cursor(connection, self.target)
        if not jobs:
            return []
        with self._db.translated():
            return await drive_async(cur, self._in_transaction(jobs))

    def _in_transaction(self, jobs: Sequence[NewJob]) -> Steps[list[EnqueueResult]]:
        limits = self.settings.queue_limits
        return in_transaction(
            self.settings.postgres_schema,
            self._now_param(),
            lambda now, written: enqueue_steps(jobs, now, limits, self._channel, written),
        )

    # --- the run of a job -----------------------------------------------------------------

    def claim(
        self, worker_id: str, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        params: dict[str, Any] = {
            "now": self._now_param(),
            "lease": float(lease),
            "worker_id": worker_id,
        }
        capped, unsettled = self._cached_flow()
        limited = self.rate_limited()
        if limited:
            one_statement = False
        elif queues is None:
            one_statement = not capped
        else:
            one_statement = len(queues) == 1 and queues[0] not in capped
        # Circuit breakers that are not closed: the claim reads them in its transaction.
        if not unsettled:
            self.breaker_probe_at = None
        if one_statement and not unsettled:
            # Promotion and claim in one pipeline: one round trip, and their implicit
            # transaction needs no BEGIN/COMMIT round trips.
            def body(cur: Cursor) -> list[tuple[Any, ...]]:
                conn = cur.connection
                with conn.pipeline():
                    conn.execute(Q["claim_plan"])
                    conn.execute(Q["promote_due"], {"now": params["now"]})
                    if queues is None:
                        claimed = conn.execute(Q["claim_any"], {**params, "limit": limit})
                    else:
                        query_params = {**params, "queue": queues[0], "limit": limit}
                        claimed = conn.execute(Q["claim_queue"], query_params)
                return claimed.fetchall()

            rows = self._db.run(body, transaction=False)
        else:
            # An explicit transaction: it holds the locks of capped queues until the claimed
            # runs are committed, and a failure cannot strand the runs already claimed.
            rows = self._db.run(
                lambda cur: self._claim_in_transaction(
                    cur, params, queues, limit, capped, limited, unsettled
                )
            )
        rows.sort(key=lambda r: (-r[5], r[11], r[0]))
        return [claimed_from_row(row) for row in rows]

    def claim_suspect(
        self, worker_id: str, queues: Sequence[str] | None, lease: float
    ) -> ClaimedJob | None:
        now = self._now_param()
        # The cached names are read before the transaction: a refresh takes a connection of
        # its own, which a pool of one (an application's lent pool) could never give.
        capped, unsettled = self._cached_flow()

        def body(cur: Cursor) -> tuple[Any, ...] | None:
            filters = self._suspect_filters(cur, queues, now, capped, unsettled)
            pick_params = {"now": now, **filters}
            picked = cur.execute(Q["pick_suspect"], pick_params).fetchone()
            if picked is None:
                return None
            queue, task, key = str(picked[1]), str(picked[2]), picked[3]
            gates: list[QueueGate] = []
            at = 0.0
            if queue in capped:
                # pick_suspect counted without the queue's lock: count again holding it, as
                # every claim from a gated queue does, and ask its other gates too.
                cur.execute(Q["lock_queue_limits"], {"queues": [queue]})
                found = cur.execute(Q["queue_gates"], {"queues": [queue], "now": now}).fetchall()
                gates = [QueueGate.from_row(r) for r in found]
                at = float(found[0][8]) if found else 0.0
                if rooms(gates, at).get(queue, 1) <= 0:
                    return None
            bucket: Bucket | None = None
            if key is not None:
                # Its task's token, under the bucket's lock: a claim holding it spends it now.
                locked = cur.execute(Q["lock_suspect_bucket"], {"task": task, "key": key})
                found_bucket = locked.fetchone()
                if found_bucket is None:
                    return None
                bucket = Bucket.from_row(found_bucket)
                at = at or self._breaker_now(cur, now)
                if not RateLimit.allows(bucket.rate_next, at):
                    return None
            params = {"now": now, "lease": float(lease), "worker_id": worker_id, "id": picked[0]}
            row: tuple[Any, ...] | None = cur.execute(Q["claim_suspect"], params).fetchone()
            if row is not None:
                # A suspect's start spends a token of its queue's and its task's rate limits.
                for name, rate_next in rate_updates(gates, {queue: 1}, at):
                    cur.execute(Q["take_rate"], {"queue": name, "rate_next": rate_next})
                if bucket is not None:
                    rate_next = bucket.rate.next_after(bucket.rate_next, at, 1)
                    cur.execute(
                        Q["take_bucket"], {"tasks": [task], "keys": [key], "nexts": [rate_next]}
                    )
            return row

        row = self._db.run(body)
        return None if row is None else claimed_from_row(row)

    def suspect_waiting(self, queues: Sequence[str] | None) -> bool:
        now = self._now_param()
        capped, unsettled = self._cached_flow()

        def body(cur: Cursor) -> tuple[Any, ...] | None:
            params = {"now": now, **self._suspect_filters(cur, queues, now, capped, unsettled)}
            return cur.execute(Q["peek_suspect"], params).fetchone()

        row = self._db.run(body, transaction=False, idempotent=True)
        return row is not None

    def _cached_flow(self) -> tuple[frozenset[str], bool]:
        """The queues with gates, and whether some breaker is not closed (both cached)."""
        return self._capped.get(self._capped_queues), bool(
            self._unsettled.get(self._unsettled_breakers)
        )

    def _suspect_filters(
        self,
        cur: Cursor,
        queues: Sequence[str] | None,
        now: float | None,
        capped: frozenset[str],
        unsettled: bool,
    ) -> dict[str, Any]:
        """pick_suspect's parameters beside the time: the queues asked for, those of them in
        quiet hours (a check left to Python), and the tasks behind breakers that are not
        closed. Reads only while some queue has gates, or some breaker is not closed."""
        wanted = sorted(capped if queues is None else capped.intersection(queues))
        closed: list[str] = []
        held: list[str] = []
        if wanted:
            rows = cur.execute(Q["queue_gates"], {"queues": wanted, "now": now}).fetchall()
            if rows:
                closed = quiet_queues([QueueGate.from_row(r) for r in rows], float(rows[0][8]))
        if unsettled:
            held = held_tasks(PostgresBreakers(cur), self._breaker_now(cur, now))
        return {
            "queues": None if queues is None else list(queues),
            "closed": closed,
            "held": held,
        }

    @staticmethod
    def _breaker_now(cur: Cursor, now: float | None) -> float:
        """The transaction's time (or the injected clock's), in UNIX seconds."""
        return PostgresBreakers(cur).now(now)

    def _claim_in_transaction(
        self,
        cur: Cursor,
        params: dict[str, Any],
        queues: Sequence[str] | None,
        limit: int,
        capped: frozenset[str],
        limited: bool = False,
        unsettled: bool = False,
    ) -> list[tuple[Any, ...]]:
        """A claim from several queues, or from gated ones: queue after queue, each gated one
        up to the room its gates leave; first, with ``unsettled`` breakers, their probes, and
        the tasks behind them skipped from then on; then, while tasks have rate limits, one job
        from each of their buckets whose next start has come."""
        cur.execute(Q["claim_plan"])
        cur.execute(Q["promote_due"], {"now": params["now"]})
        taken: list[tuple[Any, ...]] = []
        # --- circuit breakers (conveyor/limits/breakers.py) ---
        held: list[str] = []
        if unsettled:
            probes, held = self._breaker_gate(cur, params, queues, limit, capped, limited)
            taken += probes
            limit -= len(probes)
            if limit <= 0:
                return taken
        # --- rate limits of tasks (conveyor/limits/buckets.py), past the held tasks ---
        if limited:
            rated = self._claim_rate_limited(cur, params, queues, limit, capped, held=held)
            taken += rated
            limit -= len(rated)
            if limit <= 0:
                return taken
        if held:
            params = {**params, "held": held}
        any_query = QB["claim_any_held"] if held else Q["claim_any"]
        queue_query = QB["claim_queue_held"] if held else Q["claim_queue"]
        # --- end of circuit breakers ---
        if not capped and (queues is None or len(queues) == 1):
            if queues is None:
                rest = cur.execute(any_query, {**params, "limit": limit})
            else:
                rest = cur.execute(queue_query, {**params, "queue": queues[0], "limit": limit})
            return taken + rest.fetchall()
        if queues is None:
            queues = [row[0] for row in cur.execute(Q["ready_queues"])]
            if not held and capped.isdisjoint(queues):
                # Global order as usual; a job that reaches a capped queue meanwhile waits.
                query_params = {**params, "limit": limit, "capped": sorted(capped)}
                return taken + cur.execute(Q["claim_any_except"], query_params).fetchall()
        wanted = sorted(capped.intersection(queues))
        # --- queue gates (conveyor/limits/gates.py): caps, pauses, quiet hours, rates ---
        gates: list[QueueGate] = []
        now = 0.0
        if wanted:
            cur.execute(Q["lock_queue_limits"], {"queues": wanted})
            gate_params = {"queues": wanted, "now": params["now"]}
            rows = cur.execute(Q["queue_gates"], gate_params).fetchall()
            gates = [QueueGate.from_row(row) for row in rows]
            now = float(rows[0][8]) if rows else 0.0
        claimed = claim_in_turns(
            queues,
            next(self._queue_turn),
            limit,
            rooms(gates, now),
            lambda queue, take: list(
                cur.execute(queue_query, {**params, "queue": queue, "limit": take}).fetchall()
            ),
        )
        for queue, rate_next in rate_updates(gates, started_by_queue(claimed), now):
            cur.execute(Q["take_rate"], {"queue": queue, "rate_next": rate_next})
        # --- end of queue gates ---
        return taken + claimed

    def _claim_rate_limited(
        self,
        cur: Cursor,
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
        pick_params = {
            "now": params["now"],
            "any_queue": queues is None,
            "queues": [] if queues is None else list(queues),
            "limit": limit,
            "held": list(held),
            "only": None if only is None else list(only),
        }
        rows = cur.execute(Q["pick_rate_limited"], pick_params).fetchall()
        picks = picked(rows)
        if not picks:
            return []
        now = float(rows[0][6])
        ids = list(picks)
        gates: list[QueueGate] = []
        if capped:
            queue_of = {int(i): str(q) for i, q in cur.execute(Q["queues_of"], {"ids": ids})}
            gated = sorted(capped.intersection(queue_of.values()))
            if gated:
                cur.execute(Q["lock_queue_limits"], {"queues": gated})
                gate_params = {"queues": gated, "now": params["now"]}
                gates = [QueueGate.from_row(r) for r in cur.execute(Q["queue_gates"], gate_params)]
                ids = admit(picks, queue_of, rooms(gates, now))
                if not ids:
                    return []
        claimed = cur.execute(Q["claim_ids"], {**params, "ids": ids}).fetchall()
        # Later gated claims of this transaction read the queues' rate tokens as moved here.
        for queue, rate_next in rate_updates(gates, started_by_queue(claimed), now):
            cur.execute(Q["take_rate"], {"queue": queue, "rate_next": rate_next})
        updates = bucket_updates(picks, (int(r[0]) for r in claimed), now)
        if updates:
            cur.execute(
                Q["take_bucket"],
                {
                    "tasks": [task for task, _, _ in updates],
                    "keys": [key for _, key, _ in updates],
                    "nexts": [rate_next for _, _, rate_next in updates],
                },
            )
        return list(claimed)

    # --- circuit breakers in the claim ---------------------------------------------------

    def _breaker_gate(
        self,
        cur: Cursor,
        params: dict[str, Any],
        queues: Sequence[str] | None,
        limit: int,
        capped: frozenset[str],
        limited: bool,
    ) -> tuple[list[tuple[Any, ...]], list[str]]:
        """The probes this claim took, and the tasks it must skip. A probe of a rate-limited
        task takes its bucket's token like any start."""

        def rate_probe(tasks: Sequence[str]) -> tuple[Any, ...] | None:
            if not limited:
                return None
            found = self._claim_rate_limited(cur, params, queues, 1, capped, only=tasks)
            return found[0] if found else None

        store = PostgresBreakers(cur, params, rate_probe)
        gate = claim_gate(store, store.now(params["now"]), queues, capped, limit)
        self.breaker_probe_at = gate.next_probe_at
        return gate.probes, gate.held

    def _unsettled_breakers(self) -> list[str]:
        return self._names(QB["unsettled_breakers"])

    def breakers(self) -> list[BreakerRow]:
        return self._db.run(list_breakers, transaction=False, idempotent=True)

    def set_breaker(self, breaker: Breaker, opened: bool) -> BreakerRow:
        def body(cur: Cursor) -> BreakerRow:
            store = PostgresBreakers(cur)
            now = store.now(self._now_param())
            store.ensure([breaker], now)
            [before] = store.lock([breaker.name], wait=True)
            if opened:
                row = opened_by_hand(before, breaker, now)
            else:
                row = closed_by_hand(before, breaker)
            store.save(row, now)
            return row

        row = self._db.run(body)
        self._unsettled.forget()
        return row

    def capped_queues(self) -> frozenset[str]:
        return self._capped.get(self._capped_queues)

    def _capped_queues(self) -> list[str]:
        return self._names(Q["capped_queues"])

    def _names(self, query: Any) -> list[str]:
        """The first column of a read outside any transaction, as strings (queue or breaker
        names the processes cache)."""
        rows = self._db.run(
            lambda cur: cur.execute(query).fetchall(), transaction=False, idempotent=True
        )
        return [str(row[0]) for row in rows]

    def ready_queues(self) -> frozenset[str]:
        rows = self._db.run(
            lambda cur: cur.execute(Q["ready_queues"]).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return frozenset(str(row[0]) for row in rows)

    def extend_leases(self, tokens: Sequence[str], lease: float) -> LeaseReport:
        if not tokens:
            return LeaseReport()
        params = {"now": self._now_param(), "lease": float(lease), "tokens": list(tokens)}
        rows = self._db.run(
            lambda cur: cur.execute(Q["extend_leases"], params).fetchall(), transaction=False
        )
        extended = frozenset(str(token) for token, _, was_extended in rows if was_extended)
        # Runs whose rows another transaction held are still this worker's (see the query).
        return LeaseReport(
            extended=extended,
            lost=frozenset(tokens) - {str(token) for token, _, _ in rows},
            cancel_requested=frozenset(str(token) for token, cancel, _ in rows if cancel),
        )

    def cancel_requests(self, worker_id: str) -> frozenset[str]:
        rows = self._db.run(
            lambda cur: cur.execute(Q["cancel_requests"], {"worker_id": worker_id}).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return frozenset(str(row[0]) for row in rows)

    def save_progress(
        self, job_id: int, token: str, progress_json: str | None, checkpoint_json: str | None
    ) -> bool:
        params = {
            "id": job_id,
            "token": token,
            "progress": progress_json,
            "checkpoint": checkpoint_json,
        }
        rowcount = self._db.run(
            lambda cur: cur.execute(Q["save_progress"], params).rowcount, transaction=False
        )
        return bool(rowcount == 1)

    def finish_many(self, outcomes: Sequence[Outcome]) -> list[FinishResult]:
        if not outcomes:
            return []
        now = self._now_param()

        reporting = any(o.breaker is not None for o in outcomes)
        changed = False

        def body(cur: Cursor) -> Finished:
            nonlocal changed
            finished = finish_outcomes(cur, outcomes, now, self._channel)
            if reporting:
                applied = [
                    o
                    for o, r in zip(outcomes, finished.results, strict=True)
                    if r.applied and o.breaker is not None
                ]
                store = PostgresBreakers(cur)
                changed = record_outcomes(store, applied, store.now(now)) if applied else False
            return finished

        # The common batch, all successes, is a single UPDATE: it needs no transaction block
        # (one round trip instead of three).
        single = not reporting and all(o.kind is OutcomeKind.SUCCEEDED for o in outcomes)
        finished = self._db.run(body, transaction=not single)
        if changed:
            self._unsettled.forget()
        # Committed: the wake-ups of retries and releases, and the word to those waiting on
        # results, from the notifier (see notifier.py).
        self._after_commit(finished.queues, ended=finished.ended)
        self._finished_local()
        return finished.results

    # --- caps on running jobs -------------------------------------------------------------

    def set_concurrency_limit(self, queue: str, max_running: int | None) -> None:
        def body(cur: Cursor) -> None:
            if max_running is None:
                cur.execute(Q["remove_concurrency_limit"], {"queue": queue})
            else:
                cur.execute(
                    Q["set_concurrency_limit"], {"queue": queue, "max_running": max_running}
                )
            # A raised or removed cap may leave room for jobs that idle workers could take.
            self._notify(cur, [queue])

        self._db.run(body)
        self._capped.forget()
        self._notify_local([queue])

    def concurrency_limits(self) -> dict[str, int]:
        rows = self._db.run(
            lambda cur: cur.execute(Q["queue_limits"]).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return {str(queue): int(cap) for queue, cap in rows}

    # --- queue gates: pause, quiet hours, rate limits -------------------------------------

    def _set_gate(self, query: str, queue: str, **params: Any) -> None:
        def body(cur: Cursor) -> None:
            cur.execute(Q[query], {"queue": queue, **params})
            # A lifted gate may leave room for jobs that idle workers could take.
            self._notify(cur, [queue])

        self._db.run(body)
        self._capped.forget()
        self._notify_local([queue])

    def pause_queue(self, queue: str, until: float | None) -> None:
        self._set_gate("pause_queue", queue, until=until)

    def resume_queue(self, queue: str) -> None:
        self._set_gate("resume_queue", queue)

    def set_quiet_hours(self, queue: str, quiet: QuietHours | None) -> None:
        self._set_gate("set_quiet_hours", queue, quiet=None if quiet is None else quiet.to_json())

    def set_rate_limit(self, queue: str, rate: RateLimit | None) -> None:
        count, per = (None, None) if rate is None else (rate.count, rate.per)
        self._set_gate("set_rate_limit", queue, count=count, per=per)

    def rate_limited(self) -> bool:
        def read() -> list[str]:
            rows = self._db.run(
                lambda cur: cur.execute(Q["rate_buckets_exist"]).fetchall(),
                transaction=False,
                idempotent=True,
            )
            return [str(row[0]) for row in rows]

        return bool(self._limited.get(read))

    def next_rate_token(self, queues: Sequence[str] | None) -> float | None:
        if not self.rate_limited():
            return None
        params = {
            "now": self._now_param(),
            "any_queue": queues is None,
            "queues": [] if queues is None else list(queues),
        }
        rows = self._db.run(
            lambda cur: cur.execute(Q["next_rate_token"], params).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def rate_bucket_of(self, job_id: int) -> Bucket | None:
        rows = self._db.run(
            lambda cur: cur.execute(Q["rate_bucket_of"], {"id": job_id}).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return Bucket.from_row(rows[0]) if rows else None

    def queue_gates(self) -> list[QueueGate]:
        params = {"now": self._now_param()}
        rows = self._db.run(
            lambda cur: cur.execute(Q["every_queue_gate"], params).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return [QueueGate.from_row(row) for row in rows]

    # --- maintenance ----------------------------------------------------------------------

    def rescue_expired(self, exclude_worker: str | None = None) -> RescueReport:
        now = self._now_param()

        def body(cur: Cursor) -> tuple[list[tuple[Any, ...]], Settlement]:
            params = {"now": now, "exclude": exclude_worker}
            rows = cur.execute(Q["rescue_expired"], params).fetchall()
            minutes.tally_rescued(cur, rows, now)
            return rows, self._settle(cur, [(r[0], r[1], r[3]) for r in rows], now)

        rows, settlement = self._db.run(body)
        self._after_rescue(rows, settlement)
        return RescueReport(**rescued_by_state(rows))

    def reap_dead_workers(
        self,
        exclude_worker: str | None = None,
        reachable_since: float | None = None,
        forget_after: float = FORGET_DEAD_WORKERS_AFTER,
        known_dead: Sequence[str] = (),
    ) -> ReapReport:
        now = self._now_param()
        since = None if reachable_since is None else float(reachable_since)

        def body(cur: Cursor) -> tuple[list[str], list[tuple[Any, ...]], Settlement]:
            params = {
                "now": now,
                "exclude": exclude_worker,
                "since": since,
                "known_dead": list(known_dead),
            }
            marked = cur.execute(Q["mark_dead_workers"], params)
            workers = [str(r[0]) for r in marked.fetchall()]
            rows: list[tuple[Any, ...]] = []
            settlement = Settlement()
            if workers:
                rescue = {"now": now, "workers": workers}
                rows = cur.execute(Q["rescue_dead_workers"], rescue).fetchall()
                minutes.tally_rescued(cur, rows, now)
                cur.execute(Q["release_dead_leaderships"], {"workers": workers})
                settlement = self._settle(cur, [(r[0], r[1], r[3]) for r in rows], now)
            cur.execute(Q["forget_dead_workers"], {"now": now, "forget_after": float(forget_after)})
            return workers, rows, settlement

        workers, rows, settlement = self._db.run(body)
        self._after_rescue(rows, settlement)
        return ReapReport(workers=sorted(workers), **rescued_by_state(rows))

    def promote_due(self) -> int:
        now = self._now_param()

        def body(cur: Cursor) -> int:
            counts = cur.execute(Q["promote_due"], {"now": now}).fetchall()
            self._notify(cur, (queue for queue, _ in counts))
            return sum(int(count) for _, count in counts)

        return self._db.run(body)

    def next_due(self) -> float | None:
        row = self._db.run(
            lambda cur: cur.execute(Q["next_due"]).fetchone(), transaction=False, idempotent=True
        )
        return None if row is None or row[0] is None else float(row[0])

    def prune(self, older_than: float, batch: int = 1000) -> int:
        params = {"now": self._now_param(), "older_than": float(older_than), "batch": batch}
        row = self._db.run(
            lambda cur: cur.execute(Q["prune"], params).fetchone(), transaction=False
        )
        return 0 if row is None else int(row[0])

    def upkeep(self) -> bool:
        """VACUUM (ANALYZE) the jobs table when autovacuum will not: it is off for the server
        or the table, and ``postgres_self_vacuum`` is on. Without it the table and its indexes
        bloat and claims slow down under steady load."""
        if not self.settings.postgres_self_vacuum:
            return False

        def autovacuum_on(cur: Cursor) -> bool:
            row = cur.execute(Q["autovacuum_on"]).fetchone()
            return bool(row and row[0])

        if self._db.run(autovacuum_on, idempotent=True):
            return False

        def vacuum(cur: Cursor) -> None:
            cur.execute(Q["vacuum_gently"])
            cur.execute(Q["vacuum_watch_client"])
            try:
                cur.execute(Q["vacuum_jobs"])
            finally:
                cur.execute(Q["vacuum_done"])
                cur.execute(Q["vacuum_unwatch_client"])

        self._db.run(vacuum, transaction=False)
        return True

    # --- workers and leadership -----------------------------------------------------------

    def register_worker(self, worker: WorkerRegistration) -> None:
        params = {
            "id": worker.id,
            "host": worker.host,
            "pid": worker.pid,
            "machine": worker.machine,
            "queues": None if worker.queues is None else list(worker.queues),
            "concurrency": worker.concurrency,
            "beat_interval": float(worker.beat_interval),
            "dead_after": float(worker.dead_after),
            "now": self._now_param(),
        }
        self._db.run(lambda cur: cur.execute(Q["register_worker"], params), transaction=False)

    def beat_worker(self, worker_id: str, state: WorkerState) -> bool | None:
        params = {"id": worker_id, "state": WorkerState(state).value, "now": self._now_param()}
        row = self._db.run(
            lambda cur: cur.execute(Q["beat_worker"], params).fetchone(), transaction=False
        )
        return None if row is None else bool(row[0])

    def worker_stop_requested(self, worker_id: str) -> bool:
        row = self._db.run(
            lambda cur: cur.execute(Q["worker_stop_requested"], {"id": worker_id}).fetchone(),
            transaction=False,
            idempotent=True,
        )
        return row is not None and bool(row[0])

    def deregister_worker(self, worker_id: str) -> None:
        def body(cur: Cursor) -> None:
            cur.execute(Q["deregister_worker"], {"id": worker_id})
            cur.execute(Q["release_leaderships"], {"holder": worker_id})

        self._db.run(body)

    def list_workers(self) -> list[WorkerInfo]:
        def body(cur: Cursor) -> list[dict[str, Any]]:
            cur.row_factory = dict_row
            return cur.execute(Q["list_workers"]).fetchall()

        rows = self._db.run(body, transaction=False, idempotent=True)
        now = self.now()
        return [worker_from_row(row, now) for row in rows]

    def request_worker_stop(self, worker_ids: Sequence[str] | None) -> list[str]:
        wanted = None if worker_ids is None else list(dict.fromkeys(worker_ids))

        def body(cur: Cursor) -> list[str]:
            if wanted is None:
                rows = cur.execute(Q["request_every_worker_stop"]).fetchall()
                return [str(r[0]) for r in rows]
            found = {str(r[0]) for r in cur.execute(Q["request_worker_stop"], {"ids": wanted})}
            for worker_id in wanted:
                if worker_id not in found:
                    raise WorkerNotFound(worker_id)  # rolls back the requests of the others
            return wanted

        return self._db.run(body)

    def acquire_leadership(self, name: str, holder: str, ttl: float) -> bool:
        params = {"name": name, "holder": holder, "ttl": float(ttl), "now": self._now_param()}
        row = self._db.run(
            lambda cur: cur.execute(Q["acquire_leadership"], params).fetchone(), transaction=False
        )
        return row is not None

    def release_leadership(self, name: str, holder: str) -> None:
        params = {"name": name, "holder": holder}
        self._db.run(lambda cur: cur.execute(Q["release_leadership"], params), transaction=False)

    # --- schedules of periodic jobs -------------------------------------------------------

    def register_schedules(self, names: Sequence[str]) -> None:
        now = self._now_param()

        def body(cur: Cursor) -> None:
            cur.executemany(S["register_schedule"], [{"name": n, "now": now} for n in names])

        self._db.run(body)

    def schedule_states(self) -> list[ScheduleState]:
        rows = self._db.run(
            lambda cur: cur.execute(S["schedule_states"]).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return [_schedule_from_row(row) for row in rows]

    def enqueue_tick(self, name: str, tick: float, job: NewJob) -> EnqueueResult | None:
        now = self._now_param()
        limits = self.settings.queue_limits

        def body(cur: Cursor) -> EnqueueResult | None:
            params = {"name": name, "tick": tick, "now": now}
            if cur.execute(S["take_tick"], params).fetchone() is None:
                return None
            result = drive(cur, enqueue_steps([job], now, limits, self._channel))[0]
            cur.execute(S["record_tick_job"], {"name": name, "job_id": result.job_id})
            return result

        result = self._db.run(body)
        if result is not None:
            self._notify_local([job.queue])
        return result

    def set_schedule_paused(self, name: str, paused: bool) -> ScheduleState:
        params = {"name": name, "now": self._now_param(), "paused": paused}
        row = self._db.run(lambda cur: cur.execute(S["set_schedule_paused"], params).fetchone())
        assert row is not None  # an upsert returns its row
        return _schedule_from_row(row)

    # --- operator actions -----------------------------------------------------------------

    @staticmethod
    def _locked_state(cur: Cursor, job_id: int) -> JobState:
        row = cur.execute(Q["job_state"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return JobState(row[0])

    def cancel(self, job_id: int) -> Job:
        params = {"id": job_id, "now": self._now_param()}

        def body(cur: Cursor) -> Settlement | None:
            """What the cancel settled, when it ended the job (None: it did not)."""
            state = self._locked_state(cur, job_id)
            if state in CANCELLABLE_STATES:
                row = cur.execute(Q["cancel_waiting"], params).fetchone()
                if row is not None and row[0]:
                    return self._settle(cur, [(job_id, "cancelled", True)], params["now"])
                return Settlement()
            if state is JobState.RUNNING:
                cur.execute(Q["request_cancel"], {"id": job_id})
            elif state is not JobState.CANCELLED:
                raise InvalidTransition(job_id, state, "cancel")
            return None

        settlement = self._db.run(body)
        if settlement is not None:
            self._after_commit(settlement.queues, ended=True)
        self._finished_local()
        return self.get(job_id)

    def requeue(
        self, job_ids: Sequence[int], reset_attempts: bool = False, revive_children: bool = False
    ) -> list[Job]:
        now = self._now_param()

        def body(cur: Cursor) -> set[str]:
            queues: set[str] = set()
            for job_id in job_ids:
                state = self._locked_state(cur, job_id)
                if state not in REQUEUEABLE_STATES:
                    raise InvalidTransition(job_id, state, "requeue")
                params = {"id": job_id, "now": now, "reset": reset_attempts}
                try:
                    row = cur.execute(Q["requeue"], params).fetchone()
                except psycopg.errors.UniqueViolation:
                    raise IdempotencyConflict(job_id) from None
                if row is not None:
                    queues.add(row[0])
                run_sql(cur, requeue_links(job_id, revive_children))
            self._notify(cur, queues)
            return queues

        queues = self._db.run(body)
        if queues:
            self._notify_local(sorted(queues))
        return [self.get(job_id) for job_id in job_ids]

    def discard(self, job_ids: Sequence[int]) -> int:
        def body(cur: Cursor) -> int:
            deleted = 0
            for job_id in job_ids:
                state = self._locked_state(cur, job_id)
                if state is not JobState.DEAD:
                    raise InvalidTransition(job_id, state, "discard")
                deleted += cur.execute(Q["discard"], {"id": job_id}).rowcount
            cur.execute(Q["forget_edges"], {"ids": list(job_ids)})
            return deleted

        return self._db.run(body)

    # --- reads ----------------------------------------------------------------------------

    def _read_jobs(self, query: str, params: Mapping[str, Any]) -> list[Job]:
        def body(cur: Cursor) -> list[dict[str, Any]]:
            cur.row_factory = dict_row
            return cur.execute(Q[query], params).fetchall()

        rows = self._db.run(body, transaction=False, idempotent=True)
        return [job_from_row(row) for row in rows]

    def get(self, job_id: int) -> Job:
        jobs = self._read_jobs("get_job", {"id": job_id})
        if not jobs:
            raise JobNotFound(job_id)
        return jobs[0]

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
            "states": None if states is None else [JobState(s).value for s in states],
            "queue": queue,
            "task": task,
            "limit": limit,
            "before_id": before_id,
            "key": idempotency_key,
        }
        return self._read_jobs(
            "list_jobs" if idempotency_key is None else "list_jobs_by_key", params
        )

    def dependencies(self, job_id: int) -> Dependencies:
        def body(cur: Cursor) -> tuple[Any, list[Any], list[Any]]:
            found = cur.execute(Q["get_job"], {"id": job_id}).fetchone()
            parents = cur.execute(Q["job_parents"], {"id": job_id}).fetchall()
            children = cur.execute(Q["job_children"], {"id": job_id}).fetchall()
            return found, parents, children

        found, parents, children = self._db.run(body, transaction=False, idempotent=True)
        if found is None:
            raise JobNotFound(job_id)
        return Dependencies(
            parents=[(int(p), JobState(s), r if s == "succeeded" else None) for p, s, r in parents],
            children=[(int(c), JobState(s)) for c, s in children],
        )

    def trace_context(self, job_id: int) -> str | None:
        row = self._db.run(
            lambda cur: cur.execute(Q["trace_context"], {"id": job_id}).fetchone(),
            transaction=False,
            idempotent=True,
        )
        return None if row is None else row[0]

    def workflow_jobs(self, workflow_id: str) -> list[Job]:
        return self._read_jobs("workflow_jobs", {"workflow_id": workflow_id})

    def stats(self) -> Mapping[str, Mapping[JobState, int]]:
        rows = self._db.run(
            lambda cur: cur.execute(Q["stats"]).fetchall(), transaction=False, idempotent=True
        )
        counts: dict[str, dict[JobState, int]] = {}
        for queue, state, count in rows:
            counts.setdefault(queue, {})[JobState(state)] = int(count)
        return counts

    def oldest_ready(self) -> dict[str, float]:
        rows = self._db.run(
            lambda cur: cur.execute(Q["oldest_ready"]).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return {queue: float(at) for queue, at in rows}

    def running_by_worker(self) -> dict[str, int]:
        rows = self._db.run(
            lambda cur: cur.execute(Q["running_by_worker"]).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return {worker: int(count) for worker, count in rows}

    def job_counts(self, exact_below: int) -> JobCounts:
        counted = self._db.run(
            lambda cur: minutes.job_counts(cur, exact_below), transaction=False, idempotent=True
        )
        return JobCounts(self.stats()) if counted is None else counted

    def minute_stats(self, since: float) -> list[Tally]:
        return self._db.run(
            lambda cur: minutes.minute_stats(cur, since), transaction=False, idempotent=True
        )

    def stats_totals(self) -> list[Tally]:
        rows = self._db.run(
            lambda cur: cur.execute(minutes.QS["stats_totals"]).fetchall(),
            transaction=False,
            idempotent=True,
        )
        return [minutes.from_row(row, None) for row in rows]

    def count_enqueued(self, settle: float = ENQUEUE_SETTLE, batch: int = 10_000) -> int:
        now = self._now_param()
        return self._db.run(lambda cur: minutes.count_enqueued(cur, now, settle, batch))

    def fold_stats(self, margin: float = FOLD_MARGIN) -> int:
        now = self.now()
        return self._db.run(lambda cur: minutes.fold(cur, now, margin))

    def prune_stats(self, older_than: float) -> int:
        params = {"cutoff": minute_of(self.now() - older_than)}
        return self._db.run(
            lambda cur: cur.execute(minutes.QS["prune_minutes"], params).rowcount,
            transaction=False,
        )

    # --- backup, restore and moves between engines -------------------------------------------

    def export_snapshot(self) -> Iterator[Record]:
        # A session of its own: a backup may take minutes, longer than a pooled connection
        # should be held, and its transaction settings must not leak into the pool.
        conn = self._db.connect()
        try:
            with self._db.translated():
                yield from export_records(conn)
        finally:
            conn.close()

    def import_snapshot(self, records: Iterable[Record]) -> Summary:
        now = self.now()
        conn = self._db.connect()
        try:
            with self._db.translated():
                summary = import_records(conn, records, now, self.target)
        finally:
            conn.close()
        self._capped.forget()
        self._limited.forget()
        self._unsettled.forget()
        return summary

    def now(self) -> float:
        return self._clock()

    # --- wake-ups -------------------------------------------------------------------------

    def change_marker(self) -> int:
        # The listener starts on the first call (a no-op afterwards), which waits briefly for
        # LISTEN to be in place: from then on, every commit elsewhere moves the marker.
        self._listener.start(wait=_FIRST_LISTEN_WAIT)
        return self._listener.marker

    def _notify(self, cur: Cursor, queues: Iterable[str]) -> None:
        """One NOTIFY per queue, delivered when this transaction commits."""
        names = sorted(set(queues))
        if names:
            cur.execute(Q["notify_queues"], {"channel": self._channel, "queues": names})

    def finish_marker(self) -> int:
        # As change_marker: the first call waits briefly for LISTEN to be in place.
        self._finish_listener.start(wait=_FIRST_LISTEN_WAIT)
        return self._finish_listener.marker

    def _after_commit(self, queues: Iterable[str] = (), *, ended: bool = False) -> None:
        """Once a transaction has committed: have the notifier wake the workers of ``queues``
        and, when it ``ended`` jobs, tell those waiting on results (see notifier.py)."""
        notifications = [(self._channel, queue) for queue in queues]
        if ended:
            notifications.append((self._finished_channel, ""))
        if notifications:
            self._notifier.notify(notifications)

    def _after_rescue(self, rows: Sequence[Sequence[Any]], settlement: Settlement) -> None:
        """_after_commit for the rows (id, state, queue, ...) a rescue returned, and the
        children their ends settled."""
        retrying = [row[2] for row in rows if row[1] == "retrying"]
        ended = len(retrying) < len(rows) or bool(settlement.ended)
        self._after_commit([*retrying, *settlement.queues], ended=ended)

    @staticmethod
    def _settle(cur: Cursor, rows: Sequence[Sequence[Any]], now: float | None) -> Settlement:
        """Children of the jobs in ``rows`` (id, state, has_children) that just ended, settled
        in the transaction of ``cur``; the caller notifies after the commit."""
        settlement: Settlement = run_sql(cur, settle_rows(rows, now))
        return settlement

    def _connect_listener(self) -> Connection:
        # "conveyor-listener", or "<the URL's application_name>-listener" (63 bytes at most).
        name = f"{self._db.application_name[:54]}-listener"
        # Idle for long stretches: its TCP keepalives (connection.TCP_DEFAULTS) notice a
        # silently dropped session.
        return self._db.connect(application_name=name)

    def _connect_notifier(self) -> Connection:
        return self._db.connect(application_name=f"{self._db.application_name[:54]}-notifier")

    # --- plumbing -------------------------------------------------------------------------

    def _now_param(self) -> float | None:
        return None if self._injected_clock is None else float(self._injected_clock())

    def _server_now(self) -> float:
        row = self._db.run(
            lambda cur: cur.execute(Q["server_now"]).fetchone(), transaction=False, idempotent=True
        )
        assert row is not None
        return float(row[0])

    def close(self) -> None:
        with self._singles_lock:
            self._singles_allowed = False  # none made after this
            singles, self._singles = self._singles, None
            sync_singles, self._sync_singles = self._sync_singles, None
        if singles is not None:
            singles.close()
        if sync_singles is not None:
            sync_singles.close()
        self._finish_listener.stop()
        self._notifier.close()
        self._listener.stop()
        self._db.close()


def _schedule_from_row(row: Sequence[Any]) -> ScheduleState:
    name, paused, since, last_tick, last_job_id, last_enqueued_at = row
    return ScheduleState(
        name,
        bool(paused),
        float(since),
        None if last_tick is None else float(last_tick),
        None if last_job_id is None else int(last_job_id),
        None if last_enqueued_at is None else float(last_enqueued_at),
    )
