"""Settings: defaults, CONVEYOR_* variables, overrides in code, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.settings import DEFAULT_URL, Settings


def test_defaults() -> None:
    settings = Settings.load(env={})
    assert settings == Settings()
    assert settings.url == DEFAULT_URL == "sqlite:///conveyor.db"
    assert settings.lease == 30.0
    assert settings.heartbeat == 10.0
    assert settings.heartbeat <= settings.lease / 2
    assert settings.sweep_interval == 1.0
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.sqlite_synchronous == "NORMAL"
    assert settings.lock_timeout == 30.0
    assert settings.batch_size == 100
    assert settings.retention == 7 * 24 * 3600.0
    assert dict(settings.queue_limits) == {}


def test_environment_variables_are_parsed() -> None:
    settings = Settings.load(
        env={
            "CONVEYOR_URL": "sqlite:////var/lib/app/jobs.db",
            "CONVEYOR_LEASE": "60",
            "CONVEYOR_HEARTBEAT": "12.5",
            "CONVEYOR_POLL_INTERVAL": "0.25",
            "CONVEYOR_SWEEP_INTERVAL": "2",
            "CONVEYOR_MAX_PAYLOAD_BYTES": "2048",
            "CONVEYOR_SQLITE_SYNCHRONOUS": "full",
            "CONVEYOR_LOCK_TIMEOUT": "1.5",
            "CONVEYOR_BATCH_SIZE": "7",
            "CONVEYOR_RETENTION": "0",
            "CONVEYOR_QUEUE_LIMITS": "a=1,b=2",
            "UNRELATED": "ignored",
        }
    )
    assert settings.url == "sqlite:////var/lib/app/jobs.db"
    assert settings.lease == 60.0
    assert isinstance(settings.lease, float)
    assert settings.heartbeat == 12.5
    assert settings.poll_interval == 0.25
    assert settings.sweep_interval == 2.0
    assert settings.max_payload_bytes == 2048
    assert isinstance(settings.max_payload_bytes, int)
    assert settings.sqlite_synchronous == "FULL", "normalised to upper case"
    assert settings.lock_timeout == 1.5
    assert settings.batch_size == 7
    assert settings.retention == 0.0
    assert dict(settings.queue_limits) == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1,b=2", {"a": 1, "b": 2}),
        (" a = 10 , b=20 ,", {"a": 10, "b": 20}),
        ("emails=5", {"emails": 5}),
        ("a=1,a=3", {"a": 3}),
    ],
)
def test_queue_limits_from_the_environment(text: str, expected: dict[str, int]) -> None:
    settings = Settings.load(env={"CONVEYOR_QUEUE_LIMITS": text})
    assert dict(settings.queue_limits) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "bad queue limit 'a'"),
        ("=5", "bad queue limit '=5'"),
        ("a=x", "must be an integer"),
        ("a=1.5", "must be an integer"),
        ("a=0", "queue limit for 'a' must be > 0"),
        ("a=-3", "must be > 0"),
    ],
)
def test_bad_queue_limits(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(env={"CONVEYOR_QUEUE_LIMITS": text})
    assert message in str(caught.value)


def test_empty_variables_count_as_unset() -> None:
    assert Settings.load(env={"CONVEYOR_LEASE": "", "CONVEYOR_URL": ""}) == Settings()


def test_code_wins_over_environment_which_wins_over_defaults() -> None:
    env = {"CONVEYOR_LEASE": "90", "CONVEYOR_URL": "sqlite:///env.db", "CONVEYOR_BATCH_SIZE": "5"}
    settings = Settings.load(env=env, url="sqlite:///code.db", lease=120.0, heartbeat=None)
    assert settings.url == "sqlite:///code.db"
    assert settings.lease == 120.0
    assert settings.batch_size == 5
    assert settings.heartbeat == 10.0, "None in code means: not given"


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_BATCH_SIZE", "3")
    assert Settings.load().batch_size == 3


def test_unknown_setting_in_code() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(env={}, leese=5)
    assert "unknown setting(s): leese" in str(caught.value)


def test_replace_validates_again() -> None:
    settings = Settings(lease=60.0)
    assert settings.replace(heartbeat=30.0).heartbeat == 30.0
    with pytest.raises(ConfigurationError):
        settings.replace(heartbeat=31.0)


def test_heartbeat_must_be_at_most_half_the_lease() -> None:
    assert Settings(lease=20.0, heartbeat=10.0).heartbeat == 10.0
    with pytest.raises(ConfigurationError) as caught:
        Settings(lease=20.0, heartbeat=10.5)
    assert "heartbeat (10.5s) must be at most half the lease (20s)" in str(caught.value)
    with pytest.raises(ConfigurationError):
        Settings.load(env={"CONVEYOR_LEASE": "10"})  # default heartbeat 10 > 5


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("CONVEYOR_LEASE", "thirty"),
        ("CONVEYOR_LEASE", "30s"),
        ("CONVEYOR_BATCH_SIZE", "1.5"),
        ("CONVEYOR_BATCH_SIZE", "ten"),
        ("CONVEYOR_MAX_PAYLOAD_BYTES", "1MB"),
        ("CONVEYOR_LOCK_TIMEOUT", "soon"),
    ],
)
def test_bad_numbers_in_the_environment(name: str, text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(env={name: text})
    assert name in str(caught.value)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"lease": 0},
        {"lease": -1.0},
        {"heartbeat": 0},
        {"poll_interval": 0},
        {"sweep_interval": -1},
        {"lock_timeout": 0},
        {"max_payload_bytes": 0},
        {"batch_size": 0},
        {"retention": -1.0},
        {"url": ""},
        {"sqlite_synchronous": "OFF"},
        {"sqlite_synchronous": "EXTRA"},
        {"queue_limits": {"a": 0}},
        {"lease": float("nan")},
        {"lease": float("inf")},
        {"lock_timeout": float("nan")},
        {"retention": float("inf")},
    ],
    ids=str,
)
def test_invalid_values_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Settings.load(env={}, **overrides)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_numbers_in_the_environment(text: str) -> None:
    with pytest.raises(ConfigurationError):
        Settings.load(env={"CONVEYOR_LEASE": text})


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Settings(batch_size=0)


def test_settings_are_immutable() -> None:
    settings = Settings()
    # Cast to Any: mypy refuses the assignment already; the runtime refusal is what is tested.
    with pytest.raises(AttributeError):
        cast(Any, settings).lease = 5.0


# --- the configuration file ---------------------------------------------------------------


@pytest.fixture
def tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, where the configuration file is looked for."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_config_file_sets_any_setting(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text(
        'app = "tasks:app"\n'  # for the command line; not a setting
        'url = "sqlite:///file.db"\n'
        "lease = 60\n"
        "heartbeat = 12.5\n"
        "batch_size = 7\n"
        "auto_migrate = false\n"
        'sqlite_synchronous = "full"\n'
        "queue_limits = {default = 10000, urgent = 5}\n"
    )
    settings = Settings.load(env={})
    assert settings.url == "sqlite:///file.db"
    assert settings.lease == 60.0 and isinstance(settings.lease, float)
    assert settings.heartbeat == 12.5
    assert settings.batch_size == 7
    assert settings.auto_migrate is False
    assert settings.sqlite_synchronous == "FULL"
    assert dict(settings.queue_limits) == {"default": 10000, "urgent": 5}


def test_code_wins_over_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("lease = 60\nbatch_size = 7\nretention = 5\n")
    env = {"CONVEYOR_BATCH_SIZE": "8", "CONVEYOR_RETENTION": "6"}
    settings = Settings.load(env=env, retention=9.0)
    assert (settings.lease, settings.batch_size, settings.retention) == (60.0, 8, 9.0)


def test_pyproject_tool_conveyor_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.conveyor]\nlease = 44\n')
    assert Settings.load(env={}).lease == 44.0
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.ruff]\nfix = true\n')
    assert Settings.load(env={}) == Settings()


def test_conveyor_reads_it_below_its_code(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text(f'url = "sqlite:///{tmp_path / "here.db"}"\n')
    with Conveyor() as app:
        assert app.settings.url == f"sqlite:///{tmp_path / 'here.db'}"
    with Conveyor("sqlite:///code.db") as app:
        assert app.settings.url == "sqlite:///code.db"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("conveyor.toml", "leese = 5\n", "conveyor.toml: unknown key 'leese'"),
        ("conveyor.toml", "[worker]\nconcurrency = 5\n", "conveyor.toml: unknown key 'worker'"),
        (
            "pyproject.toml",
            "[tool.conveyor]\nleese = 5\n",
            "pyproject.toml [tool.conveyor]: unknown key 'leese'",
        ),
        ("conveyor.toml", "lease = '30'\n", "conveyor.toml: lease must be a number, got '30'"),
        ("conveyor.toml", "lease = true\n", "lease must be a number"),
        ("conveyor.toml", "batch_size = 1.5\n", "batch_size must be an integer"),
        ("conveyor.toml", "auto_migrate = 'no'\n", "auto_migrate must be true or false"),
        ("conveyor.toml", "url = 5\n", "url must be a string"),
        ("conveyor.toml", "queue_limits = 'a=1'\n", "queue_limits must be a table of integers"),
        ("conveyor.toml", "app = ['x']\n", "app must be a string"),
        ("conveyor.toml", "lease = \n", "conveyor.toml: not valid TOML"),
        ("pyproject.toml", "tool = {conveyor = 5}\n", "[tool.conveyor]: expected a table"),
    ],
)
def test_a_bad_config_file_names_the_file_and_the_key(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(env={})
    assert message in str(caught.value)


def test_values_from_the_file_are_validated_like_any_other(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("lease = 10\n")
    with pytest.raises(ConfigurationError, match="at most half the lease"):
        Settings.load(env={})


def test_two_config_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("lease = 60\n")
    (tmp_path / "pyproject.toml").write_text("[tool.conveyor]\nlease = 40\n")
    with pytest.raises(ConfigurationError, match="keep one"):
        Settings.load(env={})
    (tmp_path / "pyproject.toml").write_text("[tool.other]\nx = 1\n")
    assert Settings.load(env={}).lease == 60.0


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.toml"
    path.write_text("lease = 60\n")
    assert Settings.load(env={}).lease == 60.0
    path.write_text("lease = 120\n")
    assert Settings.load(env={}).lease == 120.0
