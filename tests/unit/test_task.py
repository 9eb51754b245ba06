"""Tasks: validation at enqueue (typed errors, nothing written), options, priorities, and the
retry decision of a failed run."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, Task
from conveyor.backends.base import OutcomeKind
from conveyor.errors import (
    ArgumentsMismatch,
    ConfigurationError,
    EnqueueError,
    InvalidArguments,
    PayloadTooLarge,
    QueueFull,
    UnknownTask,
)
from conveyor.job import JobState
from conveyor.retry import Fixed, RetryBudget
from conveyor.task import (
    PRIORITY_LEVELS,
    ArgumentChecker,
    JobSpec,
    NonRetryable,
    _build_batch,
    build_jobs,
    resolve_priority,
)
from tests.support import FakeClock


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Conveyor]:
    with Conveyor(f"sqlite:///{tmp_path}/x.db", clock=FakeClock()) as conveyor:
        yield conveyor


def nothing_written(app: Conveyor) -> bool:
    return dict(app.stats()) == {}


@pytest.fixture
def add(app: Conveyor) -> Task[..., Any]:
    # Any: these tests are about JSON and the signature; type hints have tests of their own
    # (tests/unit/test_typed_args.py).
    @app.task(name="tests.add", queue="math")
    def add(a: Any, b: Any, *, scale: Any = 1) -> Any:
        return (a + b) * scale

    return add


# --- enqueue that works -------------------------------------------------------------------


def test_enqueue_writes_the_job(app: Conveyor, add: Task[..., Any]) -> None:
    job = add.enqueue(1, 2, scale=3)
    assert job.task == "tests.add"
    assert job.queue == "math"
    assert job.state is JobState.QUEUED
    assert job.args == [1, 2]
    assert job.kwargs == {"scale": 3}
    stored = app.get_job(job.id)
    assert (stored.task, stored.queue, stored.args, stored.kwargs) == (
        "tests.add",
        "math",
        [1, 2],
        {"scale": 3},
    )
    assert add(1, 2, scale=3) == 9, "calling the task runs the function"


def test_enqueue_by_name(app: Conveyor, add: Task[..., Any]) -> None:
    job = app.enqueue("tests.add", [1, 2], {"scale": 2}, delay=30)
    assert job.state is JobState.SCHEDULED
    assert app.get_job(job.id).state is JobState.SCHEDULED


def test_options_override_the_task_defaults(app: Conveyor, add: Task[..., Any]) -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    job = add.options(
        queue="fast", priority="high", run_at=when, max_attempts=7, timeout=3.0
    ).enqueue(1, 2)
    stored = app.get_job(job.id)
    assert stored.queue == "fast"
    assert stored.priority == PRIORITY_LEVELS["high"]
    assert stored.run_at == when.timestamp()
    assert stored.max_attempts == 7
    assert stored.timeout == 3.0
    later = add.options(delay=timedelta(minutes=5)).enqueue(1, 2)
    assert app.get_job(later.id).run_at == pytest.approx(app.backend.now() + 300.0)


def test_idempotency_key_through_the_app(app: Conveyor, add: Task[..., Any]) -> None:
    first = add.options(idempotency_key="sum-1-2").enqueue(1, 2)
    second = add.options(idempotency_key="sum-1-2").enqueue(5, 6)
    assert second.id == first.id
    assert second.args == [1, 2]
    assert app.stats()["math"] == {JobState.QUEUED: 1}


def test_async_enqueue(app: Conveyor, add: Task[..., Any]) -> None:
    job = asyncio.run(add.enqueue_async(3, 4))
    assert app.get_job(job.id).args == [3, 4]


# --- validation: a typed error and nothing written ------------------------------------------


def test_unknown_task(app: Conveyor, add: Task[..., Any]) -> None:
    with pytest.raises(UnknownTask) as caught:
        app.enqueue("tests.nope", [1])
    assert "tests.nope" in str(caught.value)
    assert "tests.add" in str(caught.value), "the message lists what is registered"
    assert nothing_written(app)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, 2, 3), {}), ((1, 2), {"scal": 2}), ((1,), {"a": 1, "b": 2}), ((), {})],
    ids=["missing", "extra", "unknown-kw", "duplicate", "none"],
)
def test_arguments_must_bind_to_the_signature(
    app: Conveyor, add: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ArgumentsMismatch) as caught:
        add.enqueue(*args, **kwargs)
    assert "tests.add" in str(caught.value)
    assert nothing_written(app)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((b"bytes", 1), {}),
        ((1, {1, 2}), {}),
        ((float("nan"), 1), {}),
        ((1, 2), {"scale": object()}),
        (({1: "x"}, 2), {}),
    ],
    ids=["bytes", "set", "nan", "object", "int-key"],
)
def test_arguments_must_be_json(
    app: Conveyor, add: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArguments) as caught:
        add.enqueue(*args, **kwargs)
    assert "tests.add" in str(caught.value)
    assert nothing_written(app)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("a\x00b", 1), {}), ((1, 2), {"scale": {"k\x00": 1}}), ((["\ud800"], 1), {})],
    ids=["nul-in-arg", "nul-in-key", "lone-surrogate"],
)
def test_strings_must_be_storable(
    app: Conveyor, add: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArguments):
        add.enqueue(*args, **kwargs)
    assert nothing_written(app)


def test_payload_over_the_limit(tmp_path: Path) -> None:
    with Conveyor(f"sqlite:///{tmp_path}/x.db", max_payload_bytes=100) as app:

        @app.task(name="tests.echo")
        def echo(text: str) -> str:
            return text

        assert echo.enqueue("x" * 50).args == ["x" * 50]
        with pytest.raises(PayloadTooLarge) as caught:
            echo.enqueue("x" * 200)
        assert caught.value.limit == 100
        assert caught.value.size > 100
        assert "over the limit of 100 bytes" in str(caught.value)
        # Bytes, not characters: 60 two-byte characters are over 100 bytes.
        with pytest.raises(PayloadTooLarge):
            echo.enqueue("é" * 60)
        assert app.stats()["default"] == {JobState.QUEUED: 1}


@pytest.mark.parametrize(
    "options",
    [
        {"priority": "urgent"},
        {"priority": True},
        {"priority": 1.5},
        {"delay": 5, "run_at": datetime(2030, 1, 1, tzinfo=UTC)},
        {"run_at": datetime(2030, 1, 1)},
        {"delay": -1},
        {"delay": float("nan")},
        {"delay": float("inf")},
        {"run_at": float("nan")},
        {"run_at": float("inf")},
        {"timeout": float("nan")},
        {"queue": ""},
        {"queue": "q\x00"},
        {"max_attempts": 0},
        {"timeout": 0},
        {"idempotency_key": ""},
        {"not_an_option": 1},
    ],
    ids=str,
)
def test_bad_options(app: Conveyor, add: Task[..., Any], options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        add.options(**options).enqueue(1, 2)
    with pytest.raises(ConfigurationError):
        app.enqueue("tests.add", [1, 2], **options)
    assert nothing_written(app)


def test_naive_run_at_message(app: Conveyor, add: Task[..., Any]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        add.options(run_at=datetime(2030, 1, 1)).enqueue(1, 2)
    assert "timezone-aware" in str(caught.value)


def test_unknown_priority_message(add: Task[..., Any]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        add.options(priority="urgent")
    assert "critical, high, normal, low" in str(caught.value)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (lambda t: t.job(1), ArgumentsMismatch),
        (lambda t: t.job(b"x", 1), InvalidArguments),
        (lambda t: t.job("\x00", 1), InvalidArguments),
        (lambda t: t.job("x" * 5000, 1), PayloadTooLarge),
    ],
    ids=["mismatch", "not-json", "nul", "too-large"],
)
def test_one_bad_job_rejects_the_whole_batch(
    tmp_path: Path, bad: Any, error: type[EnqueueError]
) -> None:
    with Conveyor(f"sqlite:///{tmp_path}/x.db", max_payload_bytes=1000) as app:

        @app.task(name="tests.pair")
        def pair(a: Any, b: Any) -> None: ...

        specs: list[JobSpec] = [pair.job(1, 2), pair.job(3, 4), bad(pair), pair.job(5, 6)]
        with pytest.raises(error):
            app.enqueue_many(specs)
        assert nothing_written(app)
        assert len(app.enqueue_many([pair.job(1, 2), pair.job(3, 4)])) == 2


def test_a_batch_is_built_as_its_jobs_one_by_one(app: Conveyor, add: Task[..., Any]) -> None:
    @app.task(name="tests.greet", priority="high", timeout=5.0)
    def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    later = add.options(delay=30, priority=-3)
    keyed = greet.options(idempotency_key="greet-ann", queue="people")
    specs = [
        add.job(1, 2),
        add.job(3, 4, scale=2),
        later.job(5, 6),
        later.job(b=8, a=7),
        greet.job("bob"),
        keyed.job("ann", punctuation="?"),
        greet.job(name="naïve ✓ 🚀"),
        add.job({"deep": [1, {"x": None}]}, [2.5, "two"]),
        add.job(9, 10),
    ]
    built = build_jobs(specs)
    assert built == [spec.to_new_job() for spec in specs]
    assert _build_batch(specs) == built, "the batch path took them all, not the exact one"
    assert [job.task for job in built] == ["tests.add"] * 4 + ["tests.greet"] * 3 + [
        "tests.add"
    ] * 2
    assert built[3].kwargs_json == '{"b":8,"a":7}'
    assert (built[2].delay, built[2].priority) == (30.0, -3)
    assert (built[5].queue, built[5].idempotency_key) == ("people", "greet-ann")


def test_the_returned_jobs_are_the_stored_ones(app: Conveyor, add: Task[..., Any]) -> None:
    specs = [add.job(1, 2), add.options(delay=5, queue="q").job(3, 4, scale=2)]
    specs += [add.job(i, i) for i in range(1200)]
    jobs = app.enqueue_many(specs)
    assert jobs == [app.get_job(job.id) for job in jobs]


def test_a_batch_raises_the_error_of_its_first_bad_job(add: Task[..., Any]) -> None:
    not_json = add.job(b"bytes", 1)
    not_binding = add.job(1, 2, 3)
    with pytest.raises(InvalidArguments, match=r"tests\.add"):
        build_jobs([add.job(1, 2), not_json, not_binding])
    with pytest.raises(ArgumentsMismatch, match=r"tests\.add"):
        build_jobs([add.job(1, 2), not_binding, not_json])


def test_argument_shapes_that_bind_are_remembered_and_others_are_not() -> None:
    def fn(a: int, b: int = 0, *, c: int = 0) -> None: ...

    checker = ArgumentChecker(inspect.signature(fn))
    for _ in range(3):
        checker.check((1,), {})
        checker.check((1,), {"c": 2})
        with pytest.raises(TypeError, match="missing a required argument"):
            checker.check((), {"b": 1})
        with pytest.raises(TypeError):
            checker.check((1, 2, 3), {})
        with pytest.raises(TypeError):
            checker.check((1,), {"d": 1})
    # The same shape with other values binds the same way.
    checker.check(("anything",), {"c": object()})
    assert checker.binds([1, 2], {})
    assert not checker.binds([], {})


def test_queue_full_through_the_app(tmp_path: Path) -> None:
    with Conveyor(f"sqlite:///{tmp_path}/x.db", queue_limits={"default": 2}) as app:

        @app.task(name="tests.one")
        def one(n: int) -> None: ...

        one.enqueue(1)
        with pytest.raises(QueueFull) as caught:
            app.enqueue_many([one.job(2), one.job(3)])
        assert (caught.value.queue, caught.value.depth, caught.value.limit) == ("default", 1, 2)
        assert app.stats()["default"] == {JobState.QUEUED: 1}


# --- registration ---------------------------------------------------------------------------


def test_default_task_name_is_module_and_qualname(app: Conveyor) -> None:
    @app.task
    def hello() -> None: ...

    assert hello.name == f"{__name__}.test_default_task_name_is_module_and_qualname.<locals>.hello"
    assert app.get_task(hello.name) is hello


def test_one_name_for_two_functions_is_refused(app: Conveyor) -> None:
    @app.task(name="tests.same")
    def first() -> None: ...

    with pytest.raises(ConfigurationError):

        @app.task(name="tests.same")
        def second() -> None: ...


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"max_attempts": True},
        {"timeout": -1.0},
        {"timeout": float("nan")},
        {"idempotency": "forever"},
        {"queue": ""},
        {"queue": "x" * 201},
        {"priority": "urgent"},
    ],
    ids=str,
)
def test_bad_task_options_are_refused_at_registration(
    app: Conveyor, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):

        @app.task(**options)
        def job() -> None: ...


def test_pass_context_leaves_the_context_out_of_the_arguments(app: Conveyor) -> None:
    @app.task(name="tests.ctx", pass_context=True)
    def with_context(ctx: Any, n: int) -> None: ...

    assert with_context.enqueue(5).args == [5]
    with pytest.raises(ArgumentsMismatch):
        with_context.enqueue("ctx", 5)

    with pytest.raises(ConfigurationError):

        @app.task(name="tests.ctx2", pass_context=True)
        def no_arguments() -> None: ...


# --- priorities -----------------------------------------------------------------------------


def test_priority_names_are_ordered() -> None:
    levels = PRIORITY_LEVELS
    assert levels["critical"] > levels["high"] > levels["normal"] > levels["low"]
    assert levels["normal"] == 0
    assert resolve_priority("critical") == levels["critical"]
    assert resolve_priority(-7) == -7
    assert resolve_priority(2**31 - 1) == 2**31 - 1
    assert resolve_priority(-(2**31)) == -(2**31)
    for bad in (False, 2**31, -(2**31) - 1, 2**70):
        with pytest.raises(ConfigurationError):
            resolve_priority(bad)


def test_priority_names_decide_the_claim_order(app: Conveyor, add: Task[..., Any]) -> None:
    ids = {
        name: add.options(priority=name).enqueue(1, 2).id
        for name in ("low", "normal", "critical", "high")
    }
    claimed = app.backend.claim("w", None, 10, 30.0)
    assert [c.id for c in claimed] == [ids[n] for n in ("critical", "high", "normal", "low")]


# --- the retry decision ---------------------------------------------------------------------


class Poison(NonRetryable):
    pass


@pytest.fixture
def flaky(app: Conveyor) -> Task[..., Any]:
    @app.task(
        name="tests.flaky",
        retry=Fixed(7.0),
        dont_retry=[KeyError],
        retry_budget=RetryBudget(5, 30.0),
        max_attempts=3,
    )
    def flaky() -> None: ...

    return flaky


def test_failure_with_attempts_left_retries_after_the_policy_delay(
    flaky: Task[..., Any],
) -> None:
    outcome = flaky.failure_outcome(
        11, "tok", 1, 3, ValueError("bad value"), now=123.0, checkpoint_json="[1]"
    )
    assert outcome.kind is OutcomeKind.RETRY
    assert (outcome.job_id, outcome.token) == (11, "tok")
    assert outcome.retry_in == 7.0
    assert outcome.retry_budget == ("tests.flaky", 5, 30.0)
    assert outcome.checkpoint_json == "[1]"
    assert outcome.dead_reason is None
    assert outcome.error is not None
    assert outcome.error.attempt == 1
    assert outcome.error.type == "ValueError"
    assert outcome.error.message == "bad value"
    assert outcome.error.at == 123.0


def test_failure_without_a_budget_has_none(app: Conveyor) -> None:
    @app.task(name="tests.plain")
    def plain() -> None: ...

    outcome = plain.failure_outcome(1, "t", 1, 3, ValueError(), now=0.0)
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.retry_budget is None
    assert 0.9 <= outcome.retry_in <= 1.1, "the default policy starts at about one second"


def test_last_attempt_dead_letters(flaky: Task[..., Any]) -> None:
    outcome = flaky.failure_outcome(1, "tok", 3, 3, ValueError("bad value"), now=0.0)
    assert outcome.kind is OutcomeKind.DEAD
    assert outcome.dead_reason == "attempts exhausted (3/3): ValueError: bad value"
    assert outcome.error is not None
    assert outcome.error.attempt == 3
    past = flaky.failure_outcome(1, "tok", 5, 3, ValueError(), now=0.0)
    assert past.kind is OutcomeKind.DEAD


@pytest.mark.parametrize(
    "exc",
    [NonRetryable("no"), Poison("no"), KeyError("no"), type("SubKey", (KeyError,), {})("no")],
    ids=["NonRetryable", "subclass", "dont_retry", "dont_retry-subclass"],
)
def test_non_retryable_errors_dead_letter_at_once(
    flaky: Task[..., Any], exc: BaseException
) -> None:
    outcome = flaky.failure_outcome(1, "tok", 1, 3, exc, now=0.0)
    assert outcome.kind is OutcomeKind.DEAD
    assert outcome.dead_reason is not None
    assert outcome.dead_reason.startswith("non-retryable error: ")


def test_error_description(flaky: Task[..., Any]) -> None:
    try:
        raise Poison("x" * 5000)
    except Poison as exc:
        outcome = flaky.failure_outcome(1, "tok", 1, 3, exc, now=0.0)
    assert outcome.error is not None
    assert outcome.error.type == f"{__name__}.Poison"
    assert len(outcome.error.message) == 2000
    assert "Traceback" in outcome.error.traceback
    assert "test_error_description" in outcome.error.traceback
    empty = flaky.failure_outcome(1, "tok", 3, 3, RuntimeError(), now=0.0)
    assert empty.dead_reason == "attempts exhausted (3/3): RuntimeError"
