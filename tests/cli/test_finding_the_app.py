"""One way to find the app: every command takes --app (CONVEYOR_APP, or ``app`` in the config
file) and then works on the app's database; the precedence of --url, the app's code, the
environment and the config file is one rule, stated in `conveyor --help`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from conveyor import Conveyor
from conveyor.cli import cli
from tests.cli.support import WriteApp, assert_user_error, output_json
from tests.postgres.factory import new_schema, session_database
from tests.support import enabled_backends

APP = """
from conveyor import Conveyor

app = Conveyor({database})

@app.task(queue="math", max_attempts=1)
def add(x: int, y: int) -> int:
    return x + y

@app.task(queue="math", max_attempts=1)
def explode() -> None:
    raise RuntimeError("boom")
"""


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """`conveyor ARGS` with no --url: the database is found, not given."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@dataclass
class Database:
    """A fresh database of one engine, as an app's code names it and as the environment does."""

    code: str
    env: dict[str, str]


@pytest.fixture(params=enabled_backends())
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
        yield Database(repr(url), {"CONVEYOR_URL": url})
        return
    if request.param == "redis":
        from tests.redis_engine.factory import redis_database

        with redis_database() as (url, prefix):
            env = {"CONVEYOR_URL": url, "CONVEYOR_REDIS_PREFIX": prefix}
            yield Database(f"{url!r}, redis_prefix={prefix!r}", env)
        return
    server = session_database()
    schema = new_schema()
    env = {"CONVEYOR_URL": server.url, "CONVEYOR_POSTGRES_SCHEMA": schema}
    yield Database(f"{server.url!r}, postgres_schema={schema!r}", env)
    server.drop_schema(schema)


def leaves(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        # Asked by name: the root group imports its commands' modules when first asked for.
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from leaves(sub, f"{path} {name}")
    else:
        yield path, command


@pytest.mark.parametrize(("path", "command"), list(leaves(cli, "conveyor")), ids=lambda x: x)
def test_every_command_takes_app(path: str, command: click.Command) -> None:
    if path == "conveyor demo":
        return  # the demo runs an app of its own, in a database of its own
    options = {name for p in command.params for name in p.opts}
    assert "--app" in options, path


@pytest.mark.parametrize("how", ["option", "environment", "conveyor.toml", "pyproject.toml"])
def test_commands_work_on_the_apps_database(
    write_app: WriteApp, database: Database, how: str, tmp_path: Path
) -> None:
    module = write_app(APP.format(database=database.code))
    spec = f"{module}:app"
    extra: list[str] = []
    env: dict[str, str] = {}
    if how == "option":
        extra = ["--app", spec]
    elif how == "environment":
        env = {"CONVEYOR_APP": spec}
    elif how == "conveyor.toml":
        Path("conveyor.toml").write_text(f'app = "{spec}"\n')
    else:
        Path("pyproject.toml").write_text(
            f'[project]\nname = "x"\n\n[tool.conveyor]\napp = "{spec}"\n'
        )

    def ok(*args: str) -> Result:
        result = run(*args, *extra, env=env)
        assert result.exit_code == 0, (args, result.output)
        return result

    added = int(ok("enqueue", f"{module}.add", "--args", "[1, 2]").stdout)
    exploded = int(ok("enqueue", f"{module}.explode").stdout)
    ok("worker", "--burst")
    assert output_json(ok("jobs", "show", str(added), "--json"))["result"] == 3
    assert {job["id"] for job in output_json(ok("jobs", "list", "--json"))} == {added, exploded}
    counts = output_json(ok("stats", "--json"))["math"]
    assert (counts["succeeded"], counts["dead"]) == (1, 1)
    assert [job["id"] for job in output_json(ok("dlq", "list", "--json"))] == [exploded]
    ok("dlq", "show", str(exploded))
    ok("dlq", "requeue", str(exploded))
    ok("jobs", "cancel", str(exploded))
    ok("dlq", "discard", "--all", "--yes")
    ok("queues", "limit", "math", "3")
    assert output_json(ok("queues", "--json"))["math"]["max_running"] == 3
    ok("queues", "list")
    assert output_json(ok("workers", "--json")) == []  # the burst worker signed off
    ok("workers", "list")
    ok("workers", "stop", "--all", "--yes")
    ok("schema", "migrate")
    ok("schema", "verify")
    if database.env["CONVEYOR_URL"].startswith("redis:"):
        # Redis has keys, no DDL: the command says so, as a user mistake.
        refused = run("schema", "sql", *extra, env=env)
        assert refused.exit_code == 2 and "Redis has no schema" in refused.output
    else:
        assert "conveyor_jobs" in ok("schema", "sql").stdout
    assert not Path("conveyor.db").exists()
    assert not (tmp_path / "conveyor.db").exists()


def test_conveyor_help_states_the_rule() -> None:
    text = " ".join(run("--help").stdout.split())
    for step in (
        "1. --url typed on the command line;",
        "2. the app's (--app, else CONVEYOR_APP, else app in the config file), as its code "
        "names it;",
        "3. CONVEYOR_URL;",
        "4. url in the config file;",
        "5. sqlite:///conveyor.db.",
        "conveyor.toml",
        "[tool.conveyor]",
        "is an error, not ignored",
    ):
        assert step in text


# --- the rule, step by step ---------------------------------------------------------------


def forget(module: str) -> None:
    sys.modules.pop(module).app.close()


def jobs_in(path: Path) -> list[str]:
    with Conveyor(f"sqlite:///{path}") as app:
        return [job.task for job in app.list_jobs()]


@pytest.fixture
def dbs(tmp_path: Path) -> dict[str, Path]:
    """Four databases, named after who names them; each migrated, so reads find it."""
    found = {name: tmp_path / f"{name}.db" for name in ("cli", "code", "env", "file")}
    for path in found.values():
        with Conveyor(f"sqlite:///{path}") as app:
            app.stats()
    return found


def test_url_on_the_command_line_wins_over_everything(
    write_app: WriteApp, dbs: dict[str, Path]
) -> None:
    module = write_app(APP.format(database=repr(f"sqlite:///{dbs['code']}")))
    Path("conveyor.toml").write_text(f'app = "{module}:app"\nurl = "sqlite:///{dbs["code"]}"\n')
    result = run("--url", f"sqlite:///{dbs['cli']}", "enqueue", f"{module}.add", "--args", "[1, 1]")
    assert result.exit_code == 0, result.output
    assert jobs_in(dbs["cli"]) == [f"{module}.add"]
    assert jobs_in(dbs["code"]) == []


def test_the_apps_code_wins_over_the_environment_and_the_file(
    write_app: WriteApp, dbs: dict[str, Path]
) -> None:
    module = write_app(APP.format(database=repr(f"sqlite:///{dbs['code']}")))
    args = ("enqueue", f"{module}.add", "--args", "[1, 1]", "--app", f"{module}:app")
    assert run(*args).exit_code == 0
    assert jobs_in(dbs["code"]) == [f"{module}.add"]
    # Another database named lower down is a contradiction to resolve, not a silent loser.
    env = {"CONVEYOR_URL": f"sqlite:///{dbs['env']}"}
    assert_user_error(run(*args, env=env), "CONVEYOR_URL names", "in its code", "--url")
    Path("conveyor.toml").write_text(f'url = "sqlite:///{dbs["file"]}"\n')
    assert_user_error(run(*args), "url in conveyor.toml names", "in its code")
    # The same database, however spelt, is no contradiction.
    assert dbs["code"].parent == Path.cwd().parent
    Path("conveyor.toml").write_text('url = "sqlite:///../code.db"\n')
    assert run(*args, env={"CONVEYOR_URL": f"sqlite:///{dbs['code']}"}).exit_code == 0
    assert jobs_in(dbs["env"]) == jobs_in(dbs["file"]) == []
    assert len(jobs_in(dbs["code"])) == 2


def test_an_app_without_a_url_in_code_takes_the_environment_then_the_file(
    write_app: WriteApp, dbs: dict[str, Path]
) -> None:
    module = write_app(APP.format(database=""))
    Path("conveyor.toml").write_text(f'app = "{module}:app"\nurl = "sqlite:///{dbs["file"]}"\n')
    args = ("enqueue", f"{module}.add", "--args", "[1, 1]")
    assert run(*args).exit_code == 0
    forget(module)  # each `conveyor` process imports the app afresh, reading the environment
    assert run(*args, env={"CONVEYOR_URL": f"sqlite:///{dbs['env']}"}).exit_code == 0
    assert jobs_in(dbs["file"]) == jobs_in(dbs["env"]) == [f"{module}.add"]


def test_without_an_app_the_environment_wins_over_the_file(
    write_app: WriteApp, dbs: dict[str, Path]
) -> None:
    write_app()  # only for the working directory
    Path("conveyor.toml").write_text(f'url = "sqlite:///{dbs["file"]}"\n')
    assert run("enqueue", "a.task").exit_code == 0
    assert run("enqueue", "b.task", env={"CONVEYOR_URL": f"sqlite:///{dbs['env']}"}).exit_code == 0
    assert (jobs_in(dbs["file"]), jobs_in(dbs["env"])) == (["a.task"], ["b.task"])
    assert output_json(run("stats", "--json"))["default"]["queued"] == 1


def test_app_option_wins_over_the_environment_which_wins_over_the_file(
    write_app: WriteApp, dbs: dict[str, Path]
) -> None:
    first, second, third = (
        write_app(APP.format(database=repr(f"sqlite:///{dbs[name]}")))
        for name in ("cli", "env", "file")
    )
    Path("conveyor.toml").write_text(f'app = "{third}:app"\n')
    env = {"CONVEYOR_APP": f"{second}:app"}
    assert run("enqueue", f"{third}.add", "--args", "[1, 1]").exit_code == 0
    assert run("enqueue", f"{second}.add", "--args", "[1, 1]", env=env).exit_code == 0
    result = run("enqueue", f"{first}.add", "--args", "[1, 1]", "--app", f"{first}:app", env=env)
    assert result.exit_code == 0, result.output
    assert [jobs_in(dbs[name]) for name in ("cli", "env", "file")] == [
        [f"{first}.add"],
        [f"{second}.add"],
        [f"{third}.add"],
    ]


# --- the config file in the CLI -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("leese = 5\n", "conveyor.toml: unknown key 'leese'"),
        ("lease = 'soon'\n", "conveyor.toml: lease must be a number"),
        ("lease = [\n", "not valid TOML"),
        ("app = 5\n", "conveyor.toml: app must be a string"),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2(
    write_app: WriteApp, text: str, message: str
) -> None:
    write_app()
    Path("conveyor.toml").write_text(text)
    for command in (["stats"], ["enqueue", "t"], ["worker", "--burst"], ["jobs", "list"]):
        assert_user_error(run(*command), message)


def test_a_config_file_app_that_does_not_import_says_where_it_was_named(
    write_app: WriteApp,
) -> None:
    write_app()
    Path("conveyor.toml").write_text('app = "no_such_module_here:app"\n')
    assert_user_error(
        run("stats"), "app no_such_module_here:app (from conveyor.toml)", "no module named"
    )


def test_reads_of_an_app_whose_database_does_not_exist_yet(write_app: WriteApp) -> None:
    module = write_app(APP.format(database=repr("sqlite:///never.db")))
    assert_user_error(run("stats", "--app", f"{module}:app"), "no database at never.db")
    assert not Path("never.db").exists()


# --- enqueue without an app -----------------------------------------------------------------


def test_enqueue_with_nothing_named_does_not_create_conveyor_db(write_app: WriteApp) -> None:
    write_app()  # only for the working directory
    assert_user_error(
        run("enqueue", "tasks.add", "--args", "[1, 2]"),
        "no database at conveyor.db",
        "--app MODULE:ATTR",
    )
    assert not Path("conveyor.db").exists()
    # Where a database already is (a worker of Conveyor() made it), the job goes there.
    with Conveyor() as app:
        app.stats()
    result = run("enqueue", "tasks.add", "--args", "[1, 2]")
    assert result.exit_code == 0, result.output
    assert jobs_in(Path("conveyor.db")) == ["tasks.add"]


def test_enqueue_of_a_task_the_database_never_saw_warns(
    write_app: WriteApp, database: Database
) -> None:
    module = write_app(APP.format(database=database.code))
    env = database.env  # the database alone, with no app to check task names against
    first = run("enqueue", "reports.build", env=env)
    assert first.exit_code == 0, first.output
    assert first.stderr.startswith("conveyor: warning: ")
    assert "holds no job of task 'reports.build'" in first.stderr
    assert "--app MODULE:ATTR" in first.stderr
    assert len(first.stderr.splitlines()) == 1
    again = run("enqueue", "reports.build", env=env)
    assert again.exit_code == 0 and again.stderr == ""
    with_app = run("enqueue", f"{module}.add", "--args", "[1, 2]", "--app", f"{module}:app")
    assert with_app.exit_code == 0 and with_app.stderr == ""
    assert int(again.stdout) > int(first.stdout)
