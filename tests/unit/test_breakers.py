"""Circuit breakers: the declaration, which failures count, and the pure rules
(conveyor/limits/breakers.py). The engines are covered by tests/contract/test_breakers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Conveyor, NonRetryable
from conveyor.backends.base import OutcomeKind
from conveyor.errors import ConfigurationError, JobTimeout, UnknownBreaker
from conveyor.job import JobState
from conveyor.limits.breakers import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerPolicy,
    BreakerRow,
    breaker_gate,
    describe,
    record,
    status,
)
from tests.support import FakeClock


class BadInput(Exception):
    pass


@pytest.fixture
def app(tmp_path: Path) -> Conveyor:
    return Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}", clock=FakeClock())


def test_tasks_share_a_declared_breaker(app: Conveyor) -> None:
    declared = app.breaker("partner-api", failures=5, window=60, cooldown=30)

    @app.task(name="a", breaker="partner-api")
    def a() -> None: ...

    @app.task(name="b", breaker="partner-api")
    def b() -> None: ...

    assert declared.tasks == ["a", "b"]
    assert a.breaker == "partner-api"
    assert app.declared_breakers == {"partner-api": declared}


def test_a_task_names_a_declared_breaker(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match="declare it first"):
        app.task(name="a", breaker="nope")(lambda: None)
    app.breaker("x")
    with pytest.raises(ConfigurationError, match="declared twice"):
        app.breaker("x")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"failures": 0}, "failures"),
        ({"window": 0}, "window"),
        ({"cooldown": 0.5}, "cooldown"),
        ({"cooldown": 30, "max_cooldown": 10}, "max_cooldown"),
        ({"ratio": 1.5}, "ratio"),
        ({"ratio": 0.5, "min_calls": 0}, "min_calls"),
        ({"counts": ["x"]}, "counts"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_options_are_configuration_errors(
    app: Conveyor, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app.breaker("x", **options)  # type: ignore[arg-type]


def failure_of(app: Conveyor, exc: BaseException, **breaker: object) -> bool | None:
    """Whether a run of a task behind a breaker that raised ``exc`` counts as its failure
    (None: it does not report to the breaker at all)."""
    app.breaker("b", **breaker)  # type: ignore[arg-type]
    task = app.task(name="t", breaker="b", dont_retry=[BadInput])(lambda: None)
    outcome = task.failure_outcome(1, "token", 1, 3, exc, 0.0)
    return None if outcome.breaker is None else outcome.breaker.failed


def test_ordinary_timeouts_and_connection_errors_count(app: Conveyor) -> None:
    assert failure_of(app, ValueError("x")) is True
    assert failure_of(Conveyor("sqlite:///:memory:"), ConnectionResetError()) is True
    assert failure_of(Conveyor("sqlite:///:memory:"), JobTimeout("slow")) is True


def test_bad_input_errors_do_not_count(app: Conveyor) -> None:
    assert failure_of(app, NonRetryable("bad")) is None
    assert failure_of(Conveyor("sqlite:///:memory:"), BadInput("bad")) is None


def test_counts_and_ignore_choose_the_exceptions(app: Conveyor) -> None:
    narrow = {"counts": (TimeoutError, ConnectionError)}
    assert failure_of(app, ValueError("x"), **narrow) is None
    assert failure_of(Conveyor("sqlite:///:memory:"), TimeoutError(), **narrow) is True
    ignoring = {"ignore": (KeyError,)}
    assert failure_of(Conveyor("sqlite:///:memory:"), KeyError("k"), **ignoring) is None


def test_a_dead_run_counts_too(app: Conveyor) -> None:
    app.breaker("b")
    task = app.task(name="t", breaker="b")(lambda: None)
    outcome = task.failure_outcome(1, "token", 3, 3, ValueError("x"), 0.0)
    assert outcome.kind is OutcomeKind.DEAD
    assert outcome.breaker is not None and outcome.breaker.failed


def test_a_task_without_breaker_reports_nothing(app: Conveyor) -> None:
    task = app.task(name="t")(lambda: None)
    assert task.success_hit is None
    assert task.failure_outcome(1, "token", 1, 3, ValueError("x"), 0.0).breaker is None


# --- the rules ------------------------------------------------------------------------------


def breaker(**options: object) -> Breaker:
    return Breaker(BreakerPolicy("b", **options), ["t"])  # type: ignore[arg-type]


def test_successes_alone_write_nothing_in_count_mode() -> None:
    assert record(None, breaker(), [("x", False)], 0.0) is None


def test_the_window_slides_exactly_in_count_mode() -> None:
    b = breaker(failures=3, window=10)
    row = record(None, b, [("1", True)], 0.0)
    row = record(row, b, [("2", True)], 5.0)
    row = record(row, b, [("3", True)], 10.5)  # the first one is out of the window
    assert row is not None and row.state == CLOSED and row.recent == [5.0, 10.5]
    row = record(row, b, [("4", True)], 14.9)
    assert row is not None and row.state == OPEN and row.probe_at == 14.9 + 30


def test_only_the_probe_decides_while_half_open() -> None:
    b = breaker(cooldown=10)
    row = BreakerRow("b", HALF_OPEN, ["t"], opened_at=0.0, cooldown=10.0, probe_token="p")
    assert record(row, b, [("other", True)], 20.0) is None
    reopened = record(row, b, [("p", True)], 20.0)
    assert reopened is not None and reopened.state == OPEN and reopened.cooldown == 20.0
    row = BreakerRow("b", HALF_OPEN, ["t"], opened_at=0.0, cooldown=10.0, probe_token="p")
    closed = record(row, b, [("p", False)], 20.0)
    assert closed is not None and closed.state == CLOSED and closed.cooldown is None


def test_describe_says_until_when() -> None:
    row = BreakerRow("partner-api", OPEN, ["t"], opened_at=0.0, probe_at=43390.0, cooldown=30.0)
    assert describe(status(row, 0.0), 0.0) == "waiting: breaker partner-api open until 12:03:10 UTC"
    assert describe(status(row, 43390.0), 43390.0) == (
        "waiting: breaker partner-api open, the next claim runs a probe job"
    )
    row.probe_at = None
    assert describe(status(row, 0.0), 0.0) == (
        "waiting: breaker partner-api open until closed by hand"
    )


# --- the app's surface ----------------------------------------------------------------------


def test_app_lists_opens_and_closes_breakers(app: Conveyor) -> None:
    app.breaker("partner-api", failures=2)
    app.breaker("idle")
    call = app.task(name="call", breaker="partner-api")(lambda: None)
    assert [(b.name, b.state) for b in app.breakers()] == [
        ("idle", CLOSED),
        ("partner-api", CLOSED),
    ]
    job = call.enqueue()
    assert breaker_gate(app, job) is None
    opened = app.open_breaker("partner-api")
    assert opened.state == OPEN and opened.next_probe_at is None
    assert breaker_gate(app, app.get_job(job.id)) == (
        "waiting: breaker partner-api open until closed by hand"
    )
    assert app.close_breaker("partner-api").state == CLOSED
    assert breaker_gate(app, app.get_job(job.id)) is None
    assert app.get_job(job.id).state is JobState.QUEUED


def test_an_unknown_breaker_is_a_typed_error(app: Conveyor) -> None:
    app.breaker("known")
    with pytest.raises(UnknownBreaker, match="unknown breaker 'nope' \\(known: known\\)"):
        app.open_breaker("nope")


# --- the queries ----------------------------------------------------------------------------


def test_every_sqlite_breaker_query_compiles_and_postgres_has_the_same() -> None:
    import re
    import sqlite3

    from conveyor.backends.sql import load_queries
    from conveyor.backends.sqlite.backend import MIGRATIONS, split_statements

    sqlite_queries = load_queries("conveyor.backends.sqlite", "breakers.sql")
    postgres_queries = load_queries("conveyor.backends.postgres", "breakers.sql")
    # PostgreSQL adds what its row locks and its clock need (create_breaker, breaker_now ...).
    assert set(sqlite_queries) <= set(postgres_queries)
    db = sqlite3.connect(":memory:")
    try:
        for _, _, script in MIGRATIONS:
            for statement in split_statements(script):
                db.execute(statement)
        for name, sql in sqlite_queries.items():
            params = {p: None for p in re.findall(r":(\w+)", sql)}
            try:
                db.execute(f"EXPLAIN {sql}", params)
            except sqlite3.Error as exc:  # pragma: no cover - the message shows it
                pytest.fail(f"query {name} does not compile: {exc}")
    finally:
        db.close()
