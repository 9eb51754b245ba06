"""PostgreSQL: a transaction that ends jobs sends no NOTIFY of its own, since a notifying
transaction commits one at a time with every other of the server; the notifier session sends
the word to those waiting on results (and the wake-ups of retries) once it has committed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.connection import composed
from tests.postgres.conftest import inspect
from tests.postgres.factory import postgres_backend
from tests.support import FakeClock, new_job

Ending = Callable[[PostgresBackend, FakeClock], None]


@pytest.fixture
def one_connection(clock: FakeClock) -> Iterator[PostgresBackend]:
    """A backend whose pool holds one connection: every transaction runs on it."""
    overrides = {"postgres_pool_min_size": 1, "postgres_pool_max_size": 1}
    with postgres_backend(None, clock, overrides) as backend:
        yield backend


def _pool_pid(pg: PostgresBackend) -> int:
    with pg._db._pool.connection() as conn:
        return int(conn.info.backend_pid)


def _succeed_and_retry(pg: PostgresBackend, clock: FakeClock) -> None:
    first, second = pg.claim("w", None, 2, 30.0)
    pg.finish_many(
        [
            Outcome(first.id, first.lease_token, OutcomeKind.SUCCEEDED, result_json="1"),
            Outcome(second.id, second.lease_token, OutcomeKind.RETRY),
        ]
    )


def _dead(pg: PostgresBackend, clock: FakeClock) -> None:
    run, _ = pg.claim("w", None, 2, 30.0)
    pg.finish_many([Outcome(run.id, run.lease_token, OutcomeKind.DEAD, dead_reason="x")])


def _cancel_waiting(pg: PostgresBackend, clock: FakeClock) -> None:
    job = pg.list_jobs(limit=1)[0]
    pg.cancel(job.id)


def _rescue_to_dead(pg: PostgresBackend, clock: FakeClock) -> None:
    pg.claim("w", None, 1, 30.0)
    clock.advance(31.0)
    assert pg.rescue_expired().dead


ENDINGS: dict[str, Ending] = {
    "finish": _succeed_and_retry,
    "dead": _dead,
    "cancel": _cancel_waiting,
    "rescue": _rescue_to_dead,
}


@pytest.mark.parametrize("ending", list(ENDINGS), ids=list(ENDINGS))
def test_jobs_end_in_transactions_that_notify_nobody(
    one_connection: PostgresBackend, clock: FakeClock, ending: str
) -> None:
    pg = one_connection
    schema = pg.settings.postgres_schema
    pg.enqueue_many([new_job(max_attempts=1), new_job(max_attempts=3)])
    assert pg._notifier.idle.wait(5)
    pool_pid = _pool_pid(pg)
    with inspect(pg) as listener:
        for channel in (f"{schema}_finished", f"{schema}_jobs"):
            listener.execute(composed("listen", channel=channel), prepare=False)

        ENDINGS[ending](pg, clock)
        assert pg._notifier.idle.wait(5)
        heard = list(listener.notifies(timeout=0.5))

    assert _pool_pid(pg) == pool_pid, "all of it ran on the pool's one connection"
    assert [n.channel for n in heard].count(f"{schema}_finished") == 1, heard
    senders = {n.pid for n in heard}
    assert pool_pid not in senders, "the ending transaction sent a NOTIFY itself"
    session = pg._notifier._session
    assert session is not None
    assert senders == {session.info.backend_pid}, "all sent by the notifier after the commit"


def test_a_finish_that_ends_no_job_tells_no_waiter(
    one_connection: PostgresBackend, clock: FakeClock
) -> None:
    pg = one_connection
    schema = pg.settings.postgres_schema
    pg.enqueue_many([new_job()])
    [run] = pg.claim("w", None, 1, 30.0)
    with inspect(pg) as listener:
        listener.execute(composed("listen", channel=f"{schema}_finished"), prepare=False)
        pg.finish_many([Outcome(run.id, run.lease_token, OutcomeKind.RELEASED)])
        assert pg._notifier.idle.wait(5)
        heard: list[psycopg.Notify] = list(listener.notifies(timeout=0.3))
    assert heard == []
