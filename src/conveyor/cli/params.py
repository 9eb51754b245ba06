"""Option types: each rejects a bad value while parsing, before any database is opened."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from conveyor import bounds
from conveyor.errors import ConfigurationError
from conveyor.job import JobState
from conveyor.task import PRIORITY_LEVELS, resolve_priority
from conveyor.worker.pools import parse_concurrency, parse_pool_spec

if TYPE_CHECKING:
    # Click 8.2+ types ParamType as generic; older releases (allowed by our dependency range)
    # cannot be subscripted at run time.
    ParamType = click.ParamType[Any]
else:
    ParamType = click.ParamType


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


class JsonValue(ParamType):
    """Strict JSON (no NaN/Infinity, no duplicate keys) of one expected kind."""

    def __init__(self, kind: type[list[Any]] | type[dict[str, Any]]) -> None:
        self.kind = kind
        self.name = "json " + ("array" if kind is list else "object")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            data = json.loads(
                value, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys
            )
        except (ValueError, RecursionError) as exc:
            self.fail(f"not valid JSON: {exc}", param, ctx)
        if not isinstance(data, self.kind):
            self.fail(f"expected a {self.name}, got {value!r}", param, ctx)
        return data


class Priority(ParamType):
    name = "priority"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "INT|" + "|".join(PRIORITY_LEVELS)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        try:
            return resolve_priority(int(text) if text.lstrip("+-").isdigit() else text)
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


class Timestamp(ParamType):
    """ISO 8601 with a UTC offset: a time without one means different things on different
    machines, so it is refused rather than guessed."""

    name = "iso8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time, e.g. 2030-01-31T09:00:00Z", param, ctx)
        if moment.tzinfo is None:
            self.fail(
                f"{value!r} has no UTC offset: add one, e.g. {value}Z or {value}+02:00",
                param,
                ctx,
            )
        try:
            bounds.timestamp("run_at", moment)
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)
        return moment


class QueueSpec(ParamType):
    """``a,b`` (queues sharing --concurrency) or ``a=4,b=1-8`` (a pool per queue)."""

    name = "queues"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (list, dict)):
            return value
        try:
            return parse_pool_spec(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


class ConcurrencyRange(ParamType):
    """``4``, or ``2-20`` to scale between 2 and 20 with the queue's depth."""

    name = "concurrency"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "N|MIN-MAX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, tuple)):
            return value
        try:
            return parse_concurrency(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


class Checked(ParamType):
    """``base``, then the check of ``conveyor.bounds`` that the Python API applies to the same
    option: the command line refuses exactly what the library refuses, in its words."""

    def __init__(self, base: ParamType, check: Callable[[Any], object]) -> None:
        self.base = base
        self.check = check
        self.name = base.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        converted = self.base.convert(value, param, ctx)
        try:
            self.check(converted)
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)
        return converted


DELAY = Checked(click.FLOAT, lambda value: bounds.seconds("delay", value, bounds.MAX_DELAY))
TIMEOUT = Checked(
    click.FLOAT, lambda value: bounds.seconds("timeout", value, bounds.MAX_TIMEOUT, positive=True)
)
MAX_ATTEMPTS = Checked(click.INT, bounds.max_attempts)
QUEUE = Checked(click.STRING, bounds.queue_name)
TASK = Checked(click.STRING, bounds.task_name)
IDEMPOTENCY_KEY = Checked(click.STRING, bounds.idempotency_key)
LIMIT = Checked(click.INT, bounds.limit)
BEFORE_ID = Checked(click.INT, bounds.before_id)
JOB_STATE = click.Choice([state.value for state in JobState], case_sensitive=False)
JOB_ID = click.IntRange(min=1)
