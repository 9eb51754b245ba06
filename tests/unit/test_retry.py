"""Backoff policies and their resolution from a task's ``retry=`` option."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.errors import ConfigurationError
from conveyor.retry import (
    Exponential,
    Fibonacci,
    Fixed,
    Immediate,
    Linear,
    RetryBudget,
    resolve_policy,
)

ERR = RuntimeError("boom")


class TestExponential:
    def test_defaults_double_from_one_second(self) -> None:
        policy = Exponential(jitter=0.0)
        assert [policy(a, ERR) for a in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]

    def test_capped(self) -> None:
        policy = Exponential(base=10.0, factor=3.0, cap=100.0, jitter=0.0)
        assert [policy(a, ERR) for a in range(1, 6)] == [10.0, 30.0, 90.0, 100.0, 100.0]
        assert policy(10_000, ERR) == 100.0

    def test_raw_stays_at_the_cap_for_absurd_attempt_counts(self) -> None:
        assert Exponential().raw(1025) == 3600.0
        assert Exponential().raw(10**9) == 3600.0
        assert Exponential(factor=10).raw(400) == 3600.0
        assert Exponential(base=0.0).raw(5000) == 0.0
        # A slow factor is not cut short: 1.001 ** 1025 is still under 3 seconds.
        assert Exponential(factor=1.001).raw(1026) == pytest.approx(1.001**1025)

    def test_attempt_zero_or_less_counts_as_the_first(self) -> None:
        policy = Exponential(jitter=0.0)
        assert policy.raw(0) == policy.raw(1) == 1.0
        assert policy.raw(-3) == 1.0

    def test_jitter_stays_within_bounds_and_spreads(self) -> None:
        policy = Exponential(base=100.0, jitter=0.1, rng=random.Random(7))
        delays = [policy(1, ERR) for _ in range(500)]
        assert all(90.0 <= d <= 110.0 for d in delays)
        assert len(set(delays)) > 400
        assert min(delays) < 95.0 < 105.0 < max(delays)

    def test_injected_rng_makes_it_deterministic(self) -> None:
        first = Exponential(rng=random.Random(42))
        second = Exponential(rng=random.Random(42))
        assert [first(a, ERR) for a in range(1, 10)] == [second(a, ERR) for a in range(1, 10)]

    def test_full_jitter_never_goes_negative(self) -> None:
        policy = Exponential(base=1.0, jitter=1.0, rng=random.Random(3))
        assert all(0.0 <= policy(1, ERR) <= 2.0 for _ in range(200))

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"base": -1.0},
            {"cap": -1.0},
            {"factor": 0.5},
            {"jitter": -0.1},
            {"jitter": 1.5},
            {"base": float("nan")},
            {"cap": float("nan")},
            {"factor": float("nan")},
            {"jitter": float("nan")},
        ],
        ids=str,
    )
    def test_bad_parameters(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            Exponential(**kwargs)


class TestLinear:
    def test_steps_and_cap(self) -> None:
        policy = Linear(step=5.0, cap=12.0)
        assert [policy(a, ERR) for a in range(1, 5)] == [5.0, 10.0, 12.0, 12.0]
        assert policy(0, ERR) == 5.0

    @pytest.mark.parametrize("kwargs", [{"step": -1.0}, {"cap": -0.5}, {"step": float("nan")}])
    def test_bad_parameters(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ConfigurationError):
            Linear(**kwargs)


class TestFixed:
    def test_always_the_same(self) -> None:
        assert [Fixed(7.5)(a, ERR) for a in (1, 2, 50)] == [7.5, 7.5, 7.5]

    @pytest.mark.parametrize("delay", [-1.0, float("nan")])
    def test_bad_delay(self, delay: float) -> None:
        with pytest.raises(ConfigurationError):
            Fixed(delay)


class TestFibonacci:
    def test_defaults_follow_the_sequence_from_one_second(self) -> None:
        policy = Fibonacci(jitter=0.0)
        assert [policy(a, ERR) for a in range(1, 9)] == [1, 1, 2, 3, 5, 8, 13, 21]

    def test_base_and_cap(self) -> None:
        policy = Fibonacci(base=2.0, cap=15.0, jitter=0.0)
        assert [policy(a, ERR) for a in range(1, 7)] == [2, 2, 4, 6, 10, 15]
        assert policy.raw(10**9) == 15.0
        assert Fibonacci(base=0.0).raw(5000) == 0.0
        assert Fibonacci().raw(0) == Fibonacci().raw(-2) == 1.0

    def test_jitter_stays_within_bounds(self) -> None:
        policy = Fibonacci(base=100.0, jitter=0.1, rng=random.Random(5))
        delays = [policy(1, ERR) for _ in range(200)]
        assert all(90.0 <= d <= 110.0 for d in delays)
        assert len(set(delays)) > 150

    @pytest.mark.parametrize(
        "kwargs",
        [{"base": -1.0}, {"cap": -1.0}, {"jitter": 1.5}, {"base": float("nan")}],
        ids=str,
    )
    def test_bad_parameters(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ConfigurationError):
            Fibonacci(**kwargs)


def test_immediate_never_waits() -> None:
    assert [Immediate()(a, ERR) for a in (1, 2, 10**6)] == [0.0, 0.0, 0.0]


class TestRetryBudget:
    def test_valid(self) -> None:
        assert RetryBudget(0, 1.0).limit == 0

    @pytest.mark.parametrize(("limit", "window"), [(-1, 60.0), (5, 0.0), (5, -1.0)])
    def test_bad_parameters(self, limit: int, window: float) -> None:
        with pytest.raises(ConfigurationError):
            RetryBudget(limit, window)


class TestResolvePolicy:
    def test_names(self) -> None:
        assert isinstance(resolve_policy(None), Exponential)
        assert isinstance(resolve_policy("exponential"), Exponential)
        assert isinstance(resolve_policy("linear"), Linear)
        assert isinstance(resolve_policy("fixed"), Fixed)
        assert isinstance(resolve_policy("fibonacci"), Fibonacci)
        assert isinstance(resolve_policy("immediate"), Immediate)

    def test_the_names_are_public(self) -> None:
        import conveyor

        assert conveyor.Fibonacci is Fibonacci
        assert conveyor.Immediate is Immediate

    def test_callables_pass_through(self) -> None:
        def policy(attempt: int, exc: BaseException) -> float:
            return 1.0

        assert resolve_policy(policy) is policy
        instance = Linear(step=2.0)
        assert resolve_policy(instance) is instance

    @pytest.mark.parametrize("bad", ["exponentail", "", 5, 2.5])
    def test_unknown_policies(self, bad: Any) -> None:
        with pytest.raises(ConfigurationError) as caught:
            resolve_policy(bad)
        assert "unknown retry policy" in str(caught.value)
        assert "'fibonacci', 'linear', 'fixed', 'immediate' or a callable" in str(caught.value)


class TestTaskRetryOption:
    def test_custom_callable_decides_the_delay(self, tmp_path: Path) -> None:
        seen: list[tuple[int, str]] = []

        def policy(attempt: int, exc: BaseException) -> float:
            seen.append((attempt, type(exc).__name__))
            return 42.0 if isinstance(exc, TimeoutError) else 1.0

        app = Conveyor(f"sqlite:///{tmp_path}/x.db")

        @app.task(retry=policy, max_attempts=5)
        def flaky() -> None: ...

        slow = flaky.failure_outcome(1, "tok", 2, 5, TimeoutError("slow"), now=0.0)
        fast = flaky.failure_outcome(1, "tok", 3, 5, KeyError("k"), now=0.0)
        assert slow.retry_in == 42.0
        assert fast.retry_in == 1.0
        assert seen == [(2, "TimeoutError"), (3, "KeyError")]

    def test_a_negative_delay_from_a_custom_policy_means_now(self, tmp_path: Path) -> None:
        app = Conveyor(f"sqlite:///{tmp_path}/x.db")

        @app.task(retry=lambda attempt, exc: -5.0)
        def flaky() -> None: ...

        assert flaky.failure_outcome(1, "tok", 1, 3, ValueError(), now=0.0).retry_in == 0.0

    @pytest.mark.parametrize(("name", "kind"), [("linear", Linear), ("fixed", Fixed)])
    def test_policy_by_name(self, tmp_path: Path, name: str, kind: type) -> None:
        app = Conveyor(f"sqlite:///{tmp_path}/x.db")

        @app.task(retry=name)
        def job() -> None: ...

        assert isinstance(job.backoff, kind)

    def test_unknown_policy_name_is_refused_at_registration(self, tmp_path: Path) -> None:
        app = Conveyor(f"sqlite:///{tmp_path}/x.db")
        with pytest.raises(ConfigurationError):

            @app.task(retry="sometimes")
            def job() -> None: ...
