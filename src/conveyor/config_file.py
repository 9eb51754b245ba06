"""The configuration file: ``conveyor.toml`` in the working directory, else the
``[tool.conveyor]`` table of its ``pyproject.toml``.

It may name the app (``app = "tasks:app"``, for the ``conveyor`` command) and any setting, by
the setting's own name (``url``, ``lease``, ``queue_limits = {default = 10000}``, ...). It is the
lowest layer of settings, below the environment and code. An unknown key or a value of the wrong
type is a ConfigurationError naming the file and the key: a typo must not be ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.settings import Settings

CONFIG_FILE = "conveyor.toml"
PYPROJECT = "pyproject.toml"
#: The one key that is not a setting: the app, for the command line.
APP_KEY = "app"


@dataclass(frozen=True)
class ConfigFile:
    """What a configuration file says, its values checked against the settings' types."""

    #: Where it was read, as shown in messages: ``conveyor.toml`` or ``pyproject.toml
    #: [tool.conveyor]``.
    source: str
    #: ``module:attribute`` of the app, for the command line.
    app: str | None
    settings: Mapping[str, Any]


def find_config() -> ConfigFile | None:
    """The configuration file of the working directory, or None."""
    own, project = Path(CONFIG_FILE), Path(PYPROJECT)
    tool = _read(project).get("tool") if project.is_file() else None
    table = tool.get("conveyor") if isinstance(tool, dict) else None
    if own.is_file():
        if table is not None:
            raise ConfigurationError(
                f"both {CONFIG_FILE} and [tool.conveyor] in {PYPROJECT} configure Conveyor: "
                "keep one"
            )
        return _parse(_read(own), CONFIG_FILE)
    if table is None:
        return None
    source = f"{PYPROJECT} [tool.conveyor]"
    if not isinstance(table, dict):
        raise ConfigurationError(f"{source}: expected a table")
    return _parse(table, source)


#: (path, mtime, size) -> parsed TOML: Conveyor() reads the file at every construction.
_cache: dict[tuple[str, int, int], dict[str, Any]] = {}


def _read(path: Path) -> dict[str, Any]:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _cache:
        # Imported only when a file is there to parse: most worker starts have none.
        import tomllib

        try:
            with path.open("rb") as file:
                _cache[key] = tomllib.load(file)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot be read: {exc.strerror}") from None
    return _cache[key]


def _parse(table: Mapping[str, Any], source: str) -> ConfigFile:
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    app: str | None = None
    settings: dict[str, Any] = {}
    for key, value in table.items():
        if key == APP_KEY:
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{source}: app must be a string like 'tasks:app'")
            app = value
        elif key in types:
            settings[key] = _checked(source, key, str(types[key]), value)
        else:
            raise ConfigurationError(
                f"{source}: unknown key {key!r} (known: {APP_KEY}, {', '.join(types)})"
            )
    return ConfigFile(source, app, settings)


def _checked(source: str, key: str, kind: str, value: Any) -> Any:
    """The value if it has the setting's type (an integer is a number too), else an error."""
    if key == "escalation":
        if isinstance(value, dict):
            return dict(value)
        raise ConfigurationError(
            f"{source}: escalation must be a table of rules per task, e.g. "
            f'[escalation.aider] on_failure = "codex", got {value!r}'
        )
    if key == "queue_limits":
        if isinstance(value, dict) and all(_is_int(v) for v in value.values()):
            return dict(value)
        raise ConfigurationError(
            f"{source}: queue_limits must be a table of integers, e.g. "
            f"queue_limits = {{default = 10000}}, got {value!r}"
        )
    if kind == "int" and _is_int(value):
        return value
    if kind == "float" and (_is_int(value) or isinstance(value, float)):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    expected = {"int": "an integer", "float": "a number", "bool": "true or false"}
    raise ConfigurationError(
        f"{source}: {key} must be {expected.get(kind, 'a string')}, got {value!r}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
