"""The Backend contract: one method per state transition, one transaction each.

Every backend (SQLite, PostgreSQL, Redis) implements this class and passes the same contract
suite in ``tests/contract``. Times are UNIX seconds. A backend takes "now" from its clock: by
default the database's own time (for SQLite, the clock of the machine holding the file); tests
inject a fake clock to expire leases without sleeping.

Fencing: ``claim`` gives each run a fresh random ``lease_token``. Every later write of that run
(``extend_leases``, ``save_progress``, ``finish_many``) names the token and is applied only while
the job is still ``running`` under that token, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

import enum
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.backends.tally import ENQUEUE_SETTLE, FOLD_MARGIN, Tally
from conveyor.errors import ConfigurationError
from conveyor.job import Job, JobError, JobState
from conveyor.settings import Settings
from conveyor.worker_info import WorkerInfo, WorkerRegistration, WorkerState

if TYPE_CHECKING:
    # Annotations only: the heartbeat process imports this module and none of the limits.
    from conveyor.limits import QueueGate, QuietHours, RateLimit
    from conveyor.limits.breakers import Breaker, BreakerHit, BreakerRow
    from conveyor.limits.buckets import Bucket
    from conveyor.snapshot.records import Record, Summary

# The records below are built once per job on hot paths: plain slotted dataclasses, because
# frozen ones cost ten times as much to construct.


@dataclass(slots=True)
class NewJob:
    """A validated job ready to be written. Arguments are already encoded JSON."""

    task: str
    queue: str
    args_json: str
    kwargs_json: str
    priority: int = 0
    #: Absolute time to run at; None means now.
    run_at: float | None = None
    #: Seconds from now to run at; used when run_at is None.
    delay: float = 0.0
    max_attempts: int = 3
    timeout: float | None = None
    idempotency_key: str | None = None
    #: "live": the key is held while the job is live; "any": also while a finished job with it
    #: is still stored (until pruned).
    idempotency_scope: str = "live"
    #: For a task with a rate limit: the key of the job's bucket ("" when enqueued without
    #: rate_key=), and the task's limit (see conveyor/limits/buckets.py). None otherwise.
    rate_key: str | None = None
    rate_limit: RateLimit | None = None
    #: Ids of stored jobs this one waits for (see conveyor.workflows).
    depends_on: tuple[int, ...] = ()
    #: Positions, in the same enqueue_many batch, of the jobs this one waits for.
    depends_on_batch: tuple[int, ...] = ()
    #: What a parent's failure does to this job: None (cancel), "run" or "dead".
    on_parent_failure: str | None = None
    workflow_id: str | None = None
    #: W3C traceparent of the span that enqueued the job (conveyor.tracing), for the run to
    #: continue its trace; stored beside the job, read back by ``trace_context``.
    trace_context: str | None = None


@dataclass(slots=True)
class EnqueueResult:
    job_id: int
    state: JobState
    #: False when an existing job holding the idempotency key was returned instead.
    created: bool
    #: That existing job, when the backend read it already (an enqueue inside the caller's
    #: transaction, whose uncommitted jobs other connections cannot read).
    existing: Job | None = None
    #: The database time of the write, when the backend read it anyway (saves a clock read
    #: that would need a connection of its own while the caller's transaction is open).
    at: float | None = None


@dataclass(slots=True)
class ClaimedJob:
    """What a worker needs to run one claimed job."""

    id: int
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    lease_token: str
    timeout: float | None
    checkpoint: Any = None


class OutcomeKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    DEAD = "dead"
    CANCELLED = "cancelled"
    #: Put back without charging the attempt (shutdown before or during the run).
    RELEASED = "released"


@dataclass(slots=True)
class Escalate:
    """A new job of ``task`` with the arguments of the job that failed, written with its end
    (conveyor.workflows.escalation)."""

    task: str
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    #: Why: "failure", "timeout" or "exception <name>".
    why: str


@dataclass(slots=True)
class Outcome:
    """The end of one run, written back fenced by its token."""

    job_id: int
    token: str
    kind: OutcomeKind
    result_json: str | None = None
    error: JobError | None = None
    #: For RETRY: seconds from now until the next attempt.
    retry_in: float = 0.0
    dead_reason: str | None = None
    #: For RETRY: (task, limit, window seconds) — the task's retry budget, if it has one.
    retry_budget: tuple[str, int, float] | None = None
    checkpoint_json: str | None = None
    #: The run's task is behind a circuit breaker: whether this end counts as its failure.
    breaker: BreakerHit | None = None
    #: For DEAD: enqueue this instead of only dead-lettering, in the same transaction.
    escalate: Escalate | None = None


@dataclass(slots=True)
class FinishResult:
    job_id: int
    #: False when the run's token was no longer valid: nothing was written.
    applied: bool
    #: The state the job ended in (when applied).
    state: JobState | None = None


@dataclass(frozen=True)
class LeaseReport:
    """Keyed by lease token, since a token names one run of one job."""

    #: Runs whose lease was extended.
    extended: frozenset[str] = frozenset()
    #: Runs this worker no longer owns: abandon them.
    lost: frozenset[str] = frozenset()
    #: Runs someone asked to cancel.
    cancel_requested: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RescueReport:
    requeued: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ReapReport(RescueReport):
    """Workers declared dead, and what became of the jobs they were running."""

    workers: list[str] = field(default_factory=list)


def rescued_by_state(rows: Iterable[Sequence[Any]]) -> dict[str, list[int]]:
    """RETURNING rows of a rescue, (id, state, ...), as RescueReport's fields."""
    by_state: dict[str, list[int]] = {"retrying": [], "dead": [], "cancelled": []}
    for row in rows:
        by_state[row[1]].append(int(row[0]))
    return {
        "requeued": sorted(by_state["retrying"]),
        "dead": sorted(by_state["dead"]),
        "cancelled": sorted(by_state["cancelled"]),
    }


@dataclass(frozen=True)
class ScheduleState:
    """What the database holds of one schedule of periodic jobs (conveyor/limits/schedules.py).
    Times are UNIX seconds."""

    name: str
    paused: bool
    #: When a worker first saw the schedule, or it was last resumed: no tick before is due.
    since: float
    #: The latest tick that got its job, the job, and when it was enqueued.
    last_tick: float | None = None
    last_job_id: int | None = None
    last_enqueued_at: float | None = None


@dataclass(frozen=True)
class Dependencies:
    """The edges of one job: its parents (id, state, result -- None unless succeeded) and its
    children (id, state), by id."""

    parents: list[tuple[int, JobState, Any]] = field(default_factory=list)
    children: list[tuple[int, JobState]] = field(default_factory=list)


@dataclass(frozen=True)
class JobCounts:
    """Job counts per queue and state, and the (queue, state) pairs that were estimated."""

    jobs: Mapping[str, Mapping[JobState, int]]
    estimated: frozenset[tuple[str, JobState]] = frozenset()


@dataclass(frozen=True)
class SchemaStatus:
    current: int
    latest: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.current == self.latest and not self.problems


#: Dead workers stay listed this long (seconds since their last beat), for operators to see.
FORGET_DEAD_WORKERS_AFTER = 3600.0

WakeupListener = Callable[[Sequence[str]], None]
FinishListener = Callable[[], None]


class Backend(ABC):
    """Storage for jobs. Thread-safe: one instance serves a whole process.

    ``settings`` describes the store completely: ``open_backend(backend.settings)`` in another
    process opens the same jobs -- unless ``shared`` is False.
    """

    settings: Settings
    #: False when no other process can open this store (an in-memory SQLite database).
    shared: bool = True

    def __init__(self) -> None:
        self._listeners: list[WakeupListener] = []
        self._listeners_lock = threading.Lock()
        #: Called after this process ended jobs (see ``add_finish_listener``); a tuple, so
        #: that the finish path reads it without a lock and pays nothing while it is empty.
        self._finish_listeners: tuple[FinishListener, ...] = ()

    # --- schema ---------------------------------------------------------------------------

    @abstractmethod
    def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""

    @abstractmethod
    def verify_schema(self) -> SchemaStatus: ...

    # --- enqueue --------------------------------------------------------------------------

    @abstractmethod
    def enqueue_many(
        self,
        jobs: Sequence[NewJob],
        meanwhile: Callable[[list[EnqueueResult]], None] | None = None,
    ) -> list[EnqueueResult]:
        """Write all jobs in one transaction, or none (QueueFull, storage errors).

        An engine that knows the results while the database is still storing the rows (a
        PostgreSQL COPY) may call ``meanwhile`` with the very list it will return, so that the
        caller's own work on them overlaps the server's. The write can still fail afterwards,
        and a retried write calls it again; engines that cannot overlap never call it."""

    def enqueue_one(self, job: NewJob) -> EnqueueResult:
        """``enqueue_many([job])[0]``: engines with a cheaper way to write a single job say so
        here (the single enqueue is the call an application makes most)."""
        return self.enqueue_many([job])[0]

    def enqueue_one_now(self, job: NewJob) -> EnqueueResult | None:
        """``enqueue_one`` on an event loop's thread, if the engine can write ``job`` there
        without waiting (for a lock, a disk flush, the network); None when it cannot, and has
        written nothing."""
        return None

    async def enqueue_one_async(self, job: NewJob) -> EnqueueResult:
        """``enqueue_one`` from an event loop: ``enqueue_one_now`` if the engine can, else on
        a thread (see conveyor.offload); engines with an async driver write it from the loop."""
        result = self.enqueue_one_now(job)
        if result is None:
            # Here, not at the top: a heartbeat process imports this module, never asyncio.
            from conveyor.offload import OFFLOAD

            result = await OFFLOAD.run(lambda: self.enqueue_one(job))
        return result

    def enqueue_many_in(self, connection: Any, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Write the jobs inside the caller's open transaction on ``connection``, which the
        caller commits or rolls back. Only engines with application connections (PostgreSQL)
        support it."""
        raise self._no_transactional_enqueue()

    async def enqueue_many_in_async(
        self, connection: Any, jobs: Sequence[NewJob]
    ) -> list[EnqueueResult]:
        """``enqueue_many_in`` on an async connection."""
        raise self._no_transactional_enqueue()

    def _no_transactional_enqueue(self) -> ConfigurationError:
        scheme = self.settings.url.split(":", 1)[0]
        return ConfigurationError(
            f"enqueue inside your own transaction (connection=...) needs PostgreSQL; this "
            f"application uses {scheme}: enqueue without connection=, or move to PostgreSQL"
        )

    # --- the run of a job -----------------------------------------------------------------

    @abstractmethod
    def claim(
        self, worker_id: str, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        """queued -> running for up to ``limit`` ready jobs, highest priority first, then
        oldest ``run_at``; scheduled and retrying jobs whose time has come are promoted first.

        With several ``queues`` the order holds within each queue, and the queues take turns
        being served first; ``None`` serves every queue in one global order.

        A claim never takes a capped queue (``set_concurrency_limit``) over its cap, counting
        the jobs of that queue running on every worker. With ``None``, while a capped queue has
        ready jobs, the queues that have ready jobs take turns as a list of queues does (the
        global order would walk the capped queue's whole backlog to skip it).

        Nor does it start a job another gate holds (conveyor/limits/): a paused queue, one in
        its quiet hours, a queue or a task (per key) whose rate limit has no token yet. Such
        jobs stay queued and are charged no attempt.

        Jobs of tasks behind a circuit breaker that is not closed are skipped, except for one
        probe job per breaker whose cool-down is over, taken fleet-wide by one claim only (see
        conveyor.limits.breakers)."""

    def claim_unless_suspects(
        self, worker_id: str, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[ClaimedJob]:
        """``claim``, unless a suspect waits in ``queues`` (an engine may look in every
        queue): then nothing. An idle worker's claim on a wake-up (see
        ``conveyor.worker.wakeup``), which must leave a waiting suspect to the worker's own
        suspect claim. Engines that can, look and claim in one round trip."""
        if self.suspect_waiting(queues):
            return []
        return self.claim(worker_id, queues, limit, lease)

    @abstractmethod
    def claim_suspect(
        self, worker_id: str, queues: Sequence[str] | None, lease: float
    ) -> ClaimedJob | None:
        """retrying -> running for one *suspect*, or None. ``claim`` never takes a suspect.

        Poison isolation: a rescue (``rescue_expired``, ``reap_dead_workers``) cannot tell which
        of the jobs a dead worker held killed it, so it charges the lost run only to a job that
        was the only one its worker held, and gives every other one its attempt back; all of
        them become suspects, which wait in ``retrying`` (promotion leaves them there). A
        suspect runs alone: it is claimed only by a worker that holds no running job, the best
        due one of ``queues`` (None: any) that every gate lets start -- its queue's pause,
        quiet hours, cap and rate limit, its task's rate limit bucket (whose token it spends)
        and its task's breaker (closed: a suspect is never a probe) --, and that worker claims
        nothing else until the run is settled (a worker rule: this call and ``claim`` take no
        account of each other, so one worker must not make them at the same time). Its next
        death is therefore its own. A suspect whose run returns an error is retried as any job
        and is no longer a suspect; one that is released waits as a suspect again."""

    @abstractmethod
    def suspect_waiting(self, queues: Sequence[str] | None) -> bool:
        """Whether ``claim_suspect`` would find a suspect in ``queues`` (None: any) now: due,
        and let through by every gate. A read of the suspects' own index, which is almost always
        empty: a busy worker asks about once a second, to decide whether to make room for one
        (see ``conveyor.worker.solo``)."""

    @abstractmethod
    def extend_leases(self, tokens: Sequence[str], lease: float) -> LeaseReport:
        """Push the lease of every still-owned run to now + ``lease``. A run whose lease ran
        out but that no sweep has rescued yet is still owned: it may extend and finish."""

    @abstractmethod
    def cancel_requests(self, worker_id: str) -> frozenset[str]:
        """Lease tokens of ``worker_id``'s running jobs that someone asked to cancel. A read
        that an index answers without looking at other jobs: workers ask several times a
        second, to stop a cancelled job long before their next heartbeat."""

    @abstractmethod
    def save_progress(
        self, job_id: int, token: str, progress_json: str | None, checkpoint_json: str | None
    ) -> bool:
        """Fenced write of progress and/or checkpoint (None leaves a field unchanged)."""

    @abstractmethod
    def finish_many(self, outcomes: Sequence[Outcome]) -> list[FinishResult]:
        """Apply outcomes, each fenced by its token, in one transaction, with the circuit
        breakers they report to (only outcomes applied count). A job that ends with
        children (see conveyor.workflows.rules) settles them in that same transaction: the
        last parent's success makes a child queued (scheduled if its run_at is later), a
        failure applies the child's policy down the graph. A job without children pays one
        flag read for it."""

    # --- caps on running jobs -------------------------------------------------------------

    @abstractmethod
    def set_concurrency_limit(self, queue: str, max_running: int | None) -> None:
        """Cap the jobs of ``queue`` running at once, across every worker; None removes the
        cap. Claims through this backend follow a change at once, claims in other processes
        within ``conveyor.backends.caps.CAPS_TTL`` seconds. Jobs already running over a lowered
        cap finish; the queue gets no more until it is back under the cap."""

    @abstractmethod
    def concurrency_limits(self) -> dict[str, int]:
        """Every capped queue, with its cap."""

    @abstractmethod
    def capped_queues(self) -> frozenset[str]:
        """The capped queues as claims see them: kept for about a second, so usually no read."""

    @abstractmethod
    def ready_queues(self) -> frozenset[str]:
        """The queues holding at least one queued job, capped or not: a read of one index
        entry per such queue, however many jobs wait. A burst worker whose claim came back
        empty asks it to tell a queue held back by its cap from one with nothing ready.
        Scheduled and retrying jobs count only once promoted (a claim promotes those due)."""

    # --- queue gates: pause, quiet hours, rate limits (conveyor/limits/) --------------------

    @abstractmethod
    def pause_queue(self, queue: str, until: float | None) -> None:
        """Start no job of ``queue`` until ``until`` (None: until resumed), on any worker.
        Running jobs finish; enqueue goes on. Claims through this backend follow at once,
        claims in other processes within ``caps.CAPS_TTL`` seconds."""

    @abstractmethod
    def resume_queue(self, queue: str) -> None:
        """Lift a pause of ``queue`` (nothing happens if it was not paused)."""

    @abstractmethod
    def set_quiet_hours(self, queue: str, quiet: QuietHours | None) -> None:
        """Start no job of ``queue`` during the windows of ``quiet``; None removes them."""

    @abstractmethod
    def set_rate_limit(self, queue: str, rate: RateLimit | None) -> None:
        """Start at most ``rate.count`` jobs of ``queue`` per ``rate.per`` seconds across
        every worker (see conveyor/limits/rates.py); None removes the limit."""

    @abstractmethod
    def queue_gates(self) -> list[QueueGate]:
        """The gates of every queue that has some (a cap, a pause, quiet hours, a rate
        limit), by queue name, running jobs counted for capped queues."""

    @abstractmethod
    def rate_limited(self) -> bool:
        """Whether any task has a rate limit bucket (kept for about a second, like the gated
        queues): only then do claims look for rate-limited jobs."""

    @abstractmethod
    def next_rate_token(self, queues: Sequence[str] | None) -> float | None:
        """The earliest next start of a task's rate limit bucket that holds a queued job of
        ``queues`` (None: any queue), if one is ahead."""

    @abstractmethod
    def rate_bucket_of(self, job_id: int) -> Bucket | None:
        """The rate limit bucket of a job of a rate-limited task, None for other jobs."""

    def gates_open_at(self, queues: Sequence[str] | None) -> float | None:
        """When a gate held shut by time (a pause with an end, quiet hours, a rate limit of a
        queue or of a task) next lets a job of ``queues`` (None: any queue) through: the
        earliest such moment, ``inf`` when the only such gates are pauses until resumed, None
        when none holds a queue now. A worker whose claim came back empty sleeps until then,
        not polling."""
        now = self.now()
        wanted = None if queues is None else set(queues)
        moments = [
            moment
            for gate in self.queue_gates()
            if wanted is None or gate.queue in wanted
            if (moment := gate.opens_at(now)) is not None
        ]
        token = self.next_rate_token(queues)
        if token is not None:
            moments.append(token)
        return min(moments, default=None)

    # --- circuit breakers -----------------------------------------------------------------

    #: When the earliest breaker that held back this process's last claim lets a probe start
    #: (None: none did): an idle worker wakes then rather than polling.
    breaker_probe_at: float | None = None

    @abstractmethod
    def breakers(self) -> list[BreakerRow]:
        """Every stored breaker, by name (a declared breaker without a row is closed)."""

    def breakers_open_at(self, queues: Sequence[str] | None) -> float | None:
        """When the breakers that hold queued jobs of ``queues`` (None: any queue) next let
        one start by themselves: the end of a cool-down; about a second from now while a
        probe runs or is due (its verdict comes by itself); ``inf`` when the only such
        breakers were opened by hand; None when no breaker holds a queued job. A burst worker
        whose claim came back empty asks it, to wait rather than leave such jobs behind."""
        from conveyor.limits.breakers import opens_at

        wanted: Sequence[str | None] = [None] if queues is None else queues

        def holds_queued(tasks: Sequence[str]) -> bool:
            return any(
                self.list_jobs(states=[JobState.QUEUED], queue=queue, task=task, limit=1)
                for task in tasks
                for queue in wanted
            )

        return opens_at(self.breakers(), self.now(), holds_queued)

    @abstractmethod
    def set_breaker(self, breaker: Breaker, opened: bool) -> BreakerRow:
        """Open ``breaker`` by hand (until closed by hand: no probe meanwhile) or close it
        (its failures forgotten, its cool-down back to the declared one). Claims through this
        backend follow at once, claims in other processes within
        ``conveyor.limits.breakers.BREAKERS_TTL`` seconds."""

    # --- maintenance ----------------------------------------------------------------------

    @abstractmethod
    def rescue_expired(self, exclude_worker: str | None = None) -> RescueReport:
        """running jobs whose lease expired -> retrying (run again at once), or dead when their
        attempts are exhausted, or cancelled when a cancel was requested.

        A live worker sweeping passes its own id as ``exclude_worker``: runs it still holds
        (their outcomes waiting out a database outage longer than the lease) are not taken from
        it; other workers still rescue them if it really is gone."""

    @abstractmethod
    def reap_dead_workers(
        self,
        exclude_worker: str | None = None,
        reachable_since: float | None = None,
        forget_after: float = FORGET_DEAD_WORKERS_AFTER,
        known_dead: Sequence[str] = (),
    ) -> ReapReport:
        """Declare dead every running or stopping worker that went its ``dead_after`` seconds
        without a beat, or that is named in ``known_dead``, and release the jobs it is running
        at once, as ``rescue_expired`` releases expired runs: a lost run, dead when the
        attempts are used up, cancelled when a cancel was requested, and the dead worker's
        tokens void. Every leadership a worker declared dead holds is free at once. Workers
        whose last beat is more than ``forget_after`` seconds old, once declared dead, are
        forgotten.

        The sweeping worker passes its own id as ``exclude_worker`` (whoever sweeps is alive),
        and as ``reachable_since`` the time since which it has reached the database without a
        break: silence before then is not counted, since an outage silences every worker.
        ``known_dead`` names workers the sweeper knows to be dead whatever their beats say
        (their process is gone from its machine); a worker already declared dead is not
        declared again."""

    @abstractmethod
    def promote_due(self) -> int:
        """scheduled/retrying jobs whose run_at has come -> queued."""

    @abstractmethod
    def next_due(self) -> float | None:
        """The earliest run_at of scheduled or retrying jobs, if any: when to look again."""

    @abstractmethod
    def prune(self, older_than: float, batch: int = 1000) -> int:
        """Delete up to ``batch`` finished jobs that finished more than ``older_than`` s ago."""

    def upkeep(self) -> bool:
        """Storage upkeep the engine would otherwise lack (maintenance calls it every minute);
        True when it did something. Nothing by default."""
        return False

    # --- workers and leadership -----------------------------------------------------------

    @abstractmethod
    def register_worker(self, worker: WorkerRegistration) -> None:
        """Record a starting worker as running, beating now. A worker the database had
        declared dead registers again this way; a stop already requested stays requested."""

    @abstractmethod
    def beat_worker(self, worker_id: str, state: WorkerState) -> bool | None:
        """Set a live worker's last beat to now and its state (running or stopping). Returns
        whether a stop was requested; None when the database knows no live worker of that id
        (never registered, deregistered, or declared dead): it must register again."""

    @abstractmethod
    def worker_stop_requested(self, worker_id: str) -> bool:
        """Whether someone asked ``worker_id`` to stop; False when the database knows no such
        worker. One read of the worker's row by its primary key: workers ask about once a
        second, to begin a stop long before their next beat."""

    @abstractmethod
    def deregister_worker(self, worker_id: str) -> None:
        """Forget a worker that exits cleanly and free every leadership it holds."""

    @abstractmethod
    def list_workers(self) -> list[WorkerInfo]:
        """Every registered worker (dead ones until they are forgotten), oldest first."""

    @abstractmethod
    def request_worker_stop(self, worker_ids: Sequence[str] | None) -> list[str]:
        """Ask workers to stop gracefully; they learn it within about a second (they ask
        ``worker_stop_requested``). ``None`` asks every worker not declared dead. All the named
        workers or none (WorkerNotFound). Returns the ids asked."""

    @abstractmethod
    def acquire_leadership(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``holder`` until now + ``ttl``, if it is free, lapsed or
        already ``holder``'s (a renewal); True when ``holder`` holds it now."""

    @abstractmethod
    def release_leadership(self, name: str, holder: str) -> None:
        """Give up the lease ``name`` if ``holder`` holds it, so another can take it at once."""

    # --- schedules of periodic jobs -------------------------------------------------------

    @abstractmethod
    def register_schedules(self, names: Sequence[str]) -> None:
        """Record the schedules not yet known, as first seen now; known ones are unchanged."""

    @abstractmethod
    def schedule_states(self) -> list[ScheduleState]:
        """Every recorded schedule, by name."""

    @abstractmethod
    def enqueue_tick(self, name: str, tick: float, job: NewJob) -> EnqueueResult | None:
        """Enqueue ``job`` for the tick ``tick`` of schedule ``name`` and make it the schedule's
        last tick, in one transaction -- only if the schedule is recorded, not paused, and its
        last tick is earlier. Otherwise (another scheduler took this tick or a later one) write
        nothing and return None: each tick gets at most one job, however many call this."""

    @abstractmethod
    def set_schedule_paused(self, name: str, paused: bool) -> ScheduleState:
        """Pause or resume a schedule (recorded now if it was not yet); returns its state."""

    # --- operator actions -----------------------------------------------------------------

    @abstractmethod
    def cancel(self, job_id: int) -> Job:
        """Cancel a waiting job at once; ask the worker to cancel a running one."""

    @abstractmethod
    def requeue(
        self, job_ids: Sequence[int], reset_attempts: bool = False, revive_children: bool = False
    ) -> list[Job]:
        """dead/cancelled -> queued. Without ``reset_attempts`` the job gets one more attempt.
        Its children still blocked wait for it again; with ``revive_children`` the descendants
        that its failure ended (cancelled or dead by their ``on_parent_failure`` policy) are
        blocked again on their parents, in the same transaction."""

    @abstractmethod
    def discard(self, job_ids: Sequence[int]) -> int:
        """Delete dead jobs for good; returns how many were deleted."""

    # --- reads ----------------------------------------------------------------------------

    @abstractmethod
    def get(self, job_id: int) -> Job: ...

    @abstractmethod
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
        it (live or not), read through its index."""

    @abstractmethod
    def dependencies(self, job_id: int) -> Dependencies:
        """The parents and children of a job (JobNotFound if there is no such job)."""

    @abstractmethod
    def trace_context(self, job_id: int) -> str | None:
        """The ``NewJob.trace_context`` the job was enqueued with (None without, or for no
        such job). A read by primary key, made per run only by workers with tracing on."""

    @abstractmethod
    def workflow_jobs(self, workflow_id: str) -> list[Job]:
        """Every job enqueued under ``workflow_id``, oldest first."""

    @abstractmethod
    def stats(self) -> Mapping[str, Mapping[JobState, int]]:
        """Job counts per queue and state."""

    def job_counts(self, exact_below: int) -> JobCounts:
        """Job counts per queue and state, as ``stats``, for reads that must stay cheap on a
        big table (the HTTP server's). An engine may estimate the counts of the (queue, state)
        pairs holding ``exact_below`` jobs or more instead of counting them, naming them in
        ``estimated``. By default: ``stats``, exact."""
        return JobCounts(self.stats())

    # --- per-minute aggregates (conveyor/backends/tally.py) ------------------------------

    @abstractmethod
    def minute_stats(self, since: float) -> list[Tally]:
        """The aggregates of every minute from the one holding ``since`` on, one row per
        minute x queue x task with something to count (``Tally.minute`` set), in that order.
        ``finish_many`` tallies the runs it applies (succeeded, retried, dead, cancelled; not
        released), ``rescue_expired`` and ``reap_dead_workers`` the lost runs they rescue,
        each in its own transaction, under the minute of its database time. ``count_enqueued``
        adds the enqueued jobs, under the minute of their ``created_at``."""

    @abstractmethod
    def stats_totals(self) -> list[Tally]:
        """Per queue x task, everything ever tallied (``Tally.minute`` None): the totals that
        ``fold_stats`` folded out of closed minutes plus the minutes not folded yet. Never
        goes down, whatever ``prune_stats`` and ``prune`` delete (a write into a minute already
        folded -- a finish transaction open longer than ``tally.FOLD_MARGIN`` -- reaches the
        minutes but not these)."""

    @abstractmethod
    def count_enqueued(self, settle: float = ENQUEUE_SETTLE, batch: int = 10_000) -> int:
        """Tally up to ``batch`` jobs enqueued since the last call (ids above the watermark),
        in one transaction with the watermark's advance, and return how many. Jobs younger than
        ``settle`` seconds, and every job of a higher id, wait for a later call: the
        transaction that enqueued a lower id may still be open. A job enqueued in a transaction
        open longer than ``settle`` may be missed. Maintenance calls it until it returns 0."""

    @abstractmethod
    def fold_stats(self, margin: float = FOLD_MARGIN) -> int:
        """Fold the minutes that ended more than ``margin`` seconds ago and were not folded
        yet into the totals (``stats_totals``); returns how many minutes x queue x task rows
        it folded. The minutes stay, for ``minute_stats``, until ``prune_stats``."""

    @abstractmethod
    def prune_stats(self, older_than: float) -> int:
        """Delete the minutes that ended more than ``older_than`` seconds ago (folded
        ones only: a minute not folded yet waits for ``fold_stats``); returns the rows
        deleted."""

    @abstractmethod
    def oldest_ready(self) -> dict[str, float]:
        """Per queue with ready (queued) jobs, the ``run_at`` of its oldest one: how long
        work has waited for a worker."""

    @abstractmethod
    def running_by_worker(self) -> dict[str, int]:
        """How many jobs each worker is running, by worker id (workers running none left
        out)."""

    @abstractmethod
    def now(self) -> float:
        """The backend's idea of the current time (UNIX seconds)."""

    # --- backup, restore and moves between engines (conveyor/snapshot/) --------------------

    @abstractmethod
    def export_snapshot(self) -> Iterator[Record]:
        """Every record of the store as of one moment (conveyor/snapshot/records.py): the
        header first, then queue settings, breakers, schedules, rate limit buckets, retry
        budgets, every job by id in every state, and the dependency edges. Online: one read
        transaction (on Redis, a frozen copy) holds one consistent view of it all while
        workers and producers go on;
        it ends when the iterator is exhausted or closed. Workers and leaderships are left
        out: they mean nothing in another database."""

    @abstractmethod
    def import_snapshot(self, records: Iterable[Record]) -> Summary:
        """Load a snapshot (``export_snapshot``'s records, of any engine) into this store,
        which must hold no job, edge, queue setting, breaker, schedule, bucket or budget
        (TargetNotEmpty), in one transaction (on Redis, batches undone on failure): all or
        nothing, a SnapshotError raised by
        ``records`` (a damaged file) included. Ids are kept and the job id sequence is moved
        past the source's; running jobs come back waiting (records.Intake) and are counted
        in the summary. Consumes ``records`` as it goes: a million jobs are never all in
        memory."""

    # --- wake-ups -------------------------------------------------------------------------

    @abstractmethod
    def change_marker(self) -> int:
        """A value that changes whenever another connection committed something: cheap to poll."""

    def add_listener(self, listener: WakeupListener) -> None:
        """Call ``listener(queues)`` after this process enqueues into ``queues``."""
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: WakeupListener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def is_wake_thread(self) -> bool:
        """Whether the calling thread is the one on which this backend hears other processes'
        wake-ups and calls the listeners: an idle worker may claim on it at once (see
        ``conveyor.worker.wakeup``), if ``claim`` may block it for one round trip. False when
        the engine polls, or its listener must not wait on a claim."""
        return False

    def _notify_local(self, queues: Sequence[str]) -> None:
        if not self._listeners:  # the usual producer: nobody in this process to wake
            return
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(queues)

    # --- finishes, for those waiting on a result ---------------------------------------

    def finish_marker(self) -> int:
        """A value that changes whenever a job may have ended (succeeded, dead, cancelled) in
        another process, cheap to poll. By default ``change_marker()``, which moves on any
        commit elsewhere; an engine that announces finishes (PostgreSQL's NOTIFY) moves it on
        those alone, and also calls the finish listeners when one arrives."""
        return self.change_marker()

    def add_finish_listener(self, listener: FinishListener) -> None:
        """Call ``listener()`` (from any thread) after jobs may have ended: finishes and cancels
        through this backend, and on engines that announce finishes (PostgreSQL), those of
        other processes as well once ``finish_marker`` has been read."""
        with self._listeners_lock:
            self._finish_listeners = (*self._finish_listeners, listener)

    def remove_finish_listener(self, listener: FinishListener) -> None:
        with self._listeners_lock:
            listeners = list(self._finish_listeners)
            if listener in listeners:
                listeners.remove(listener)
            self._finish_listeners = tuple(listeners)

    def _finished_local(self, *_: object) -> None:
        for listener in self._finish_listeners:
            listener()

    @abstractmethod
    def close(self) -> None: ...
