"""`conveyor watch ID`: a real `conveyor` process follows a job that a worker in this process
runs; the test steps the job on only once watch has printed what it saw (events, not sleeps).
Exit status 0 for success, 1 for dead or cancelled, 2 for no such job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from conveyor import Conveyor
from conveyor.cli.watch import fraction, line, progress_text
from conveyor.job import JobState
from conveyor.results import follow
from tests.cli.support import Invoke, assert_user_error
from tests.engines import Engine, engine
from tests.support import enabled_backends

#: Seconds any one step may take before the test gives up (never reached when all is well).
PATIENCE = 60.0


@pytest.fixture(params=enabled_backends())
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine(request.param, tmp_path) as found:
        yield found


class Watcher:
    """`conveyor watch` in a process of its own, its stdout read line by line."""

    def __init__(self, database: Engine, job_id: int, *extra: str) -> None:
        env = {**os.environ, **database.env}
        command = ["-m", "conveyor.cli", "--url", database.url, "watch", str(job_id), *extra]
        self.process = subprocess.Popen(
            [sys.executable, *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        self._stdout: IO[str] = self.process.stdout

    def next_line(self) -> str:
        read = self._stdout.readline()
        assert read, f"watch ended early: {self.process.wait(PATIENCE)} {self.stderr()}"
        return read.rstrip("\n")

    def until(self, wanted: Callable[[str], bool]) -> str:
        while not wanted(found := self.next_line()):
            pass
        return found

    def finish(self) -> tuple[int, list[str]]:
        rest = self._stdout.read().splitlines()
        return self.process.wait(PATIENCE), rest

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(PATIENCE)


@pytest.fixture
def watchers() -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(database: Engine, job_id: int, *extra: str) -> Watcher:
        started.append(Watcher(database, job_id, *extra))
        return started[-1]

    yield start
    for watcher in started:
        watcher.close()


class Stepper:
    """A task that reports progress, then waits for the test before it ends: ``fail`` makes
    it raise (dead after its one attempt)."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.started = threading.Event()
        self.go_on = threading.Event()
        stepper = self

        @app.task(name="stepper", max_attempts=1, pass_context=True)
        def step(ctx: Any, fail: bool = False) -> str:
            ctx.progress({"done": 1, "total": 4, "message": "first quarter"})
            stepper.started.set()
            assert stepper.go_on.wait(PATIENCE)
            if fail:
                raise RuntimeError("it broke")
            return "all done"

        self.task = step
        self.worker = threading.Thread(target=self._work, daemon=True)

    def _work(self) -> None:
        self.app.worker(burst=True, concurrency=1, install_signal_handlers=False).run()

    def start(self, **kwargs: Any) -> int:
        job_id = self.task.enqueue(**kwargs).id
        self.worker.start()
        assert self.started.wait(PATIENCE)
        return job_id

    def release(self) -> None:
        self.go_on.set()
        self.worker.join(PATIENCE)


def test_watch_follows_a_job_to_success(database: Engine, watchers: Callable[..., Watcher]) -> None:
    with database.app() as app:
        stepper = Stepper(app)
        job_id = stepper.start()
        watcher = watchers(database, job_id)
        first = watcher.next_line()
        assert first == (
            f"job {job_id} (stepper): running, attempt 1/1, progress 25% first quarter"
        )
        stepper.release()
        status, rest = watcher.finish()
    assert status == 0, watcher.stderr()
    assert rest[-1] == f'job {job_id} (stepper): succeeded, attempt 1/1, result "all done"'
    assert "\x1b[" not in first + "".join(rest)  # plain text off a terminal


def test_watch_exits_1_when_the_job_dies_and_json_lines(
    database: Engine, watchers: Callable[..., Watcher]
) -> None:
    with database.app() as app:
        stepper = Stepper(app)
        job_id = stepper.start(fail=True)
        watcher = watchers(database, job_id, "--json")
        first = json.loads(watcher.next_line())
        assert first["state"] == "running"
        assert first["progress"] == {"done": 1, "total": 4, "message": "first quarter"}
        stepper.release()
        status, rest = watcher.finish()
    assert status == 1
    last = json.loads(rest[-1])
    assert last["state"] == "dead"
    assert last["error"]["type"] == "RuntimeError"
    assert last["error"]["message"] == "it broke"
    assert "attempts exhausted" in last["dead_reason"]


def test_watch_exits_1_when_the_job_is_cancelled(
    database: Engine, watchers: Callable[..., Watcher]
) -> None:
    with database.app() as app:
        # No worker takes it: only the cancel ends it.
        (job,) = app.enqueue_many([_spec(app)])
        watcher = watchers(database, job.id)
        assert watcher.next_line() == f"job {job.id} (idle): queued, attempt 0/3"
        app.cancel(job.id)
        status, rest = watcher.finish()
    assert status == 1
    assert rest == [f"job {job.id} (idle): cancelled, attempt 0/3"]


def _spec(app: Conveyor) -> Any:
    @app.task(name="idle")
    def idle() -> None:
        return None

    return idle.job()


def test_watch_of_an_unknown_job_is_a_user_error(invoke: Invoke, migrated: None) -> None:
    assert_user_error(invoke("watch", "424242"), "no job with id 424242")


def test_watch_of_a_job_already_ended_prints_it_and_exits(
    invoke: Invoke, url: str, migrated: None
) -> None:
    with Conveyor(url) as app:
        (job,) = app.enqueue_many([_spec(app)])
        app.cancel(job.id)
    result = invoke("watch", str(job.id))
    assert result.exit_code == 1
    assert result.stdout == f"job {job.id} (idle): cancelled, attempt 0/3\n"


def test_follow_yields_each_change_of_progress_then_the_end(database: Engine) -> None:
    with database.app() as app:
        stepper = Stepper(app)
        job_id = stepper.start()
        changes = follow(app.backend, job_id, poll=0.01)
        running = next(changes)
        assert running.state is JobState.RUNNING
        assert running.progress == {"done": 1, "total": 4, "message": "first quarter"}
        stepper.release()
        ended = list(changes)
    assert ended[-1].state is JobState.SUCCEEDED
    assert ended[-1].result == "all done"


@pytest.mark.parametrize(
    ("progress", "share", "text"),
    [
        (0.4, 0.4, "40%"),
        (1, 1.0, "100%"),
        ("loading", None, "loading"),
        ({"done": 3, "total": 12}, 0.25, '25% {"done": 3, "total": 12}'),
        ({"current": 1, "total": 2, "message": "half"}, 0.5, "50% half"),
        ({"total": 0, "done": 0}, None, '{"total": 0, "done": 0}'),
        ({"rows": 7}, None, '{"rows": 7}'),
        (True, None, "true"),
        (7.5, 1.0, "100%"),
    ],
)
def test_progress_as_a_share_and_as_words(progress: Any, share: float | None, text: str) -> None:
    assert fraction(progress) == share
    assert progress_text(progress) == text


def test_a_line_never_carries_terminal_escapes(url: str, migrated: None) -> None:
    with Conveyor(url) as app:
        (job,) = app.enqueue_many([_spec(app)])
        shown = app.get_job(job.id)
    shown.progress = "\x1b[31mred\nnext"
    assert "\x1b" not in line(shown) and "\n" not in line(shown)


def test_on_a_terminal_watch_draws_a_live_panel(database: Engine) -> None:
    """The same command with a pseudo-terminal as stdout: rich's panel, a progress bar."""
    import pty

    with database.app() as app:
        stepper = Stepper(app)
        job_id = stepper.start()
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "--url", database.url, "watch", str(job_id)],
            stdout=follower,
            stderr=subprocess.PIPE,
            env={**os.environ, **database.env, "COLUMNS": "100", "TERM": "xterm"},
        )
        os.close(follower)
        seen = b""
        try:
            while b"first quarter" not in seen:  # the running panel is drawn
                seen += os.read(leader, 4096)
            stepper.release()
            while process.poll() is None or not seen.endswith(b"\n"):
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                seen += chunk
            status = process.wait(PATIENCE)
        finally:
            if process.poll() is None:
                process.kill()
            os.close(leader)
    text = seen.decode(errors="replace")
    assert status == 0
    assert "\x1b[" in text  # styled for the terminal
    assert "\u2501" in text  # the bar
    assert "25% first quarter" in text
    assert "succeeded" in text and "all done" in text


def test_app_follow_yields_snapshots_of_the_app(url: str, migrated: None) -> None:
    with Conveyor(url) as app:
        (job,) = app.enqueue_many([_spec(app)])
        changes = app.follow(job.id)
        assert next(changes).state is JobState.QUEUED
        app.cancel(job.id)
        (ended,) = list(changes)
    assert ended.state is JobState.CANCELLED
    assert ended._app is app


def test_follow_refuses_a_poll_that_is_not_a_positive_number(url: str, migrated: None) -> None:
    from conveyor.errors import ConfigurationError

    with Conveyor(url) as app:
        (job,) = app.enqueue_many([_spec(app)])
        for poll in (0, -1.0, float("nan"), True):
            with pytest.raises(ConfigurationError, match="poll"):
                next(app.follow(job.id, poll=poll))


def test_a_line_says_what_a_waiting_job_waits_for(url: str, migrated: None) -> None:
    with Conveyor(url) as app:
        (parent,) = app.enqueue_many([_spec(app)])
        task = app.get_task("idle")
        child = task.options(depends_on=[parent.id]).enqueue()
        later = task.options(run_at=4_102_444_800).enqueue()  # 2100-01-01
        shown = [line(app.get_job(job.id)) for job in (child, later)]
    assert shown[0] == f"job {child.id} (idle): blocked, attempt 0/3, waiting for 1 parent(s)"
    assert shown[1] == (
        f"job {later.id} (idle): scheduled, attempt 0/3, runs at 2100-01-01 00:00:00 UTC"
    )
