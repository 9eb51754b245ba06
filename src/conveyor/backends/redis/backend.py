"""The Redis engine. Every state transition is one Lua script (lua/), run atomically by the
server; leases and every time comparison use the server's clock (TIME inside the script), or
the injected clock of tests, passed to each script as "now".

Keys live under one prefix with a hash tag (connection.key_prefix), so one application's keys
share a Cluster slot and several applications can share a database. There is no schema: the
"migrations" of the other engines are a version number kept under the prefix.
"""

from __future__ import annotations

import itertools
import json
import operator
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import redis

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
    ReapReport,
    RescueReport,
    ScheduleState,
    SchemaStatus,
)
from conveyor.backends.caps import CappedQueues
from conveyor.backends.clock import DatabaseClock
from conveyor.backends.redis.aio import Fallback, Unanswered
from conveyor.backends.redis.connection import (
    Reads,
    check_eviction,
    connect,
    key_prefix,
    translate,
)
from conveyor.backends.redis.listener import Listener
from conveyor.backends.redis.rows import (
    claimed_order,
    flat_to_dict,
    to_breaker,
    to_claimed,
    to_job,
    to_schedule,
    to_worker,
)
from conveyor.backends.redis.scripts import Scripts
from conveyor.backends.redis.snapshot import export_records, import_records
from conveyor.backends.redis.stats import minute_rows, total_rows
from conveyor.backends.tally import ENQUEUE_SETTLE, FOLD_MARGIN, Tally, minute_of
from conveyor.errors import (
    BackendUnavailable,
    IdempotencyConflict,
    InvalidTransition,
    JobNotFound,
    QueueFull,
    SchemaError,
    UnknownParent,
    WorkerNotFound,
)
from conveyor.job import Job, JobState
from conveyor.limits import QueueGate, QuietHours, RateLimit
from conveyor.limits.breakers import Breaker, BreakerRow
from conveyor.limits.buckets import Bucket
from conveyor.settings import Settings
from conveyor.snapshot.records import Record, Summary
from conveyor.worker_info import WorkerInfo, WorkerRegistration, WorkerState
from conveyor.workflows.rules import batch_order

#: The layout of the keys; a store written by a newer layout is refused. 2: the finished jobs
#: prune may delete are a list in the order they ended (lua/prune.lua), not a sorted set.
LAYOUT_VERSION = 2
#: Jobs one prune script deletes at most: about 3 ms of server CPU (10.7 µs each, measured with
#: a million finished jobs in the store), against 11 ms for a chunk of 1,000.
_PRUNE_CHUNK = 250
#: Entries one call of migrate_ended moves.
_MIGRATE_CHUNK = 10_000
#: A state by its name, a tenth of the cost of JobState(name).
_STATES = {state.value: state for state in JobState}
#: Seconds the first change_marker() call waits for the subscription.
_FIRST_LISTEN_WAIT = 2.0


def _rescued(rows: Sequence[Any]) -> dict[str, list[int]]:
    """Pairs [id, state ...] of a rescue script as RescueReport's fields."""
    by_state: dict[str, list[int]] = {"retrying": [], "dead": [], "cancelled": []}
    for job_id, state in zip(rows[::2], rows[1::2], strict=True):
        by_state[state].append(int(job_id))
    return {
        "requeued": sorted(by_state["retrying"]),
        "dead": sorted(by_state["dead"]),
        "cancelled": sorted(by_state["cancelled"]),
    }


def _plain(job: NewJob, limits: Mapping[str, int]) -> bool:
    """Whether enqueue_plain.lua may write ``job``: nothing but its own hash and the
    indexes of its state, in a queue without a limit to check."""
    return (
        job.idempotency_key is None
        and job.rate_key is None
        and job.workflow_id is None
        and not job.depends_on
        and not job.depends_on_batch
        and job.on_parent_failure is None
        and job.trace_context is None
        and job.queue not in limits
    )


#: What the jobs of a run of enqueue_plain.lua share, and what each may send of its own.
_HEAD = operator.attrgetter(
    "task", "queue", "priority", "run_at", "delay", "max_attempts", "timeout"
)
_ARGS_JSON = operator.attrgetter("args_json")
_KWARGS_JSON = operator.attrgetter("kwargs_json")


def _add_texts(args: list[Any], run: list[NewJob]) -> None:
    """The argument texts of a run of enqueue_plain.lua, after what it sends of them."""
    if len(run) == 1:
        job = run[0]
        texts = [job.args_json, job.kwargs_json]
        sent = (texts[0] != "[]") + 2 * (texts[1] != "{}")
        args.append(sent)
        args += texts if sent == 3 else texts[sent - 1 : sent]
        return
    args_texts = list(map(_ARGS_JSON, run))
    kwargs_texts = list(map(_KWARGS_JSON, run))
    with_args = args_texts.count("[]") < len(run)
    with_kwargs = kwargs_texts.count("{}") < len(run)
    args.append(with_args + 2 * with_kwargs)
    if with_args and with_kwargs:
        args += itertools.chain.from_iterable(zip(args_texts, kwargs_texts, strict=True))
    elif with_args:
        args += args_texts
    elif with_kwargs:
        args += kwargs_texts


def _one_row(job: NewJob) -> tuple[Any, ...]:
    """A plain job as enqueue_one.lua reads it."""
    return (
        job.task,
        job.queue,
        job.args_json,
        job.kwargs_json,
        job.priority,
        "" if job.run_at is None else repr(float(job.run_at)),
        repr(float(job.delay)),
        job.max_attempts,
        "" if job.timeout is None else repr(float(job.timeout)),
    )


def _lease_tokens(count: int) -> list[str]:
    """``count`` fresh lease tokens of 128 random bits, from one read of the system's random
    source rather than one per token (a claim of 500 jobs made 500 system calls)."""
    text = secrets.token_hex(16 * count)
    return [text[i : i + 32] for i in range(0, 32 * count, 32)]


def _job_row(job: NewJob) -> list[Any]:
    """A job as enqueue.lua reads it."""
    return [
        job.task,
        job.queue,
        job.args_json,
        job.kwargs_json,
        job.priority,
        job.run_at,
        job.delay,
        job.max_attempts,
        job.timeout,
        job.idempotency_key,
        job.idempotency_scope,
        job.rate_key,
        job.workflow_id,
        list(job.depends_on),
        list(job.depends_on_batch),
        job.on_parent_failure,
        None if job.rate_limit is None else [job.rate_limit.count, job.rate_limit.per],
        *(() if job.trace_context is None else (job.trace_context,)),
    ]


class RedisBackend(Backend):
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] | None = None,
        *,
        check_schema: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.prefix = key_prefix(settings)
        self._redis = connect(settings)
        self._db = Reads(self._redis, settings.url)
        try:
            check_eviction(self._redis, settings)
        except BaseException:
            self._redis.close()
            raise
        #: An injected clock (tests) is passed to every script; None: the server's TIME.
        self._injected_clock = clock
        #: now() without a round trip: the server's TIME, measured once a minute.
        self._clock = clock or DatabaseClock(self._server_now)
        self._scripts = Scripts(self._redis, self.prefix)
        self._queue_turn = itertools.count()
        self._capped = CappedQueues(self.now)
        self._listener = Listener(self._subscriber, f"{self.prefix}:wake", self._notify_local)
        self._finish_listener = Listener(
            self._subscriber, f"{self.prefix}:finished", self._finished_local
        )
        if check_schema:
            self._check_layout(settings.auto_migrate)

    def _subscriber(self) -> Any:
        return connect(self.settings, retries=0)

    def _key(self, *parts: str | int) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def _run(self, name: str, *args: Any) -> Any:
        clock = self._injected_clock
        try:
            return self._scripts.run(name, None if clock is None else clock(), *args)
        except redis.RedisError as exc:
            raise translate(exc, self.settings.url) from exc

    def _run_enqueue(self, name: str, *args: Any) -> Any:
        """``_run`` of an enqueue script, which is not sent again once it went out: run twice,
        it would write its jobs twice."""
        clock = self._injected_clock
        try:
            return self._scripts.run(name, None if clock is None else clock(), *args, replay=False)
        except Unanswered as exc:
            raise self._unanswered(exc) from None
        except redis.RedisError as exc:
            raise translate(exc, self.settings.url) from exc

    def _unanswered(self, exc: Unanswered) -> BackendUnavailable:
        return BackendUnavailable.enqueue_lost(f"Redis at {self.settings.url}", exc)

    # --- schema ---------------------------------------------------------------------------

    def _version(self) -> int:
        return int(self._db.get(self._key("layout")) or 0)

    def _check_layout(self, auto_migrate: bool) -> None:
        current = self._version()
        if current > LAYOUT_VERSION:
            raise SchemaError(self.verify_schema().problems[0])
        if current < LAYOUT_VERSION:
            if not auto_migrate:
                raise SchemaError(
                    f"the keys under {self.prefix} have layout {current}, this Conveyor needs "
                    f"{LAYOUT_VERSION}: run `conveyor schema migrate`"
                )
            self.migrate()

    def migrate(self) -> list[int]:
        current = self._version()
        if current >= LAYOUT_VERSION:
            return []
        if current == 1:
            while int(self._run("migrate_ended", _MIGRATE_CHUNK)) > 0:
                pass
        self._db.put(self._key("layout"), LAYOUT_VERSION)
        return [LAYOUT_VERSION]

    def verify_schema(self) -> SchemaStatus:
        current = self._version()
        problems = []
        if current > LAYOUT_VERSION:
            problems.append(
                f"the keys under {self.prefix} were written by a newer Conveyor (layout "
                f"{current}, this one knows up to {LAYOUT_VERSION})"
            )
        return SchemaStatus(current=current, latest=LAYOUT_VERSION, problems=problems)

    # --- enqueue --------------------------------------------------------------------------

    def enqueue_many(
        self,
        jobs: Sequence[NewJob],
        meanwhile: Callable[[list[EnqueueResult]], None] | None = None,
    ) -> list[EnqueueResult]:
        if not jobs:
            return []
        return self._enqueue(jobs, "", 0.0)

    def enqueue_one(self, job: NewJob) -> EnqueueResult:
        if not self._single(job):
            return self._enqueue([job], "", 0.0)[0]
        return self._enqueued_one(job, self._run_enqueue("enqueue_one", *_one_row(job)))

    async def enqueue_one_async(self, job: NewJob) -> EnqueueResult:
        if self._single(job):
            clock = self._injected_clock
            try:
                reply = await self._scripts.run_async(
                    "enqueue_one", None if clock is None else clock(), *_one_row(job)
                )
            except Fallback:
                pass  # the blocking path, on a thread, retries or loads the script again
            except Unanswered as exc:
                raise self._unanswered(exc) from None
            except redis.RedisError as exc:
                raise translate(exc, self.settings.url) from exc
            else:
                return self._enqueued_one(job, reply)
        return await super().enqueue_one_async(job)

    def _single(self, job: NewJob) -> bool:
        """Whether enqueue_one.lua may write ``job``: a plain job (see _plain) whose priority
        and max_attempts are ints (the script stores their text as it comes)."""
        return (
            _plain(job, self.settings.queue_limits)
            and type(job.priority) is int
            and type(job.max_attempts) is int
        )

    def _enqueued_one(self, job: NewJob, reply: Any) -> EnqueueResult:
        result = EnqueueResult(int(reply[1]), _STATES[reply[2]], True, at=float(reply[0]))
        self._notify_local((job.queue,))
        return result

    def _enqueue(self, jobs: Sequence[NewJob], schedule: str, tick: float) -> list[EnqueueResult]:
        limits = self.settings.queue_limits
        if not schedule and all(_plain(job, limits) for job in jobs):
            return self._enqueue_plain(jobs)
        order = list(range(len(jobs)))
        if any(job.depends_on_batch for job in jobs):
            order = batch_order([job.depends_on_batch for job in jobs])  # raises on a cycle
        # Jobs that all carry an idempotency key may be sent again: a second run finds them.
        run = self._run if all(job.idempotency_key for job in jobs) else self._run_enqueue
        reply = run(
            "enqueue",
            json.dumps(dict(self.settings.queue_limits)),
            json.dumps([_job_row(job) for job in jobs]),
            schedule,
            repr(tick),
            json.dumps([i + 1 for i in order]),
        )
        status = reply[0]
        if status == "full":
            raise QueueFull(reply[1], int(reply[2]), int(reply[3]))
        if status == "parents":
            raise UnknownParent(sorted(int(i) for i in reply[1:]))
        if status == "tick":
            return []
        at = float(reply[1])
        results = [
            EnqueueResult(int(reply[i]), JobState(reply[i + 1]), bool(reply[i + 2]), at=at)
            for i in range(2, len(reply), 3)
        ]
        self._notify_local(sorted({job.queue for job in jobs}))
        return results

    def _enqueue_plain(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """The hot path: jobs as flat text arguments (enqueue_plain.lua), in runs that share
        everything but their arguments, each run's head sent once, and of the argument texts
        only those that are not empty."""
        if len(jobs) == 1:  # a single enqueue: no grouping to do
            runs = [(_HEAD(jobs[0]), list(jobs))]
        else:
            runs = [(head, list(run)) for head, run in itertools.groupby(jobs, _HEAD)]
        args: list[Any] = []
        for (task, queue, priority, run_at, delay, max_attempts, timeout), run in runs:
            args += (
                task,
                queue,
                priority,
                "" if run_at is None else repr(float(run_at)),
                repr(float(delay)),
                max_attempts,
                "" if timeout is None else repr(float(timeout)),
                len(run),
            )
            _add_texts(args, run)
        reply = self._run_enqueue("enqueue_plain", *args)
        at, first = float(reply[0]), int(reply[1])
        results: list[EnqueueResult] = []
        for (_, run), state_text in zip(runs, reply[2:], strict=True):
            state = JobState(state_text)
            start = first + len(results)
            results += [
                EnqueueResult(i, state, True, None, at) for i in range(start, start + len(run))
            ]
        self._notify_local(sorted({head[1] for head, _ in runs}))
        return results

    # --- the run of a job -----------------------------------------------------------------

    def _quiet(self, queues: Sequence[str] | None) -> list[str]:
        """The gated queues in their quiet hours now (judged here: the windows are local
        times in a time zone, which Lua cannot read)."""
        quiet = []
        now: float | None = None
        for queue in self.capped_queues():
            if queues is not None and queue not in queues:
                continue
            text = self._db.hget(self._key("gate", queue), "quiet")
            if text is None:
                continue
            if now is None:
                now = self.now()
            if QuietHours.from_json(text).is_quiet(now):
                quiet.append(queue)
        return quiet

    def claim(
        self, worker_id: str, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        return self._claim(worker_id, queues, limit, lease, unless_suspects=False)

    def claim_unless_suspects(
        self, worker_id: str, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        # Any due suspect, in whatever queue, holds the claim back: the worker's own
        # claim_suspect then judges whether it may take it.
        return self._claim(worker_id, queues, limit, lease, unless_suspects=True)

    def _claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: float,
        *,
        unless_suspects: bool,
    ) -> list[ClaimedJob]:
        if limit <= 0:
            return []
        rows, probe_at = self._run(
            "claim",
            worker_id,
            repr(float(lease)),
            limit,
            "" if queues is None else json.dumps(list(queues)),
            next(self._queue_turn),
            json.dumps(self._quiet(queues)),
            json.dumps(_lease_tokens(limit)),
            "1" if unless_suspects else "",
        )
        if probe_at == "suspects":
            return []
        self.breaker_probe_at = None if probe_at is None else float(probe_at)
        rows.sort(key=claimed_order)
        return [to_claimed(r) for r in rows]

    def claim_suspect(
        self, worker_id: str, queues: Sequence[str] | None, lease: float
    ) -> ClaimedJob | None:
        if not self.suspect_waiting(queues):
            return None
        row = self._run(
            "claim_suspect",
            worker_id,
            repr(float(lease)),
            "0",
            "" if queues is None else json.dumps(list(queues)),
            json.dumps(self._quiet(queues)),
            secrets.token_hex(16),
        )
        return None if row is None else to_claimed(row)

    def suspect_waiting(self, queues: Sequence[str] | None) -> bool:
        if not self._db.exists(self._key("suspects")):
            return False
        found = self._run(
            "claim_suspect",
            "",
            "0",
            "1",
            "" if queues is None else json.dumps(list(queues)),
            json.dumps(self._quiet(queues)),
            "",
        )
        return bool(found)

    def extend_leases(self, tokens: Sequence[str], lease: float) -> LeaseReport:
        if not tokens:
            return LeaseReport()
        rows = self._run("extend_leases", repr(float(lease)), *tokens)
        extended = frozenset(rows[::2])
        cancels = frozenset(t for t, c in zip(rows[::2], rows[1::2], strict=True) if c == "1")
        return LeaseReport(
            extended=extended, lost=frozenset(tokens) - extended, cancel_requested=cancels
        )

    def cancel_requests(self, worker_id: str) -> frozenset[str]:
        return frozenset(self._db.smembers(self._key("cancels", worker_id)))

    def save_progress(
        self, job_id: int, token: str, progress_json: str | None, checkpoint_json: str | None
    ) -> bool:
        written = self._run(
            "save_progress", job_id, token, progress_json or "", checkpoint_json or ""
        )
        return bool(written)

    def finish_many(self, outcomes: Sequence[Outcome]) -> list[FinishResult]:
        if not outcomes:
            return []
        rows = []
        for o in outcomes:
            escalate = o.escalate
            rows.append(
                [
                    o.job_id,
                    o.token,
                    o.kind.value,
                    o.result_json,
                    None if o.error is None else json.dumps(o.error.to_dict()),
                    o.retry_in,
                    o.dead_reason,
                    o.checkpoint_json,
                    None if o.retry_budget is None else list(o.retry_budget),
                    None
                    if escalate is None
                    else [
                        escalate.task,
                        escalate.queue,
                        escalate.priority,
                        escalate.max_attempts,
                        escalate.timeout,
                        escalate.why,
                    ],
                    None if o.breaker is None else [_declared(o.breaker.breaker), o.breaker.failed],
                ]
            )
        states = self._run("finish", json.dumps(rows))
        self._finished_local()
        return [
            FinishResult(o.job_id, state is not None, None if state is None else JobState(state))
            for o, state in zip(outcomes, states, strict=True)
        ]

    # --- caps and gates -------------------------------------------------------------------

    def _set_gate(self, queue: str, upsert: bool = True, **fields: Any) -> None:
        """Set (or with None remove) gate fields of ``queue``; without ``upsert``, only in a
        row the queue already has."""
        args: list[Any] = [queue, int(upsert)]
        for name, value in fields.items():
            args += [name, "" if value is None else value]
        self._run("set_gate", *args)
        self._capped.forget()
        # A raised or lifted gate may leave room for jobs that idle workers here could take.
        self._notify_local([queue])

    def set_concurrency_limit(self, queue: str, max_running: int | None) -> None:
        self._set_gate(queue, max_running is not None, max_running=max_running)

    def concurrency_limits(self) -> dict[str, int]:
        return {
            gate.queue: gate.max_running for gate in self._gates() if gate.max_running is not None
        }

    def capped_queues(self) -> frozenset[str]:
        return self._capped.get(lambda: self._db.smembers(self._key("gated")))

    def ready_queues(self) -> frozenset[str]:
        queues = sorted(self._db.smembers(self._key("queues")))
        found = self._db.many("exists", [self._key("ready", queue) for queue in queues])
        return frozenset(q for q, there in zip(queues, found, strict=True) if there)

    def pause_queue(self, queue: str, until: float | None) -> None:
        self._set_gate(queue, paused_until="inf" if until is None else repr(float(until)))

    def resume_queue(self, queue: str) -> None:
        self._set_gate(queue, False, paused_until=None)

    def set_quiet_hours(self, queue: str, quiet: QuietHours | None) -> None:
        self._set_gate(queue, quiet=None if quiet is None else quiet.to_json())

    def set_rate_limit(self, queue: str, rate: RateLimit | None) -> None:
        if rate is None:
            self._set_gate(queue, rate_count=None, rate_per=None, rate_next=None)
        else:
            self._set_gate(queue, rate_count=rate.count, rate_per=repr(float(rate.per)))

    def _gates(self) -> list[QueueGate]:
        queues = sorted(self._db.smembers(self._key("gate_rows")))
        names = ["max_running", "paused_until", "quiet", "rate_count", "rate_per", "rate_next"]
        rows = self._db.many("hmget", [self._key("gate", queue) for queue in queues], names)
        counts = self._db.many("scard", [self._key("runq", queue) for queue in queues])
        gates = []
        for queue, g, running in zip(queues, rows, counts, strict=True):
            max_running, paused, quiet, count, per, rate_next = g
            paused_until = None if paused is None else float(paused)
            row = (queue, max_running, running if max_running is not None else None)
            gates.append(QueueGate.from_row((*row, paused_until, quiet, count, per, rate_next)))
        return gates

    def queue_gates(self) -> list[QueueGate]:
        return self._gates()

    def rate_limited(self) -> bool:
        return self._db.exists(self._key("buckets"))

    def next_rate_token(self, queues: Sequence[str] | None) -> float | None:
        if not self.rate_limited():
            return None
        found = self._run("next_rate_token", "" if queues is None else json.dumps(list(queues)))
        return None if found is None else float(found)

    def rate_bucket_of(self, job_id: int) -> Bucket | None:
        task, key = self._db.hmget(self._key("job", job_id), ["task", "rate_key"])
        if task is None or key is None:
            return None
        names = ["task", "key", "rate_count", "rate_per", "rate_next"]
        row = self._db.hmget(self._key("bucket", f"{task}\n{key}"), names)
        return None if row[0] is None else Bucket.from_row(row)

    # --- circuit breakers -----------------------------------------------------------------

    def breakers(self) -> list[BreakerRow]:
        names = sorted(self._db.smembers(self._key("breakers")))
        found = self._db.many("hgetall", [self._key("breaker", name) for name in names])
        return [to_breaker(h) for h in found if h]

    def set_breaker(self, breaker: Breaker, opened: bool) -> BreakerRow:
        self._run("set_breaker", json.dumps(_declared(breaker)), int(opened))
        [row] = [r for r in self.breakers() if r.name == breaker.name]
        if not opened:
            self._notify_local(sorted(self.ready_queues()))
        return row

    # --- maintenance ----------------------------------------------------------------------

    def rescue_expired(self, exclude_worker: str | None = None) -> RescueReport:
        rows = self._run("rescue", exclude_worker or "")
        return RescueReport(**_rescued(rows))

    def reap_dead_workers(
        self,
        exclude_worker: str | None = None,
        reachable_since: float | None = None,
        forget_after: float = FORGET_DEAD_WORKERS_AFTER,
        known_dead: Sequence[str] = (),
    ) -> ReapReport:
        reply = self._run(
            "reap",
            exclude_worker or "",
            "" if reachable_since is None else repr(float(reachable_since)),
            repr(float(forget_after)),
            json.dumps(list(known_dead)),
        )
        workers, rows = reply[0], reply[1]
        return ReapReport(workers=sorted(workers), **_rescued(rows))

    def promote_due(self) -> int:
        return int(self._run("promote"))

    def next_due(self) -> float | None:
        return self._db.first_score(self._key("due"))

    def prune(self, older_than: float, batch: int = 1000) -> int:
        # A script holds the server while it runs: deletions go in chunks, so that claims and
        # finishes get in between.
        pruned = 0
        while pruned < batch:
            chunk = min(_PRUNE_CHUNK, batch - pruned)
            deleted = int(self._run("prune", repr(float(older_than)), chunk))
            pruned += deleted
            if deleted < chunk:
                break
        return pruned

    # --- workers and leadership -----------------------------------------------------------

    def register_worker(self, worker: WorkerRegistration) -> None:
        self._run(
            "workers",
            "register",
            worker.id,
            json.dumps(
                {
                    "host": worker.host,
                    "pid": str(worker.pid),
                    "machine": worker.machine,
                    "queues": None if worker.queues is None else json.dumps(list(worker.queues)),
                    "concurrency": str(worker.concurrency),
                    "beat_interval": repr(float(worker.beat_interval)),
                    "dead_after": repr(float(worker.dead_after)),
                }
            ),
        )

    def beat_worker(self, worker_id: str, state: WorkerState) -> bool | None:
        reply = self._run("workers", "beat", worker_id, WorkerState(state).value)
        return None if reply is None else reply == "1"

    def worker_stop_requested(self, worker_id: str) -> bool:
        return self._db.hget(self._key("worker", worker_id), "stop_requested") == "1"

    def deregister_worker(self, worker_id: str) -> None:
        self._run("workers", "deregister", worker_id)

    def list_workers(self) -> list[WorkerInfo]:
        ids = self._db.zrange(self._key("workers"), 0, -1)
        found = self._db.many("hgetall", [self._key("worker", worker_id) for worker_id in ids])
        now = self.now()
        return [to_worker(h, now) for h in found if h]

    def request_worker_stop(self, worker_ids: Sequence[str] | None) -> list[str]:
        if worker_ids is None:
            return list(self._run("workers", "stop_all", ""))
        wanted = list(dict.fromkeys(worker_ids))
        missing = self._run("workers", "stop", json.dumps(wanted))
        if missing:
            raise WorkerNotFound(missing)
        return wanted

    def acquire_leadership(self, name: str, holder: str, ttl: float) -> bool:
        return bool(self._run("leaders", "acquire", name, holder, repr(float(ttl))))

    def release_leadership(self, name: str, holder: str) -> None:
        self._run("leaders", "release", name, holder, "0")

    # --- schedules ------------------------------------------------------------------------

    def register_schedules(self, names: Sequence[str]) -> None:
        if names:
            self._run("schedules", "register", *names)

    def schedule_states(self) -> list[ScheduleState]:
        names = sorted(self._db.smembers(self._key("schedules")))
        found = self._db.many("hgetall", [self._key("schedule", name) for name in names])
        return [to_schedule(h) for h in found if h]

    def enqueue_tick(self, name: str, tick: float, job: NewJob) -> EnqueueResult | None:
        results = self._enqueue([job], name, tick)
        return results[0] if results else None

    def set_schedule_paused(self, name: str, paused: bool) -> ScheduleState:
        flat = self._run("schedules", "pause" if paused else "resume", name)
        return to_schedule(flat_to_dict(flat))

    # --- operator actions -----------------------------------------------------------------

    def _refused(self, reply: Any, operation: str) -> None:
        """Raise what a script reported as ["missing", id], ["invalid", id, state] or
        ["conflict", id, key]."""
        if isinstance(reply, list) and reply and reply[0] in ("missing", "invalid", "conflict"):
            if reply[0] == "missing":
                raise JobNotFound(int(reply[1]))
            if reply[0] == "invalid":
                raise InvalidTransition(int(reply[1]), reply[2], operation)
            raise IdempotencyConflict(int(reply[1]))

    def cancel(self, job_id: int) -> Job:
        self._refused(self._run("cancel", job_id), "cancel")
        self._finished_local()
        return self.get(job_id)

    def requeue(
        self, job_ids: Sequence[int], reset_attempts: bool = False, revive_children: bool = False
    ) -> list[Job]:
        reply = self._run(
            "requeue", json.dumps(list(job_ids)), int(reset_attempts), int(revive_children)
        )
        self._refused(reply, "requeue")
        jobs = [self.get(job_id) for job_id in job_ids]
        if jobs:
            self._notify_local(sorted({job.queue for job in jobs}))
        return jobs

    def discard(self, job_ids: Sequence[int]) -> int:
        reply = self._run("discard", json.dumps(list(job_ids)))
        self._refused(reply, "discard")
        return int(reply)

    # --- reads ----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        h = self._db.hgetall(self._key("job", job_id))
        if not h:
            raise JobNotFound(job_id)
        return to_job(h)

    def _jobs(self, ids: Sequence[Any]) -> list[Job]:
        found = self._db.many("hgetall", [self._key("job", job_id) for job_id in ids])
        return [to_job(h) for h in found if h]

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
        """Newest first; page with ``before_id``. ``idempotency_key``: only the jobs that hold
        it (live or not), read through its own index."""
        ids = self._run(
            "list_jobs",
            "" if states is None else json.dumps([JobState(s).value for s in states]),
            queue if queue is not None else "",
            "1" if queue is not None else "0",
            task if task is not None else "",
            "1" if task is not None else "0",
            limit,
            "" if before_id is None else before_id,
            "1" if idempotency_key is not None else "0",
            idempotency_key if idempotency_key is not None else "",
        )
        return self._jobs(ids)

    def dependencies(self, job_id: int) -> Dependencies:
        if not self._db.exists(self._key("job", job_id)):
            raise JobNotFound(job_id)
        parents = sorted(map(int, self._db.smembers(self._key("parents", job_id))))
        children = sorted(map(int, self._db.smembers(self._key("children", job_id))))
        return Dependencies(
            parents=[
                (p.id, p.state, p.result if p.state is JobState.SUCCEEDED else None)
                for p in self._jobs(parents)
            ],
            children=[(c.id, c.state) for c in self._jobs(children)],
        )

    def workflow_jobs(self, workflow_id: str) -> list[Job]:
        return self._jobs(self._db.zrange(self._key("workflow", workflow_id), 0, -1))

    def stats(self) -> Mapping[str, Mapping[JobState, int]]:
        counts: dict[str, dict[JobState, int]] = {}
        for name, count in self._db.hgetall(self._key("stats")).items():
            if int(count) > 0:
                queue, state = name.rsplit("\n", 1)
                counts.setdefault(queue, {})[JobState(state)] = int(count)
        return counts

    # --- per-minute aggregates and trace contexts (redis/stats.py, lua/tally.lua) --------

    def minute_stats(self, since: float) -> list[Tally]:
        return minute_rows(self._run("stats_minutes", minute_of(since)))

    def stats_totals(self) -> list[Tally]:
        return total_rows(self._run("stats_totals"))

    def count_enqueued(self, settle: float = ENQUEUE_SETTLE, batch: int = 10_000) -> int:
        return int(self._run("stats_enqueued", repr(float(settle)), batch))

    def fold_stats(self, margin: float = FOLD_MARGIN) -> int:
        return int(self._run("stats_fold", repr(float(margin))))

    def prune_stats(self, older_than: float) -> int:
        return int(self._run("stats_prune", repr(float(older_than))))

    def trace_context(self, job_id: int) -> str | None:
        return self._db.hget(self._key("job", job_id), "trace_context")

    def oldest_ready(self) -> dict[str, float]:
        """Per queue with ready (queued) jobs, the ``run_at`` of its oldest one."""
        flat = self._run("oldest_ready")
        return {queue: float(at) for queue, at in zip(flat[::2], flat[1::2], strict=True)}

    def running_by_worker(self) -> dict[str, int]:
        """How many jobs each worker is running, by worker id (workers running none left
        out)."""
        flat = self._run("running_by_worker")
        return {worker: int(n) for worker, n in zip(flat[::2], flat[1::2], strict=True)}

    def now(self) -> float:
        return self._clock()

    def _server_now(self) -> float:
        return self._db.time()

    # --- backup, restore and moves between engines (snapshot.py) ----------------------------

    def export_snapshot(self) -> Iterator[Record]:
        yield from export_records(self._run, self._db.many, self.prefix)

    def import_snapshot(self, records: Iterable[Record]) -> Summary:
        summary = import_records(self._run, records, self.now(), self.prefix)
        self._capped.forget()
        self._notify_local(sorted(self.ready_queues()))
        return summary

    # --- wake-ups -------------------------------------------------------------------------

    def change_marker(self) -> int:
        self._listener.start(wait=_FIRST_LISTEN_WAIT)
        return self._listener.marker

    def is_wake_thread(self) -> bool:
        return self._listener.is_current()

    def finish_marker(self) -> int:
        self._finish_listener.start(wait=_FIRST_LISTEN_WAIT)
        return self._finish_listener.marker

    def close(self) -> None:
        self._listener.stop()
        self._finish_listener.stop()
        self._scripts.close()
        self._redis.close()
        if isinstance(self._redis, redis.Redis):
            # Closed now, it must not close its pool again when the interpreter's last
            # collection deletes it: a daemon thread stopped at exit may hold the pool's lock
            # then, and that second close would wait for it forever (a worker that never exits).
            self._redis.auto_close_connection_pool = False


def _declared(breaker: Breaker) -> dict[str, Any]:
    """A declared breaker as breakers.lua reads it."""
    policy = breaker.policy
    return {
        "name": policy.name,
        "failures": policy.failures,
        "window": policy.window,
        "cooldown": policy.cooldown,
        "cap": policy.cap,
        "ratio": policy.ratio,
        "min_calls": policy.min_calls,
        "tasks": list(breaker.tasks),
    }
