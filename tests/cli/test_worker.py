"""`conveyor worker` in process: loading the app, running jobs, and the errors of both."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor import Conveyor
from conveyor.cli import cli
from conveyor.cli.core import redact_url
from tests.cli.support import Invoke, WriteApp, assert_user_error, output_json


def test_burst_worker_runs_the_jobs_and_exits(invoke: Invoke, write_app: WriteApp) -> None:
    module = write_app()
    app = f"{module}:app"
    done = invoke("enqueue", f"{module}.add", "--args", "[2, 3]", "--app", app)
    other = invoke("enqueue", "elsewhere.task", "--queue", "other")
    result = invoke("worker", "--app", app, "--burst", "--queues", "math", "--concurrency", "2")
    assert result.exit_code == 0, result.output

    job = output_json(invoke("jobs", "show", done.stdout.strip(), "--json"))
    assert (job["state"], job["result"]) == ("succeeded", 5)
    untouched = output_json(invoke("jobs", "show", other.stdout.strip(), "--json"))
    assert untouched["state"] == "queued"


def test_worker_options_come_from_the_environment_too(invoke: Invoke, write_app: WriteApp) -> None:
    module = write_app()
    job_id = invoke("enqueue", f"{module}.add", "--args", "[1, 1]", "--app", f"{module}:app")
    env = {"CONVEYOR_APP": f"{module}:app", "CONVEYOR_BURST": "1", "CONVEYOR_QUEUES": "math"}
    assert invoke("worker", env=env).exit_code == 0
    assert output_json(invoke("jobs", "show", job_id.stdout.strip(), "--json"))["result"] == 2
    assert_user_error(invoke("worker", env={**env, "CONVEYOR_CONCURRENCY": "many"}), "many")


def test_url_on_the_command_line_replaces_the_apps_own(tmp_path: Path, write_app: WriteApp) -> None:
    own = tmp_path / "own.db"
    given = tmp_path / "given.db"
    module = write_app(
        f"""
        from conveyor import Conveyor
        app = Conveyor("sqlite:///{own}")

        @app.task
        def noop() -> None:
            return None
        """
    )
    runner = CliRunner()
    args = ["enqueue", f"{module}.noop", "--app", f"{module}:app"]
    # CONVEYOR_URL does not override a URL written in code (as in Conveyor(url) itself), and
    # is not silently ignored either ...
    result = runner.invoke(cli, args, env={"CONVEYOR_URL": f"sqlite:///{given}"})
    assert_user_error(result, "CONVEYOR_URL names", "in its code", "choose with --url")
    assert not own.exists() and not given.exists()
    # ... while --url typed on the command line does.
    result = runner.invoke(cli, ["--url", f"sqlite:///{given}", *args])
    assert result.exit_code == 0, result.output
    with Conveyor(f"sqlite:///{given}") as app:
        assert [job.task for job in app.list_jobs()] == [f"{module}.noop"]


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        (None, "no_such_module_here:app", "no module named 'no_such_module_here'"),
        ("x = 1\n", "{module}:app", "has no attribute app"),
        ("x = 1\n", "{module}:x", "x is a int, not a conveyor.Conveyor"),
        ("raise ZeroDivisionError('oops')\n", "{module}:app", "ZeroDivisionError: oops"),
        ("import not_installed_dep_xyz\n", "{module}:app", "not_installed_dep_xyz"),
        (None, "bad name:app", "expected MODULE:ATTRIBUTE"),
    ],
)
def test_bad_app_is_a_user_error(
    invoke: Invoke, write_app: WriteApp, source: str | None, spec: str, message: str
) -> None:
    module = write_app(source) if source is not None else "unused"
    assert_user_error(invoke("worker", "--app", spec.format(module=module)), message)


def test_missing_app_option(invoke: Invoke) -> None:
    assert_user_error(invoke("worker"), "no app to run", "--app MODULE:ATTR", "conveyor.toml")


def test_empty_queue_list(invoke: Invoke, write_app: WriteApp) -> None:
    module = write_app()
    assert_user_error(invoke("worker", "--app", f"{module}:app", "--queues", " , "), "--queues")


BROKEN_APP = """
from conveyor import Conveyor

class Broken(Conveyor):
    def worker(self, **options):
        raise RuntimeError("kaput")

app = Broken()
"""


def test_internal_error_is_one_line_and_exit_1(invoke: Invoke, write_app: WriteApp) -> None:
    module = write_app(BROKEN_APP)
    result = invoke("worker", "--app", f"{module}:app")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr == (
        "conveyor: internal error: RuntimeError: kaput (run with --debug for the traceback)\n"
    )


@pytest.mark.parametrize("how", [["--debug"], []])
def test_debug_shows_the_traceback(invoke: Invoke, write_app: WriteApp, how: list[str]) -> None:
    module = write_app(BROKEN_APP)
    env = {} if how else {"CONVEYOR_DEBUG": "1"}
    result = CliRunner().invoke(cli, [*how, "worker", "--app", f"{module}:app"], env=env)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.endswith("conveyor: internal error: RuntimeError: kaput\n")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db.example/jobs", "postgresql://app:***@db.example/jobs"),
        ("postgresql://app@db.example/jobs", "postgresql://app@db.example/jobs"),
        ("sqlite:////var/lib/jobs.db", "sqlite:////var/lib/jobs.db"),
    ],
)
def test_logged_urls_hide_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_worker_pools_per_queue_and_scaling_concurrency(
    invoke: Invoke, write_app: WriteApp
) -> None:
    module = write_app()
    app = f"{module}:app"
    done = invoke("enqueue", f"{module}.add", "--args", "[4, 5]", "--app", app)
    result = invoke("worker", "--app", app, "--burst", "--queues", "math=1-3,other=2")
    assert result.exit_code == 0, result.output
    assert output_json(invoke("jobs", "show", done.stdout.strip(), "--json"))["result"] == 9
    assert_user_error(invoke("worker", "--app", app, "--queues", "math=x"), "not a number")
    assert_user_error(invoke("worker", "--app", app, "--queues", "a=1,b"), "has no concurrency")
    assert_user_error(invoke("worker", "--app", app, "--concurrency", "5-2"), "minimum <= maximum")
