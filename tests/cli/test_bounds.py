"""Hostile values on the command line: every one is a user mistake (one line, exit 2) or a
success, identically on every engine, and never leaves the database unreadable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conveyor.cli import cli
from conveyor.errors import ConfigurationError
from conveyor.task import JobOptions
from tests.cli.support import assert_user_error, output_json
from tests.engines import Engine, engine
from tests.support import enabled_backends, new_job


def run(db: Engine, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--url", db.url, *args], env=db.env, catch_exceptions=False)


def assert_handled(result: Result, command: tuple[str, ...]) -> None:
    """A success, or a user mistake reported as one line with exit code 2."""
    shown = repr(command)[:300]
    assert "internal error" not in result.stderr, (shown, result.stderr)
    assert "Traceback" not in result.output, (shown, result.output)
    assert result.exit_code in (0, 2), (shown, result.exit_code, result.output)
    if result.exit_code == 2:
        assert len(result.stderr.splitlines()) == 1, (shown, result.stderr)


def assert_readable(db: Engine) -> None:
    """Every read command still works, on every job."""
    commands: list[tuple[str, ...]] = [
        ("jobs", "list"),
        ("stats",),
        ("stats", "--json"),
        ("dlq", "list"),
        ("dlq", "list", "--json"),
        ("queues",),
    ]
    for job in output_json(run(db, "jobs", "list", "--json", "--limit", "3")):
        commands += [("jobs", "show", str(job["id"])), ("jobs", "show", str(job["id"]), "--json")]
    for command in commands:
        result = run(db, *command)
        assert result.exit_code == 0, (db.name, command, result.output)


@pytest.fixture(params=enabled_backends())
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine(request.param, tmp_path) as found:
        yield found


@pytest.fixture
def every_engine(tmp_path: Path) -> Iterator[list[Engine]]:
    """One fresh database of each enabled engine, to run the same command on each."""
    found: list[Engine] = []
    contexts = [engine(name, tmp_path / name) for name in enabled_backends()]
    try:
        for name, context in zip(enabled_backends(), contexts, strict=True):
            (tmp_path / name).mkdir()
            found.append(context.__enter__())
        yield found
    finally:
        for context in contexts[: len(found)]:
            context.__exit__(None, None, None)


# --- the holes the front-door issue found, each pinned ------------------------------------


def test_a_delay_beyond_year_9999_is_refused_and_reads_keep_working(db: Engine) -> None:
    assert_user_error(run(db, "enqueue", "t", "--delay", "1e12"), "delay", "at most")
    assert_user_error(
        run(db, "enqueue", "t", "--run-at", "0001-01-01T00:00:00+00:00"), "run_at", "1970"
    )
    assert run(db, "enqueue", "t", "--run-at", "9999-12-31T23:00:00+00:00").exit_code == 0
    assert_readable(db)


def test_a_huge_job_id_is_no_job_on_every_engine(db: Engine) -> None:
    huge = "99999999999999999999999"
    for command in (
        ("jobs", "show", huge),
        ("jobs", "cancel", huge),
        ("dlq", "show", huge),
        ("dlq", "requeue", huge),
        ("dlq", "discard", huge),
    ):
        assert_user_error(run(db, *command), f"no job with id {huge}")
    assert_user_error(run(db, "jobs", "list", "--before-id", huge), "before_id")
    assert_user_error(run(db, "jobs", "list", "--limit", huge), "limit")


def test_max_attempts_out_of_range_names_the_option(db: Engine) -> None:
    assert_user_error(run(db, "enqueue", "t", "--max-attempts", "99999999999"), "max_attempts")
    assert_user_error(run(db, "enqueue", "t", "--priority", "99999999999"), "priority")
    assert run(db, "enqueue", "t", "--max-attempts", "1000000").exit_code == 0


def test_a_far_future_run_at_stored_by_an_older_version_does_not_break_reads(
    db: Engine,
) -> None:
    with db.app() as app:
        [stored] = app.backend.enqueue_many([new_job(run_at=1e12)])
    shown = run(db, "jobs", "show", str(stored.job_id))
    assert shown.exit_code == 0, shown.output
    assert "(UNIX seconds)" in shown.stdout
    assert output_json(run(db, "jobs", "show", str(stored.job_id), "--json"))["run_at"] == 1e12
    assert_readable(db)


# --- a folder this user may not write -----------------------------------------------------

NOT_WRITABLE_PROBE = """
import sys
from conveyor import Conveyor
from conveyor.errors import DatabaseNotWritable
try:
    Conveyor(sys.argv[1]).stats()
except DatabaseNotWritable as exc:
    print("DatabaseNotWritable:", exc)
"""


def _as_another_user() -> list[str]:
    """How to run a command without root's power to write anywhere (permission bits do not
    bind root): as nobody through setpriv; nothing when this is not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root, and no setpriv to drop root's permissions")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def locked_folder() -> Iterator[Path]:
    """An existing folder nobody but root may write, inside one anybody may enter (pytest's own
    temporary folders are private to root)."""
    outer = Path(tempfile.mkdtemp(prefix="conveyor-locked-"))
    outer.chmod(0o755)
    locked = outer / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    yield locked
    locked.chmod(0o755)
    shutil.rmtree(outer)


def test_a_folder_that_is_not_writable_is_named(locked_folder: Path) -> None:
    prefix = _as_another_user()
    url = f"sqlite:///{locked_folder / 'jobs.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    expected = f"cannot create database at {locked_folder / 'jobs.db'}: folder {locked_folder}"
    python = subprocess.run(
        [*prefix, sys.executable, "-c", NOT_WRITABLE_PROBE, url],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=False,
    )
    assert python.stdout.startswith("DatabaseNotWritable: " + expected), python
    assert "is not writable" in python.stdout
    for command in (["schema", "migrate"], ["enqueue", "t"]):
        cli_run = subprocess.run(
            [*prefix, sys.executable, "-m", "conveyor.cli", "--url", url, *command],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            check=False,
        )
        assert cli_run.returncode == 2, cli_run
        assert cli_run.stderr == f"conveyor: error: {expected} is not writable\n", cli_run


# --- the fuzz -----------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats().map(repr),
    st.sampled_from(
        ["99999999999999999999999", "-1", "0", "1e12", "1e400", "nan", "-inf", "", " ", "0x10"]
    ),
)
TEXTS = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(
        ["", "\x00", "a\x00b", "\ud800", "\udcff", "x" * 10_000, "\U0001f600" * 501, "\n", "-"]
    ),
)
TIMES = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.sampled_from(
        ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00", "2030-01-01T00:00:00", "x"]
    ),
)
ARGUMENTS = st.one_of(
    st.sampled_from(
        ["[1]", "[NaN]", '["\\u0000"]', '["\\ud800"]', "[" * 10_000 + "]" * 10_000, "[]", "{}"]
    ),
    TEXTS,
)
ENQUEUE_OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "--queue": TEXTS,
        "--priority": st.one_of(NUMBERS, TEXTS),
        "--delay": NUMBERS,
        "--run-at": TIMES,
        "--idempotency-key": TEXTS,
        "--max-attempts": NUMBERS,
        "--timeout": NUMBERS,
        "--args": ARGUMENTS,
        "--kwargs": st.one_of(ARGUMENTS, st.just('{"a": {"b": [1, 2]}}')),
    },
)
ID_COMMANDS = st.one_of(
    st.tuples(st.sampled_from(["jobs show", "jobs cancel", "dlq show"]), NUMBERS),
    st.tuples(st.sampled_from(["dlq requeue --yes", "dlq discard --yes"]), NUMBERS),
    st.tuples(st.sampled_from(["jobs list --limit", "jobs list --before-id"]), NUMBERS),
    st.tuples(st.sampled_from(["dlq list --limit", "queues limit q"]), NUMBERS),
    st.tuples(st.sampled_from(["jobs list --queue", "jobs list --task", "dlq list --task"]), TEXTS),
    st.tuples(st.sampled_from(["workers stop", "queues limit"]), TEXTS),
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(task=TEXTS, options=ENQUEUE_OPTIONS, other=ID_COMMANDS)
@example(task="t", options={"--delay": "1e12"}, other=("jobs show", "99999999999999999999999"))
@example(task="t", options={"--max-attempts": "99999999999"}, other=("dlq discard --yes", "1"))
@example(task="t", options={"--idempotency-key": "a\x00b"}, other=("jobs list --limit", "1e400"))
@example(task="t", options={"--args": "[" * 10_000 + "]" * 10_000}, other=("workers stop", "\x00"))
@example(task="\udcff", options={"--queue": "\ud800"}, other=("jobs list --queue", "\x00"))
def test_hostile_values_exit_0_or_2_alike_on_every_engine_and_reads_keep_working(
    every_engine: list[Engine], task: str, options: dict[str, str], other: tuple[str, str]
) -> None:
    enqueue = ("enqueue", task, *(part for pair in options.items() for part in pair))
    verb, value = other
    command = (*verb.split(), value)
    outcomes = []
    for db in every_engine:
        result = run(db, *enqueue)
        assert_handled(result, enqueue)
        # On success only the exit code: the unseen-task warning names each engine's URL.
        outcomes.append((result.exit_code, result.stderr if result.exit_code else ""))
        assert_handled(run(db, *command), command)
        assert_readable(db)
    # The same verdict, in the same words, from every engine.
    assert all(outcome == outcomes[0] for outcome in outcomes), (enqueue, outcomes)


def test_the_fuzz_values_reach_the_database_when_valid(every_engine: list[Engine]) -> None:
    """The fuzz is not vacuous: its edge values that are valid are stored as given."""
    for db in every_engine:
        job = output_json(
            run(
                db,
                "enqueue",
                "\U0001f600" * 500,
                "--idempotency-key",
                "\U0001f600" * 500,
                "--run-at",
                "9999-12-31T23:59:59+00:00",
                "--priority",
                str(2**31 - 1),
                "--json",
            )
        )
        assert json.loads(run(db, "jobs", "show", str(job["id"]), "--json").stdout)["task"] == (
            "\U0001f600" * 500
        )
        assert_readable(db)


# --- the command line and the Python API refuse the same values ---------------------------

FLOAT_OPTIONS = {"--delay": "delay", "--timeout": "timeout"}
INT_OPTIONS = {"--max-attempts": "max_attempts", "--priority": "priority"}


def python_verdict(field: str, value: Any) -> str | None:
    """None if the Python API takes ``value`` for ``field``, else its error message."""
    try:
        JobOptions(**{field: value})
    except ConfigurationError as exc:
        return str(exc)
    return None


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    choice=st.one_of(
        st.tuples(st.sampled_from(sorted(FLOAT_OPTIONS)), st.floats()),
        st.tuples(
            st.sampled_from(sorted(INT_OPTIONS)),
            st.integers(min_value=-(2**70), max_value=2**70)
            | st.sampled_from([0, 1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 10**6, 10**6 + 1]),
        ),
    )
)
def test_the_cli_refuses_exactly_what_the_python_api_refuses(
    choice: tuple[str, float | int],
) -> None:
    flag, value = choice
    field = FLOAT_OPTIONS.get(flag) or INT_OPTIONS[flag]
    expected = python_verdict(field, value)
    with tempfile.TemporaryDirectory() as folder:
        db = Engine("sqlite", f"sqlite:///{folder}/jobs.db")
        result = run(db, "enqueue", "t", f"{flag}={value!r}")
    if expected is None:
        assert result.exit_code == 0, (flag, value, result.output)
    else:
        assert_user_error(result, expected)
