"""Backoff policies: how long to wait before the next attempt of a failed job.

A policy is any callable ``(attempt, exception) -> seconds``; ``attempt`` is the number of the
attempt that just failed (1 for the first). Randomness is injectable so tests are deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor.errors import ConfigurationError

BackoffPolicy = Callable[[int, BaseException], float]


def _positive(name: str, value: float) -> float:
    if not value >= 0:  # written so that NaN is refused too
        raise ConfigurationError(f"{name} must be >= 0, got {value}")
    return float(value)


@dataclass(frozen=True)
class Exponential:
    """``base * factor ** (attempt - 1)``, capped at ``cap``, with full jitter of ``jitter``.

    With the defaults: about 1 s, 2 s, 4 s, 8 s ... up to 1 hour. ``jitter=0.1`` spreads each
    delay uniformly over ±10 % so that many jobs failing together do not retry together.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        _positive("base", self.base)
        _positive("cap", self.cap)
        if not self.factor >= 1:
            raise ConfigurationError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be within [0, 1], got {self.jitter}")

    def raw(self, attempt: int) -> float:
        exponent = max(attempt - 1, 0)
        if self.base == 0:
            return 0.0
        try:
            grown = self.base * float(self.factor) ** exponent
        except OverflowError:  # absurd attempt counts: far past the cap, where it no longer matters
            return float(self.cap)
        return float(min(grown, self.cap))

    def __call__(self, attempt: int, error: BaseException | None = None) -> float:
        delay = self.raw(attempt)
        spread = delay * self.jitter
        return max(0.0, delay + self.rng.uniform(-spread, spread))


@dataclass(frozen=True)
class Linear:
    """``step * attempt``, capped at ``cap``."""

    step: float = 5.0
    cap: float = 3600.0

    def __post_init__(self) -> None:
        _positive("step", self.step)
        _positive("cap", self.cap)

    def __call__(self, attempt: int, error: BaseException | None = None) -> float:
        return min(self.step * max(attempt, 1), self.cap)


@dataclass(frozen=True)
class Fixed:
    """The same delay before every retry."""

    delay: float = 5.0

    def __post_init__(self) -> None:
        _positive("delay", self.delay)

    def __call__(self, attempt: int, error: BaseException | None = None) -> float:
        return self.delay


@dataclass(frozen=True)
class Fibonacci:
    """``base * F(attempt)`` with F = 1, 1, 2, 3, 5, 8 ..., capped at ``cap``, with full jitter
    of ``jitter`` (as in ``Exponential``).

    Gentler than doubling: about 1 s, 1 s, 2 s, 3 s, 5 s, 8 s ... up to 1 hour with the
    defaults, reaching a minute at the tenth attempt where ``Exponential`` takes seven.
    """

    base: float = 1.0
    cap: float = 3600.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        _positive("base", self.base)
        _positive("cap", self.cap)
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be within [0, 1], got {self.jitter}")

    def raw(self, attempt: int) -> float:
        if self.base == 0:
            return 0.0
        previous, current = 0.0, self.base
        # F grows by about 1.6 a step, so this stops after a few dozen steps at the cap.
        for _ in range(max(attempt, 1) - 1):
            if current >= self.cap:
                break
            previous, current = current, previous + current
        return float(min(current, self.cap))

    def __call__(self, attempt: int, error: BaseException | None = None) -> float:
        delay = self.raw(attempt)
        spread = delay * self.jitter
        return max(0.0, delay + self.rng.uniform(-spread, spread))


@dataclass(frozen=True)
class Immediate:
    """No wait: the next attempt is ready at once (for failures a retry fixes by itself, such
    as a lost race)."""

    def __call__(self, attempt: int, error: BaseException | None = None) -> float:
        return 0.0


@dataclass(frozen=True)
class RetryBudget:
    """At most ``limit`` retries of one task per ``window`` seconds, across all workers.

    Past the budget a failing job is dead-lettered with reason ``retry budget exhausted``
    instead of being retried, so a broken dependency cannot turn into a retry storm. Dead jobs
    can be requeued from the dead-letter queue once the cause is fixed.
    """

    limit: int
    window: float = 60.0

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ConfigurationError(f"retry budget limit must be >= 0, got {self.limit}")
        if self.window <= 0:
            raise ConfigurationError(f"retry budget window must be > 0, got {self.window}")


def resolve_policy(policy: BackoffPolicy | str | None) -> BackoffPolicy:
    """Turn the ``retry=`` option of a task into a policy."""
    if policy is None or policy == "exponential":
        return Exponential()
    if policy == "linear":
        return Linear()
    if policy == "fixed":
        return Fixed()
    if policy == "fibonacci":
        return Fibonacci()
    if policy == "immediate":
        return Immediate()
    if callable(policy):
        return policy
    raise ConfigurationError(
        f"unknown retry policy {policy!r}: use 'exponential', 'fibonacci', 'linear', 'fixed', "
        "'immediate' or a callable"
    )
