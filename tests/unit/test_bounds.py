"""Every number and string a user hands the Python API is checked against its documented range
(conveyor.bounds) before anything is written, with the same typed error on every engine."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import Conveyor, Task, payload
from conveyor import bounds as b
from conveyor.backends.base import NewJob
from conveyor.errors import ArgumentsMismatch, ConfigurationError, InvalidArguments, JobNotFound
from conveyor.payload import MAX_DEPTH
from conveyor.settings import Settings
from conveyor.task import encode_job
from tests.engines import Engine, engine
from tests.support import enabled_backends


@pytest.fixture(params=enabled_backends())
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine(request.param, tmp_path) as found:
        yield found


@pytest.fixture
def app(db: Engine) -> Iterator[Conveyor]:
    with db.app() as conveyor:
        yield conveyor


@pytest.fixture
def echo(app: Conveyor) -> Task[..., Any]:
    @app.task(name="tests.echo")
    def echo(value: Any = None) -> Any:
        return value

    return echo


def nothing_written(app: Conveyor) -> bool:
    return dict(app.stats()) == {}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


REFUSED_OPTIONS = [
    ({"delay": 1e12}, "delay"),
    ({"delay": math.nan}, "delay"),
    ({"delay": math.inf}, "delay"),
    ({"delay": -1}, "delay"),
    ({"delay": timedelta(days=365 * 200)}, "delay"),
    ({"run_at": 1e12}, "run_at"),
    ({"run_at": -1e12}, "run_at"),
    ({"run_at": 10**400}, "run_at"),
    ({"run_at": datetime(1, 1, 1, tzinfo=UTC)}, "run_at"),
    ({"max_attempts": 99_999_999_999}, "max_attempts"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": True}, "max_attempts"),
    ({"priority": 2**31}, "priority"),
    ({"priority": -(2**31) - 1}, "priority"),
    ({"timeout": 1e12}, "timeout"),
    ({"timeout": math.nan}, "timeout"),
    ({"timeout": 0}, "timeout"),
    ({"idempotency_key": "a\x00b"}, "idempotency_key"),
    ({"idempotency_key": "\ud800"}, "idempotency_key"),
    ({"idempotency_key": "k" * 501}, "idempotency_key"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"queue": "q\x00"}, "queue name"),
    ({"queue": "\udcff"}, "queue name"),
    ({"queue": "q" * 201}, "queue name"),
]


@pytest.mark.parametrize(("options", "named"), REFUSED_OPTIONS)
def test_out_of_range_options_are_refused_before_any_write(
    app: Conveyor, echo: Task[..., Any], options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        echo.options(**options).enqueue(1)
    with pytest.raises(ConfigurationError, match=named):
        app.enqueue("tests.echo", [1], **options)
    assert nothing_written(app)


def test_a_task_default_out_of_range_is_refused_at_registration(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match="max_attempts"):
        app.task(name="t", max_attempts=99_999_999_999)(lambda: None)
    with pytest.raises(ConfigurationError, match="timeout"):
        app.task(name="t", timeout=math.inf)(lambda: None)


def test_the_edges_of_every_range_are_stored_and_read_back(
    app: Conveyor, echo: Task[..., Any]
) -> None:
    wide_key = "\U0001f600" * b.MAX_IDEMPOTENCY_KEY  # 4 bytes a character in UTF-8
    edges = [
        echo.options(run_at=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)).job(1),
        echo.options(delay=b.MAX_DELAY, priority=b.MAX_PRIORITY).job(2),
        echo.options(max_attempts=b.MAX_ATTEMPTS, priority=b.MIN_PRIORITY).job(3),
        echo.options(idempotency_key=wide_key, queue="q" * b.MAX_QUEUE_NAME).job(4),
        echo.options(timeout=b.MAX_TIMEOUT, run_at=0).job(nested(MAX_DEPTH - 1)),
    ]
    ids = [job.id for job in app.enqueue_many(edges)]
    listed = app.list_jobs(limit=b.MAX_LIMIT)
    assert sorted(job.id for job in listed) == sorted(ids)
    assert app.get_job(ids[3]).idempotency_key == wide_key
    assert app.get_job(ids[4]).args == [nested(MAX_DEPTH - 1)]


@pytest.mark.parametrize("depth", [MAX_DEPTH, 990, 10_000])
def test_arguments_nested_too_deep_are_invalid_arguments(
    app: Conveyor, echo: Task[..., Any], depth: int
) -> None:
    deep = nested(depth)
    with pytest.raises(InvalidArguments, match="nests deeper"):
        echo.enqueue(deep)
    with pytest.raises(InvalidArguments, match="nests deeper"):
        echo.enqueue(value={"a": deep})
    # The bulk path encodes a batch at once: the deep job is still named.
    batch = [echo.job(i) for i in range(50)] + [echo.job(deep)]
    with pytest.raises(InvalidArguments, match="nests deeper"):
        app.enqueue_many(batch)
    assert nothing_written(app)


def test_a_nul_idempotency_key_is_refused_through_every_path(
    app: Conveyor, echo: Task[..., Any]
) -> None:
    with pytest.raises(ConfigurationError, match="NUL"):
        echo.options(idempotency_key="order\x007").enqueue(1)
    with pytest.raises(ConfigurationError, match="NUL"):
        app.enqueue_many([echo.job(1), echo.options(idempotency_key="k\x00").job(2)])
    raw = NewJob("tests.echo", "default", "[]", "{}", idempotency_key="order\x007")
    with pytest.raises(ConfigurationError, match="NUL"):
        app.enqueue_raw([raw])
    assert nothing_written(app)


@pytest.mark.parametrize(
    ("fields", "error", "named"),
    [
        ({"args_json": "[1"}, InvalidArguments, "not a JSON text"),
        ({"args_json": "{}"}, InvalidArguments, "JSON list"),
        ({"args_json": '["\\u0000"]'}, InvalidArguments, "NUL"),
        ({"kwargs_json": '{"a": "\\ud800"}'}, InvalidArguments, "surrogate"),
        ({"args_json": "[NaN]"}, InvalidArguments, "not a JSON text"),
        ({"max_attempts": 2**40}, ConfigurationError, "max_attempts"),
        ({"run_at": 1e15}, ConfigurationError, "run_at"),
        ({"delay": math.inf}, ConfigurationError, "delay"),
        ({"priority": 2**40}, ConfigurationError, "priority"),
        ({"task": "t\x00"}, ConfigurationError, "task name"),
    ],
)
def test_enqueue_raw_checks_hand_built_jobs_like_encode_job(
    app: Conveyor, fields: dict[str, Any], error: type[Exception], named: str
) -> None:
    plain = {"task": "t", "queue": "default", "args_json": "[]", "kwargs_json": "{}"}
    job = NewJob(**plain | fields)
    with pytest.raises(error, match=named):
        app.enqueue_raw([NewJob("t", "default", "[]", "{}"), job])
    assert nothing_written(app)


@pytest.mark.parametrize("job_id", [10**23, 2**63, -5, 0])
def test_an_id_no_engine_can_store_names_no_job(app: Conveyor, job_id: int) -> None:
    with pytest.raises(JobNotFound, match=f"no job with id {job_id}"):
        app.get_job(job_id)
    with pytest.raises(JobNotFound):
        app.cancel(job_id)
    with pytest.raises(JobNotFound):
        app.requeue(job_id)
    with pytest.raises(JobNotFound):
        app.requeue_many([job_id])
    with pytest.raises(JobNotFound):
        app.discard([job_id])


def test_a_job_id_must_be_an_integer(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match="job id must be an integer"):
        app.get_job("1")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="job ids must be a list of integers"):
        app.discard("12")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("filters", "named"),
    [
        ({"limit": 10**30}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"before_id": 10**30}, "before_id"),
        ({"queue": "q\x00"}, "queue name"),
        ({"task": "\ud800"}, "task name"),
        ({"state": "bogus"}, "unknown state"),
    ],
)
def test_reads_refuse_filters_out_of_range(
    app: Conveyor, filters: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        app.list_jobs(**filters)


def test_worker_ids_reaching_the_database_are_checked(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match="worker id"):
        app.stop_workers(["w\x00"])


def test_unknown_task_options_are_a_configuration_error_listing_the_valid_ones(
    app: Conveyor, echo: Task[..., Any]
) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown task option bogus: use .*max_attempts"):
        app.task(bogus=1)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=r"unknown task options bogus, nope"):
        app.task(lambda: None, nope=2, bogus=1)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=r"unknown option bogus: use .*idempotency_key"):
        echo.options(bogus=1)
    with pytest.raises(ConfigurationError, match=r"unknown option bogus"):
        app.enqueue("tests.echo", bogus=1)
    assert set(app.tasks) == {"tests.echo"}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"concurrency": 10**9}, "concurrency"),
        ({"concurrency": (1, 10**9)}, "concurrency"),
        ({"prefetch": 10**9}, "prefetch"),
        ({"grace": math.nan}, "grace"),
        ({"grace": math.inf}, "grace"),
    ],
)
def test_worker_options_have_upper_bounds(
    app: Conveyor, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        app.worker(**options)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"lease": 1e300}, "lease"),
        ({"poll_interval": 1e12}, "poll_interval"),
        ({"retention": 1e300}, "retention"),
        ({"batch_size": 10**20}, "batch_size"),
        ({"queue_limits": {"a": 10**30}}, "queue limit of 'a'"),
        ({"queue_limits": {"a\x00": 3}}, "queue name"),
    ],
)
def test_settings_that_reach_the_database_have_upper_bounds(
    overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Settings.load(env={}, **overrides)


@settings(max_examples=150, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(st.integers(min_value=1, max_value=MAX_DEPTH + 3), st.booleans()), max_size=30
    )
)
def test_a_batch_screens_nesting_exactly_as_one_job_does(shapes: list[tuple[int, bool]]) -> None:
    """Batches of job arguments (lists and dicts) around the depth limit: the batch encoder
    gives up exactly when one of them alone would be refused, and otherwise agrees with it."""
    values = [
        nested(depth - 1) if not as_dict else {"k": nested(depth - 2)} for depth, as_dict in shapes
    ]
    values = [value if isinstance(value, dict | list) else [value] for value in values]
    single: list[str | None] = []
    for value in values:
        try:
            single.append(payload.dumps(value))
        except InvalidArguments:
            single.append(None)
    batch = payload.dumps_many(values, containers=True)
    if None in single:
        assert batch is None
    else:
        assert batch == single


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        (5, None, "args of tests.echo must be a list or tuple, got int"),
        ("ab", None, "args of tests.echo must be a list or tuple, got str"),
        ([1], [("value", 1)], "kwargs of tests.echo must map names to values, got list"),
        ([], {1: 2}, "kwargs of tests.echo must map names to values, got dict"),
    ],
)
def test_arguments_of_the_wrong_shape_are_refused_by_name(
    app: Conveyor, echo: Task[..., Any], args: Any, kwargs: Any, named: str
) -> None:
    with pytest.raises(ArgumentsMismatch, match=named):
        app.enqueue("tests.echo", args, kwargs)
    with pytest.raises(ArgumentsMismatch, match=named):
        encode_job("tests.echo", args, kwargs, max_payload_bytes=1000)
    assert nothing_written(app)
