"""One validated settings object: values given in code win over CONVEYOR_* variables, which win
over the configuration file (conveyor.toml, or [tool.conveyor] in pyproject.toml), which wins over
the defaults."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from conveyor import bounds
from conveyor.errors import ConfigurationError

DEFAULT_URL = "sqlite:///conveyor.db"
SYNCHRONOUS_MODES = ("NORMAL", "FULL")
#: The NOTIFY channel is "<schema>_jobs" and must fit PostgreSQL's 63-byte names.
_REDIS_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_POSTGRES_SCHEMA = re.compile(r"(?!pg_)[a-z_][a-z0-9_]{0,56}")


def _parse_queue_limits(text: str) -> dict[str, int]:
    limits: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigurationError(
                f"bad queue limit {part!r}: expected QUEUE=LIMIT, e.g. 'default=10000'"
            )
        limits[name.strip()] = _to_int("queue limit", value)
    return limits


def _to_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {text!r}") from None


def _to_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {text!r}") from None


@dataclass(frozen=True)
class Settings:
    """Every knob of Conveyor. Each field ``name`` has the environment twin ``CONVEYOR_NAME``
    and the key ``name`` in the configuration file."""

    url: str = DEFAULT_URL
    #: Seconds a claimed job stays leased to its worker without a heartbeat.
    lease: float = 30.0
    #: Seconds between heartbeats; must be at most half the lease.
    heartbeat: float = 10.0
    #: Seconds between checks for work committed by other processes (SQLite) and fallback polls.
    poll_interval: float = 0.005
    #: Seconds between maintenance sweeps (rescue of expired leases, promotion, pruning).
    sweep_interval: float = 1.0
    #: Largest encoded payload (arguments) in bytes.
    max_payload_bytes: int = 1024 * 1024
    #: SQLite ``synchronous`` pragma: NORMAL (survives process crashes) or FULL (power loss too).
    sqlite_synchronous: str = "NORMAL"
    #: Seconds an operation waits for a database locked by another process before DatabaseBusy.
    lock_timeout: float = 30.0
    #: Most jobs one claim takes.
    batch_size: int = 100
    #: Seconds finished jobs are kept before pruning (0 keeps them forever).
    retention: float = 7 * 24 * 3600.0
    #: Seconds the per-minute aggregates (throughput, run times: conveyor/backends/tally.py)
    #: are kept before pruning; what they add up to stays in the totals (0 keeps them forever).
    stats_retention: float = 7 * 24 * 3600.0
    #: Per-queue limits of waiting jobs; enqueue beyond raises QueueFull.
    queue_limits: Mapping[str, int] = field(default_factory=dict)
    #: Escalation rules per task (conveyor.workflows.escalation), e.g.
    #: {"aider": {"on_failure": "codex", "max_retries": 2}}; CONVEYOR_ESCALATION is JSON.
    escalation: Mapping[str, Any] = field(default_factory=dict)
    #: Apply pending schema migrations when the database is first opened. Off: an outdated
    #: schema is refused with a SchemaError until `conveyor schema migrate` runs.
    auto_migrate: bool = True
    #: PostgreSQL schema that holds Conveyor's tables: a lowercase identifier, so several
    #: applications (or test runs) can share one database.
    postgres_schema: str = "conveyor"
    #: Connections each process keeps open to PostgreSQL, at least and at most.
    postgres_pool_min_size: int = 1
    postgres_pool_max_size: int = 10
    #: Seconds to wait for a PostgreSQL connection (a new one, or a free pooled one).
    postgres_connect_timeout: float = 10.0
    #: Seconds a pooled connection beyond the minimum may stay unused before it is closed.
    postgres_pool_max_idle: float = 600.0
    #: Seconds after which a pooled connection is replaced (±5 %, so not all at once): long
    #: sessions leave the server's per-session memory, and a DNS name that moved, behind.
    postgres_pool_max_lifetime: float = 3600.0
    #: When autovacuum is off for the server or the jobs table, the maintenance worker runs
    #: VACUUM (ANALYZE) on it every minute instead. Off: you vacuum it yourself.
    postgres_self_vacuum: bool = True
    #: Executions of a statement on one connection before it is prepared server-side; -1
    #: never prepares (for PgBouncer in transaction mode before version 1.21).
    postgres_prepare_threshold: int = 1
    #: Redis: the prefix of this application's keys, so several applications (or test runs)
    #: can share one database. The keys are "{conveyor:<prefix>}:...", one Cluster slot.
    redis_prefix: str = "conveyor"
    #: Redis: run even though the server's maxmemory-policy may evict keys (jobs), with a
    #: warning instead of a ConfigurationError. Only for data you can afford to lose.
    redis_allow_eviction: bool = False

    def __post_init__(self) -> None:
        if not self.url:
            raise ConfigurationError("url must not be empty")
        for name in (
            "lease",
            "heartbeat",
            "poll_interval",
            "sweep_interval",
            "lock_timeout",
            "retention",
            "stats_retention",
        ):
            # NaN passes every comparison below, and an infinite lease never expires.
            if not math.isfinite(getattr(self, name)):
                raise ConfigurationError(
                    f"{name} must be a finite number, got {getattr(self, name)}"
                )
        for name in ("lease", "heartbeat", "poll_interval", "sweep_interval", "lock_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.heartbeat > self.lease / 2:
            raise ConfigurationError(
                f"heartbeat ({self.heartbeat:g}s) must be at most half the lease "
                f"({self.lease:g}s) so a lease is renewed well before it expires"
            )
        if self.max_payload_bytes <= 0:
            raise ConfigurationError("max_payload_bytes must be > 0")
        if self.batch_size <= 0:
            raise ConfigurationError("batch_size must be > 0")
        if self.retention < 0:
            raise ConfigurationError("retention must be >= 0")
        if self.stats_retention < 0:
            raise ConfigurationError("stats_retention must be >= 0")
        mode = self.sqlite_synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"sqlite_synchronous must be NORMAL or FULL, got {self.sqlite_synchronous!r}"
            )
        object.__setattr__(self, "sqlite_synchronous", mode)
        for queue, limit in self.queue_limits.items():
            if limit <= 0:
                raise ConfigurationError(f"queue limit for {queue!r} must be > 0, got {limit}")
        self._check_bounds()
        if self.escalation:
            # Here, not at the top: the heartbeat process loads settings and nothing else.
            from conveyor.workflows.escalation import parse_rules

            parse_rules(self.escalation)
        self._check_postgres()
        if not _REDIS_PREFIX.fullmatch(self.redis_prefix):
            raise ConfigurationError(
                "redis_prefix must be 1 to 64 letters, digits, '_', '-', '.' or ':', "
                f"got {self.redis_prefix!r}"
            )

    def _check_bounds(self) -> None:
        """Upper bounds (conveyor.bounds): each of these reaches the database, or a wait that
        refuses huge numbers, and must mean the same on every engine."""
        for name in ("lease", "heartbeat", "poll_interval", "sweep_interval", "lock_timeout"):
            bounds.seconds(name, getattr(self, name), bounds.MAX_TIMEOUT, positive=True)
        bounds.seconds("retention", self.retention, bounds.MAX_DELAY)
        bounds.seconds("stats_retention", self.stats_retention, bounds.MAX_DELAY)
        bounds.whole_number("batch_size", self.batch_size, 1, bounds.MAX_BATCH)
        for queue, limit in self.queue_limits.items():
            bounds.queue_name(queue)
            bounds.whole_number(f"queue limit of {queue!r}", limit, 1, bounds.MAX_QUEUE_LIMIT)

    def _check_postgres(self) -> None:
        if not _POSTGRES_SCHEMA.fullmatch(self.postgres_schema):
            raise ConfigurationError(
                f"postgres_schema must be a lowercase identifier of at most 57 characters "
                f"(letters, digits, _; not starting with a digit or pg_), "
                f"got {self.postgres_schema!r}"
            )
        if self.postgres_pool_min_size < 0:
            raise ConfigurationError("postgres_pool_min_size must be >= 0")
        if self.postgres_pool_max_size < max(1, self.postgres_pool_min_size):
            raise ConfigurationError(
                f"postgres_pool_max_size ({self.postgres_pool_max_size}) must be >= 1 and >= "
                f"postgres_pool_min_size ({self.postgres_pool_min_size})"
            )
        for name in (
            "postgres_connect_timeout",
            "postgres_pool_max_idle",
            "postgres_pool_max_lifetime",
        ):
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and seconds > 0):
                raise ConfigurationError(f"{name} must be > 0, got {seconds}")
        if self.postgres_prepare_threshold < -1:
            raise ConfigurationError("postgres_prepare_threshold must be >= 0, or -1 for never")

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the configuration file of the working directory, then CONVEYOR_*
        variables from ``env``, then ``overrides`` (None = unset)."""
        # Imported here: the heartbeat process builds Settings without loading, and must not
        # pay for tomllib at every worker start.
        from conveyor.config_file import find_config

        env = os.environ if env is None else env
        config = find_config()
        values: dict[str, Any] = dict(config.settings) if config is not None else {}
        for f in fields(cls):
            raw = env.get(f"CONVEYOR_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _from_text(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _from_text(f: dataclasses.Field[Any], raw: str) -> Any:
    name = f"CONVEYOR_{f.name.upper()}"
    if f.name == "queue_limits":
        return _parse_queue_limits(raw)
    if f.name == "escalation":
        try:
            return json.loads(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be JSON, got {raw!r}") from None
    if f.type in ("int", int):
        return _to_int(name, raw)
    if f.type in ("float", float):
        return _to_float(name, raw)
    if f.type in ("bool", bool):
        return _to_bool(name, raw)
    return raw


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _to_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be one of {', '.join(_TRUE + _FALSE)}, got {text!r}")
