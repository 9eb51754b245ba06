"""The PostgreSQL engine: for fleets of workers on many machines.

Every method is one transaction (or one autocommitted statement) on a pooled connection; the
SQL is in queries.sql, under the same names as the SQLite engine's. Claims lock with
``FOR UPDATE SKIP LOCKED`` so any number of workers claim side by side; every write of a run is
fenced by (id, lease token, state = 'running'); all times are the database's. Wake-ups across
processes travel by LISTEN/NOTIFY (see listener.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from conveyor.backends.base import (
    FORGET_DEAD_WORKERS_AFTER,
    Backend,
    ClaimedJob,
    EnqueueResult,
    FinishResult,
    LeaseReport,
    NewJob,
    Outcome,
    OutcomeKind,
    ReapReport,
    RescueReport,
    SchemaStatus,
    rescued_by_state,
)
from conveyor.backends.caps import CappedQueues
from conveyor.backends.postgres.clock import DatabaseClock
from conveyor.backends.postgres.connection import Connection, Cursor, Database, Q
from conveyor.backends.postgres.enqueue import enqueue_steps, needs_transaction
from conveyor.backends.postgres.listener import Listener
from conveyor.backends.postgres.outcomes import finish_outcomes
from conveyor.backends.postgres.rows import (
    claimed_from_row,
    job_from_row,
    worker_from_row,
)
from conveyor.backends.postgres.schema import Migrator
from conveyor.backends.postgres.steps import Steps, drive, drive_async
from conveyor.backends.postgres.transactional import async_cursor, in_transaction, sync_cursor
from conveyor.backends.turns import claim_in_turns
from conveyor.errors import IdempotencyConflict, InvalidTransition, JobNotFound, WorkerNotFound
from conveyor.job import CANCELLABLE_STATES, REQUEUEABLE_STATES, Job, JobState
from conveyor.settings import Settings
from conveyor.worker_info import WorkerInfo, WorkerRegistration, WorkerState

#: Seconds the first change_marker() call waits for the LISTEN session (connecting is a few ms;
#: with the server down it gives up and the listener keeps trying in the background).
_FIRST_LISTEN_WAIT = 2.0


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
            self._migrator.ensure(settings.auto_migrate if auto_migrate is None else auto_migrate)
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
        self._queue_turn = itertools.count()
        self._capped = CappedQueues(self.now)

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

        def body(cur: Cursor) -> list[EnqueueResult]:
            return drive(cur, enqueue_steps(jobs, now, limits, self._channel, None, meanwhile))

        # The plain batch (no keys, no limits, not COPYed) is one statement: one round trip.
        results = self._db.run(body, transaction=needs_transaction(jobs, limits))
        self._notify_local(sorted({job.queue for job in jobs}))
        return results

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
        capped = self._capped.get(self._capped_queues)
        if queues is None:
            one_statement = not capped
        else:
            one_statement = len(queues) == 1 and queues[0] not in capped
        if one_statement:
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
                lambda cur: self._claim_in_transaction(cur, params, queues, limit, capped)
            )
        rows.sort(key=lambda r: (-r[5], r[11], r[0]))
        return [claimed_from_row(row) for row in rows]

    def claim_suspect(
        self, worker_id: str, queues: Sequence[str] | None, lease: float
    ) -> ClaimedJob | None:
        now = self._now_param()

        def body(cur: Cursor) -> tuple[Any, ...] | None:
            queue_names = None if queues is None else list(queues)
            picked = cur.execute(Q["pick_suspect"], {"now": now, "queues": queue_names}).fetchone()
            if picked is None:
                return None
            queue = str(picked[1])
            if queue in self._capped.get(self._capped_queues):
                # pick_suspect counted without the queue's lock: count again holding it, as
                # every claim from a capped queue does.
                cur.execute(Q["lock_queue_limits"], {"queues": [queue]})
                rooms = dict(cur.execute(Q["queue_rooms"], {"queues": [queue]}).fetchall())
                if rooms.get(queue, 1) <= 0:
                    return None
            params = {"now": now, "lease": float(lease), "worker_id": worker_id, "id": picked[0]}
            return cur.execute(Q["claim_suspect"], params).fetchone()

        row = self._db.run(body)
        return None if row is None else claimed_from_row(row)

    def suspect_waiting(self, queues: Sequence[str] | None) -> bool:
        params = {"now": self._now_param(), "queues": None if queues is None else list(queues)}
        row = self._db.run(
            lambda cur: cur.execute(Q["peek_suspect"], params).fetchone(),
            transaction=False,
            idempotent=True,
        )
        return row is not None

    def _claim_in_transaction(
        self,
        cur: Cursor,
        params: dict[str, Any],
        queues: Sequence[str] | None,
        limit: int,
        capped: frozenset[str],
    ) -> list[tuple[Any, ...]]:
        """A claim from several queues, or from capped ones: queue after queue, each capped one
        up to the room its cap leaves."""
        cur.execute(Q["claim_plan"])
        cur.execute(Q["promote_due"], {"now": params["now"]})
        if queues is None:
            queues = [row[0] for row in cur.execute(Q["ready_queues"])]
            if capped.isdisjoint(queues):
                # Global order as usual; a job that reaches a capped queue meanwhile waits.
                query_params = {**params, "limit": limit, "capped": sorted(capped)}
                return list(cur.execute(Q["claim_any_except"], query_params).fetchall())
        wanted = sorted(capped.intersection(queues))
        rooms: dict[str, int] = {}
        if wanted:
            cur.execute(Q["lock_queue_limits"], {"queues": wanted})
            rooms = dict(cur.execute(Q["queue_rooms"], {"queues": wanted}).fetchall())
        return claim_in_turns(
            queues,
            next(self._queue_turn),
            limit,
            rooms,
            lambda queue, take: list(
                cur.execute(Q["claim_queue"], {**params, "queue": queue, "limit": take}).fetchall()
            ),
        )

    def capped_queues(self) -> frozenset[str]:
        return self._capped.get(self._capped_queues)

    def _capped_queues(self) -> list[str]:
        rows = self._db.run(
            lambda cur: cur.execute(Q["capped_queues"]).fetchall(),
            transaction=False,
            idempotent=True,
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
        extended = frozenset(str(token) for token, _ in rows)
        return LeaseReport(
            extended=extended,
            lost=frozenset(tokens) - extended,
            cancel_requested=frozenset(str(token) for token, cancel in rows if cancel),
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

        def body(cur: Cursor) -> list[FinishResult]:
            finished = finish_outcomes(cur, outcomes, now, self._finished_channel)
            self._notify(cur, finished.queues)
            return finished.results

        # The common batch, all successes, is a single UPDATE: it needs no transaction block
        # (one round trip instead of three).
        single = all(o.kind is OutcomeKind.SUCCEEDED for o in outcomes)
        results = self._db.run(body, transaction=not single)
        self._finished_local()
        return results

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

    # --- maintenance ----------------------------------------------------------------------

    def rescue_expired(self, exclude_worker: str | None = None) -> RescueReport:
        now = self._now_param()

        def body(cur: Cursor) -> list[tuple[Any, ...]]:
            params = {"now": now, "exclude": exclude_worker}
            rows = cur.execute(Q["rescue_expired"], params).fetchall()
            self._notify(cur, (queue for _, state, queue in rows if state == "retrying"))
            self._notify_finished(cur, rows)
            return rows

        return RescueReport(**rescued_by_state(self._db.run(body)))

    def reap_dead_workers(
        self,
        exclude_worker: str | None = None,
        reachable_since: float | None = None,
        forget_after: float = FORGET_DEAD_WORKERS_AFTER,
        known_dead: Sequence[str] = (),
    ) -> ReapReport:
        now = self._now_param()
        since = None if reachable_since is None else float(reachable_since)

        def body(cur: Cursor) -> tuple[list[str], list[tuple[Any, ...]]]:
            params = {
                "now": now,
                "exclude": exclude_worker,
                "since": since,
                "known_dead": list(known_dead),
            }
            marked = cur.execute(Q["mark_dead_workers"], params)
            workers = [str(r[0]) for r in marked.fetchall()]
            rows: list[tuple[Any, ...]] = []
            if workers:
                rescue = {"now": now, "workers": workers}
                rows = cur.execute(Q["rescue_dead_workers"], rescue).fetchall()
                cur.execute(Q["release_dead_leaderships"], {"workers": workers})
                self._notify(cur, (queue for _, state, queue in rows if state == "retrying"))
                self._notify_finished(cur, rows)
            cur.execute(Q["forget_dead_workers"], {"now": now, "forget_after": float(forget_after)})
            return workers, rows

        workers, rows = self._db.run(body)
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
        rowcount = self._db.run(
            lambda cur: cur.execute(Q["prune"], params).rowcount, transaction=False
        )
        return int(rowcount)

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

    # --- operator actions -----------------------------------------------------------------

    @staticmethod
    def _locked_state(cur: Cursor, job_id: int) -> JobState:
        row = cur.execute(Q["job_state"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return JobState(row[0])

    def cancel(self, job_id: int) -> Job:
        params = {"id": job_id, "now": self._now_param()}

        def body(cur: Cursor) -> None:
            state = self._locked_state(cur, job_id)
            if state in CANCELLABLE_STATES:
                cur.execute(Q["cancel_waiting"], params)
                self._notify_finished(cur)
            elif state is JobState.RUNNING:
                cur.execute(Q["request_cancel"], {"id": job_id})
            elif state is not JobState.CANCELLED:
                raise InvalidTransition(job_id, state, "cancel")

        self._db.run(body)
        self._finished_local()
        return self.get(job_id)

    def requeue(self, job_ids: Sequence[int], reset_attempts: bool = False) -> list[Job]:
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
    ) -> list[Job]:
        params = {
            "states": None if states is None else [JobState(s).value for s in states],
            "queue": queue,
            "task": task,
            "limit": limit,
            "before_id": before_id,
        }
        return self._read_jobs("list_jobs", params)

    def stats(self) -> Mapping[str, Mapping[JobState, int]]:
        rows = self._db.run(
            lambda cur: cur.execute(Q["stats"]).fetchall(), transaction=False, idempotent=True
        )
        counts: dict[str, dict[JobState, int]] = {}
        for queue, state, count in rows:
            counts.setdefault(queue, {})[JobState(state)] = int(count)
        return counts

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

    def _notify_finished(self, cur: Cursor, rows: Iterable[Sequence[Any]] | None = None) -> None:
        """NOTIFY those waiting on results (at commit), unless ``rows`` (id, state, ...) of a
        rescue ended no job."""
        if rows is None or any(row[1] != "retrying" for row in rows):
            cur.execute(Q["notify_finished"], {"finished_channel": self._finished_channel})

    def _connect_listener(self) -> Connection:
        # "conveyor-listener", or "<the URL's application_name>-listener" (63 bytes at most).
        name = f"{self._db.application_name[:54]}-listener"
        # Idle for long stretches: its TCP keepalives (connection.TCP_DEFAULTS) notice a
        # silently dropped session.
        return self._db.connect(application_name=name)

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
        self._finish_listener.stop()
        self._listener.stop()
        self._db.close()
