"""`conveyor top`: one frame (--once, plain and JSON), the live loop ended by Ctrl-C, and the
finishes per minute, read from the per-minute aggregates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from conveyor import Conveyor
from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.tally import minute_of
from conveyor.cli.top import RATE_MINUTES, read_frame, run_live
from conveyor.job import JobState
from conveyor.testing import Clock, drain
from conveyor.worker_info import WorkerRegistration
from tests.cli.support import Invoke, output_json
from tests.engines import Engine, engine
from tests.support import enabled_backends

PATIENCE = 60.0


@pytest.fixture(params=enabled_backends())
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine(request.param, tmp_path) as found:
        yield found


def fill(app: Conveyor) -> None:
    """Queue "mail": 2 ready, 1 running (on worker w-1), 1 succeeded; "reports": 1 scheduled."""

    @app.task(name="send", queue="mail")
    def send() -> None:
        return None

    @app.task(name="report", queue="reports")
    def report() -> None:
        return None

    backend = app.backend
    backend.register_worker(
        WorkerRegistration(
            id="w-1",
            host="box",
            pid=4242,
            queues=("mail",),
            concurrency=4,
            beat_interval=5.0,
            dead_after=30.0,
        )
    )
    for _ in range(4):
        send.enqueue()
    report.options(delay=3600).enqueue()
    done, running = backend.claim("w-1", ["mail"], 2, 60.0)
    backend.finish_many([Outcome(done.id, done.lease_token, OutcomeKind.SUCCEEDED, "null")])
    del running


def test_once_prints_queues_and_workers_as_plain_columns(database: Engine, invoke_on: Any) -> None:
    with database.app() as app:
        fill(app)
    result = invoke_on(database, "top", "--once")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("conveyor top ")
    assert "2 queue(s), 1 worker(s) alive" in lines[0]
    header = lines[2].split()
    assert header == [
        "QUEUE",
        "SCHEDULED",
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
        "DONE/MIN",
        "OLDEST",
        "WAIT",
    ]
    mail = lines[3].split()
    assert mail[:7] == ["mail", "0", "2", "1", "1", mail[5], mail[6]]
    assert float(mail[5]) > 0  # the one job finished, over the last minutes
    assert mail[6].endswith("s")  # the oldest ready job's wait, e.g. 0.3s
    assert lines[4].split() == ["reports", "1", "0", "0", "0", "0.0", "-"]
    assert lines[6].split() == [
        "WORKER",
        "HOST",
        "PID",
        "RUNNING",
        "LAST",
        "BEAT",
        "HEALTH",
        "STATE",
    ]
    worker = lines[7].split()
    assert worker[:4] == ["w-1", "box", "4242", "1/4"]
    assert worker[-2:] == ["alive", "running"]
    # Off a terminal: no colour codes, no box drawing.
    assert "\x1b[" not in result.stdout
    assert not any("\u2500" <= ch <= "\u257f" for ch in result.stdout)


def test_once_as_json(database: Engine, invoke_on: Any) -> None:
    with database.app() as app:
        fill(app)
    frame = output_json(invoke_on(database, "top", "--once", "--json"))
    queues = {queue["name"]: queue for queue in frame["queues"]}
    assert queues["mail"]["jobs"]["queued"] == 2
    assert queues["mail"]["jobs"]["running"] == 1
    assert queues["mail"]["finished_per_minute"] > 0
    assert queues["reports"]["finished_per_minute"] == 0
    assert queues["mail"]["oldest_ready_age"] >= 0
    assert queues["reports"]["oldest_ready_age"] is None
    (worker,) = frame["workers"]
    assert (worker["id"], worker["running"], worker["pid"]) == ("w-1", 1, 4242)


def test_json_frames_are_one_object_per_line(url: str, migrated: None) -> None:
    with Conveyor(url) as app:
        fill(app)
        frames = 0

        def sleep(_: float) -> None:
            nonlocal frames
            frames += 1
            if frames == 2:
                raise KeyboardInterrupt

        runner = CliRunner()
        with runner.isolation() as (out, _, _):
            run_live(lambda: read_frame(app), terminal=False, as_json=True, sleep=sleep)
            printed = out.getvalue().decode()
    lines = printed.splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["workers"][0]["id"] for line in lines] == ["w-1", "w-1"]


def test_once_on_an_empty_database(invoke: Invoke, migrated: None) -> None:
    result = invoke("top", "--once")
    assert result.exit_code == 0
    assert "no jobs" in result.stdout and "no workers" in result.stdout


def test_live_frames_measure_finishes_per_minute(
    url: str, migrated: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each frame is read afresh from the aggregates; the second counts the jobs that
    finished since the first."""
    with Conveyor(url) as app:
        fill(app)
        frames: list[Any] = []

        def next_frame() -> Any:
            frames.append(read_frame(app))
            return frames[-1]

        def sleep(_: float) -> None:
            if len(frames) == 2:
                raise KeyboardInterrupt  # Ctrl-C
            # Between frames, two more jobs of "mail" finish.
            for claimed in app.backend.claim("w-1", ["mail"], 2, 60.0):
                app.backend.finish_many(
                    [Outcome(claimed.id, claimed.lease_token, OutcomeKind.SUCCEEDED, "null")]
                )

        run_live(next_frame, terminal=False, sleep=sleep)
    first, second = ({q.name: q for q in frame.queues} for frame in frames)
    assert first["mail"].per_minute == pytest.approx(1 * 60.0 / span(frames[0].at))
    assert second["mail"].per_minute == pytest.approx(3 * 60.0 / span(frames[1].at))
    assert second["mail"].jobs[JobState.SUCCEEDED] == 3
    printed = capsys.readouterr().out
    assert printed.count("conveyor top ") == 2


def span(at: float) -> float:
    """Seconds the rate at ``at`` is measured over: from the start of its first minute."""
    return at - (minute_of(at) - (RATE_MINUTES - 1) * 60)


def test_the_rate_outlives_pruning_and_leaves_the_window(tmp_path: Path) -> None:
    """The finishes are counted as they happen: pruning the jobs leaves the rate as it was;
    RATE_MINUTES later it is zero."""
    clock = Clock(1_800_000_030.0)
    with Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as app:

        @app.task(name="send", queue="mail")
        def send() -> None:
            return None

        for _ in range(3):
            send.enqueue()
        drain(app)
        clock.advance(1)
        assert app.backend.prune(0.0) == 3
        assert app.backend.stats() == {}
        (frame,) = read_frame(app).queues
        assert frame.name == "mail"
        assert frame.per_minute == pytest.approx(3 * 60.0 / span(clock()))
        clock.advance(RATE_MINUTES * 60)
        assert read_frame(app).queues == []


def test_ctrl_c_ends_top_with_status_0(database: Engine, tmp_path: Path) -> None:
    with database.app() as app:
        fill(app)
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", "--url", database.url, "top"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **database.env},
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith("conveyor top ")  # a frame is out
        process.send_signal(signal.SIGINT)
        status = process.wait(PATIENCE)
        errors = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(PATIENCE)
    assert status == 0, errors
    assert "Traceback" not in errors


@pytest.fixture
def invoke_on() -> Any:
    from click.testing import CliRunner

    from conveyor.cli import cli

    def run(database: Engine, *args: str) -> click.testing.Result:
        return CliRunner().invoke(
            cli, ["--url", database.url, *args], env=database.env, catch_exceptions=False
        )

    return run


def test_frame_json_is_plain_json(url: str, migrated: None) -> None:
    with Conveyor(url) as app:
        fill(app)
        frame = read_frame(app)
    assert json.loads(json.dumps(frame.to_dict()))["queues"][0]["name"] == "mail"


def test_on_a_terminal_top_redraws_until_ctrl_c(database: Engine) -> None:
    import pty

    with database.app() as app:
        fill(app)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", "--url", database.url, "top", "--interval", "0.2"],
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**os.environ, **database.env, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(follower)
    seen = b""
    try:
        while seen.count(b"conveyor top") < 2:  # drawn, then redrawn
            seen += os.read(leader, 4096)
        process.send_signal(signal.SIGINT)
        status = process.wait(PATIENCE)
        assert process.stderr is not None
        errors = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(PATIENCE)
        os.close(leader)
    assert status == 0, errors
    assert "Traceback" not in errors
    text = seen.decode(errors="replace")
    assert "\x1b[" in text
    assert "w-1" in text and "mail" in text
