"""Pools: which queues a worker serves, and how many of their jobs it runs at once.

A worker runs one or more pools. Each pool serves a set of queues (or every queue) with its own
concurrency, so one slow queue cannot take every slot of a process that also serves a fast one.
A pool's concurrency is a number, or a (minimum, maximum) range it scales within: up while jobs
wait for a slot, back down once slots have stood idle for a while.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeGuard

from conveyor.bounds import MAX_CONCURRENCY, MAX_PREFETCH, whole_number
from conveyor.errors import ConfigurationError
from conveyor.task import check_queue

Concurrency = int | tuple[int, int]


@dataclass(frozen=True)
class Pool:
    """Queues served together: ``queues=None`` serves every queue."""

    queues: tuple[str, ...] | None = None
    concurrency: Concurrency = 10
    #: Jobs claimed ahead of a free slot; None: automatic (see Fetcher.prefetch_now).
    prefetch: int | None = None

    def __post_init__(self) -> None:
        if self.queues is not None:
            if isinstance(self.queues, str) or not self.queues:
                raise ConfigurationError(
                    "a pool's queues must be a non-empty list of names (or None for all)"
                )
            object.__setattr__(self, "queues", tuple(self.queues))
            for queue in self.queues:
                check_queue(queue)
        object.__setattr__(self, "concurrency", _check_concurrency(self.concurrency))
        if self.prefetch is not None:
            whole_number("prefetch", self.prefetch, 0, MAX_PREFETCH)

    @property
    def minimum(self) -> int:
        concurrency = self.concurrency
        return concurrency[0] if isinstance(concurrency, tuple) else concurrency

    @property
    def maximum(self) -> int:
        concurrency = self.concurrency
        return concurrency[1] if isinstance(concurrency, tuple) else concurrency

    def describe(self) -> str:
        queues = ",".join(self.queues) if self.queues else "all"
        low, high = self.minimum, self.maximum
        return f"{queues}: {low if low == high else f'{low}-{high}'}"


def _check_concurrency(value: object) -> Concurrency:
    def whole(n: object) -> TypeGuard[int]:
        return isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_CONCURRENCY

    if whole(value):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(whole(n) for n in value):
        low, high = value
        if low <= high:
            return (low, high) if low != high else low
    raise ConfigurationError(
        f"concurrency must be an integer >= 1 (at most {MAX_CONCURRENCY:,}) or a (minimum, "
        f"maximum) pair with 1 <= minimum <= maximum <= {MAX_CONCURRENCY:,}, got {value!r}"
    )


def build_pools(
    queues: Sequence[str] | Mapping[str, Concurrency] | None,
    concurrency: Concurrency,
    prefetch: int | None,
    pools: Sequence[Pool] | None,
) -> list[Pool]:
    """The pools a worker runs, from its arguments (see ``Worker``)."""
    if pools is not None:
        if queues is not None:
            raise ConfigurationError("give either pools or queues, not both")
        if not pools:
            raise ConfigurationError("pools must hold at least one Pool")
        chosen = list(pools)
    elif isinstance(queues, Mapping):
        if not queues:
            raise ConfigurationError("queues must name at least one queue (or be None for all)")
        chosen = [Pool((queue,), size, prefetch) for queue, size in queues.items()]
    else:
        if queues is not None and (isinstance(queues, str) or not queues):
            raise ConfigurationError(
                "queues must be a non-empty list of names, a mapping of names to concurrency, "
                "or None for all"
            )
        chosen = [Pool(None if queues is None else tuple(queues), concurrency, prefetch)]
    seen: set[str] = set()
    for pool in chosen:
        if pool.queues is None and len(chosen) > 1:
            raise ConfigurationError("a pool serving every queue must be the worker's only pool")
        for queue in pool.queues or ():
            if queue in seen:
                raise ConfigurationError(f"queue {queue!r} is in more than one pool")
            seen.add(queue)
    return chosen


def parse_pool_spec(text: str) -> dict[str, Concurrency] | list[str]:
    """``a,b`` (queues sharing --concurrency) or ``a=4,b=1-8`` (a pool per queue)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigurationError(f"{text!r} names nothing: give queue names separated by commas")
    if not any("=" in part for part in parts):
        return parts
    sized: dict[str, Concurrency] = {}
    for part in parts:
        name, sep, size = part.partition("=")
        if not sep:
            raise ConfigurationError(
                f"{part!r} has no concurrency: give every queue one (a=4,b=1-8) or none"
            )
        sized[name.strip()] = parse_concurrency(size)
    return sized


def parse_concurrency(text: str) -> Concurrency:
    """``4`` or ``1-8``."""
    low, sep, high = text.strip().partition("-")
    try:
        value: Concurrency = (int(low), int(high)) if sep else int(low)
    except ValueError:
        raise ConfigurationError(
            f"concurrency {text!r} is not a number or a range like 2-20"
        ) from None
    return _check_concurrency(value)


def format_concurrency(value: Concurrency) -> str:
    return f"{value[0]}-{value[1]}" if isinstance(value, tuple) else str(value)


def format_pool_spec(spec: dict[str, Concurrency] | list[str]) -> str:
    """The inverse of ``parse_pool_spec``."""
    if isinstance(spec, dict):
        return ",".join(f"{queue}={format_concurrency(size)}" for queue, size in spec.items())
    return ",".join(spec)


__all__ = [
    "Concurrency",
    "Pool",
    "build_pools",
    "format_concurrency",
    "format_pool_spec",
    "parse_concurrency",
    "parse_pool_spec",
]
