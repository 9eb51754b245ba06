"""What every command shares: the runtime (URL, app), error reporting and exit codes.

Exit codes: 0 success; 1 the command ran but the answer is "no" (schema problems, a declined
confirmation) or an unexpected internal error; 2 a user mistake (bad option or JSON, unknown
task or job, invalid transition, not a database, ...), always as one line on stderr.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from conveyor.app import Conveyor
from conveyor.backends import open_backend
from conveyor.backends.base import Backend
from conveyor.config_file import find_config
from conveyor.errors import ConveyorError

FC = TypeVar("FC", bound=Callable[..., Any])

TRUE_WORDS = ("1", "true", "yes", "on")
_DOTTED = re.compile(r"\w+(\.\w+)*")


def option(*param_decls: str, **attrs: Any) -> Callable[[FC], FC]:
    """``click.option`` that shows its CONVEYOR_* environment twin in ``--help``."""
    attrs.setdefault("show_envvar", True)
    return click.option(*param_decls, **attrs)


#: Every read command takes it; CONVEYOR_JSON=1 makes a script's every call print JSON.
json_option = option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="CONVEYOR_JSON",
    help="Print JSON (for scripts) instead of a table.",
)


class UserError(click.ClickException):
    """A mistake the user can fix; reported as one line, exit code 2."""

    exit_code = 2


@dataclass
class Runtime:
    """The state of one `conveyor` invocation, shared by its commands (``ctx.obj``).

    Which database a command uses (the rule `conveyor --help` states): ``--url`` typed on the
    command line; else the app's, named by ``--app``, else CONVEYOR_APP, else ``app`` in the
    configuration file, as its code names it; else CONVEYOR_URL; else ``url`` in the
    configuration file; else sqlite:///conveyor.db. That is ``Conveyor(...)``'s own order
    (code > environment > file > defaults) with the command line on top.
    """

    #: --url, or CONVEYOR_URL.
    url: str | None = None
    #: Only a --url typed on the command line repoints an imported app: an app that names its
    #: database in code wins over CONVEYOR_URL, exactly as in ``Conveyor(url)``; a CONVEYOR_URL
    #: that names another database is refused rather than ignored.
    url_from_command_line: bool = False
    debug: bool = False
    #: --app, or CONVEYOR_APP, given to any command.
    app_spec: str | None = None
    _apps: list[Conveyor] = field(default_factory=list)
    _backends: list[Backend] = field(default_factory=list)

    def app_source(self) -> tuple[str, str] | None:
        """``(module:attribute, where it was named)`` of the user's app, if one is named."""
        if self.app_spec:
            return self.app_spec, f"--app {self.app_spec}"
        config = find_config()
        if config is not None and config.app:
            return config.app, f"app {config.app} (from {config.source})"
        return None

    def user_app(self) -> Conveyor | None:
        """The user's app, imported and pointed at its database, or None if none is named."""
        named = self.app_source()
        if named is None:
            return None
        spec, where = named
        app = import_app(spec, where)
        self._apps.append(app)
        if self.url_from_command_line and self.url:
            app.configure(url=self.url)
        else:
            self._refuse_overridden_url(app, spec)
        return app

    def _refuse_overridden_url(self, app: Conveyor, spec: str) -> None:
        config = find_config()
        if self.url:
            given, where = self.url, "CONVEYOR_URL"
        elif config is not None and "url" in config.settings:
            given, where = config.settings["url"], f"url in {config.source}"
        else:
            return
        if not same_database(given, app.settings.url):
            raise UserError(
                f"{where} names {redact_url(given)}, but app {spec} names "
                f"{redact_url(app.settings.url)} in its code, which wins over {where}: "
                "remove one of them, or choose with --url"
            )

    def app(self) -> Conveyor:
        """The user's app if one is named, else an app without tasks: for commands that only
        touch the database."""
        user = self.user_app()
        if user is not None:
            return user
        app = Conveyor(self.url)
        self._apps.append(app)
        return app

    def _app_of_database(self) -> tuple[str, str] | None:
        """The named app, if the database is the one it uses (not repointed by --url)."""
        return None if self.url_from_command_line and self.url else self.app_source()

    def database_named(self) -> bool:
        """Whether an app or a URL says where the jobs are, rather than the default."""
        config = find_config()
        return bool(
            self.url or self.app_source() or (config is not None and "url" in config.settings)
        )

    def existing_app(self) -> Conveyor:
        """Like ``app()``, for commands that read or change jobs: a mistyped path must not
        create an empty database that then reports "no jobs"."""
        app = self.app()
        require_database(app.settings.url, self._app_of_database())
        return app

    def schema_backend(self, *, existing: bool) -> Backend:
        """The store without the check (or migration) a backend makes when it opens: the
        schema commands look at, or upgrade, the schema exactly as they find it."""
        settings = self.app().settings
        if existing:
            require_database(settings.url, self._app_of_database())
        backend = open_backend(settings, check_schema=False)
        self._backends.append(backend)
        return backend

    def close(self) -> None:
        for app in self._apps:
            app.close()
        self._apps.clear()
        for backend in self._backends:
            backend.close()
        self._backends.clear()


pass_runtime = click.make_pass_decorator(Runtime, ensure=True)


def _remember_app(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Runtime).app_spec = value


#: Every command that touches the database takes it; the runtime resolves it.
app_option = option(
    "--app",
    envvar="CONVEYOR_APP",
    metavar="MODULE:ATTR",
    expose_value=False,
    callback=_remember_app,
    help="The app, e.g. tasks:app: its database, its tasks.  [default: app in conveyor.toml]",
)

APP_HINT = "--app MODULE:ATTR (or CONVEYOR_APP, or app in conveyor.toml)"


def require_database(url: str, app: tuple[str, str] | None = None) -> None:
    """A SQLite file must exist; ``app`` is the named app's ``(spec, where named)``."""
    if not url.lower().startswith("sqlite:"):
        return  # a server database exists or fails to connect with its own message
    from conveyor.backends.sqlite.connection import path_from_url

    path = path_from_url(url)
    if path == ":memory:" or Path(path).exists():
        return
    if app is not None:
        raise UserError(
            f"no database at {path}, the database of {app[1]}: nothing was enqueued there yet "
            "(`conveyor schema migrate` creates it)"
        )
    raise UserError(
        f"no database at {path}: name the app with {APP_HINT}, or the database with "
        "--url/CONVEYOR_URL (`conveyor schema migrate` creates a new one)"
    )


def same_database(first: str, second: str) -> bool:
    """Whether two URLs name one database: SQLite paths are compared resolved."""
    if first == second:
        return True
    prefix = "sqlite:///"
    if not (first.startswith(prefix) and second.startswith(prefix)):
        return False
    from conveyor.backends.sqlite.connection import path_from_url

    return Path(path_from_url(first)).resolve() == Path(path_from_url(second)).resolve()


def import_app(spec: str, where: str | None = None) -> Conveyor:
    """``module:attribute`` (attribute defaults to ``app``), imported the way uvicorn and
    celery do: the working directory is importable. ``where`` names it in messages."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    where = where or f"--app {spec}"
    if not (_DOTTED.fullmatch(module_name) and _DOTTED.fullmatch(attribute)):
        raise UserError(f"{where}: expected MODULE:ATTRIBUTE, e.g. tasks:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise UserError(
                f"{where}: no module named {missing!r} in {cwd} or on PYTHONPATH"
            ) from exc
        raise UserError(f"{where}: importing {module_name} failed: {exc}") from exc
    except ConveyorError:
        raise  # a bad setting or configuration file: its own message says what to fix
    except Exception as exc:
        raise UserError(
            f"{where}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        app = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise UserError(f"{where}: module {module_name} has no attribute {attribute}") from None
    if not isinstance(app, Conveyor):
        raise UserError(f"{where}: {attribute} is a {type(app).__name__}, not a conveyor.Conveyor")
    return app


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def stdin_is_interactive() -> bool:
    return sys.stdin.isatty()


def confirm(action: str, *, yes: bool) -> None:
    """Ask before a bulk change; never wait for an answer nobody can type."""
    if yes:
        return
    if not stdin_is_interactive():
        raise UserError(f"{action}: stdin is not a terminal to confirm, pass --yes (nothing done)")
    if not click.confirm(f"{action}?", default=False, err=True):
        click.echo("nothing changed", err=True)
        click.get_current_context().exit(1)


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


class ConveyorGroup(click.Group):
    """The root group: turns every failure into one line on stderr and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        runtime = extra.setdefault("obj", Runtime())
        code = self._run(runtime, args, prog_name, complete_var, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        runtime: Runtime,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        extra: dict[str, Any],
    ) -> int:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            return result if isinstance(result, int) else 0
        except click.Abort:
            click.echo("conveyor: interrupted", err=True)
            return 130
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            message = exc.format_message().rstrip(".")
            return _report(runtime, exc, f"{message}{hint}", exc.exit_code)
        except click.ClickException as exc:
            return _report(runtime, exc, exc.format_message(), exc.exit_code)
        except ConveyorError as exc:
            return _report(runtime, exc, str(exc), 2)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            if not _debugging(runtime):
                message += " (run with --debug for the traceback)"
            return _report(runtime, exc, message, 1, prefix="internal error")
        finally:
            runtime.close()


def _debugging(runtime: Runtime) -> bool:
    # The environment too: a parse error can stop us before --debug was read.
    return runtime.debug or os.environ.get("CONVEYOR_DEBUG", "").lower() in TRUE_WORDS


def _report(
    runtime: Runtime, exc: BaseException, message: str, code: int, prefix: str = "error"
) -> int:
    if _debugging(runtime) and not isinstance(exc, click.UsageError):
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"conveyor: {prefix}: {one_line(message) or type(exc).__name__}", err=True)
    return code
