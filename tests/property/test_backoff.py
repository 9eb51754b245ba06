"""Properties of the backoff policies, for any attempt and any valid parameters."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.retry import Exponential, Fibonacci, Linear

ERR = RuntimeError("boom")
# Relative slack for float rounding in delay ± delay * jitter.
EPS = 1e-9

attempts = st.integers(min_value=1, max_value=100_000)
policies = st.builds(
    Exponential,
    base=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    factor=st.floats(min_value=1.0, max_value=1e3, allow_nan=False),
    cap=st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    jitter=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    rng=st.integers(min_value=0, max_value=2**32).map(random.Random),
)


@settings(max_examples=300)
@given(policy=policies, attempt=attempts)
def test_exponential_delay_stays_within_the_jitter_band(policy: Exponential, attempt: int) -> None:
    raw = policy.raw(attempt)
    delay = policy(attempt, ERR)
    low = raw * (1 - policy.jitter)
    high = raw * (1 + policy.jitter)
    assert low * (1 - EPS) - EPS <= delay <= high * (1 + EPS) + EPS
    assert delay >= 0.0


@settings(max_examples=300)
@given(policy=policies, attempt=attempts)
def test_exponential_raw_never_exceeds_the_cap(policy: Exponential, attempt: int) -> None:
    raw = policy.raw(attempt)
    assert 0.0 <= raw <= policy.cap


@settings(max_examples=300)
@given(policy=policies, attempt=attempts, step=st.integers(min_value=1, max_value=10_000))
def test_exponential_raw_is_non_decreasing(policy: Exponential, attempt: int, step: int) -> None:
    assert policy.raw(attempt) <= policy.raw(attempt + 1)
    assert policy.raw(attempt) <= policy.raw(attempt + step)


@given(policy=policies)
def test_exponential_first_attempt_is_the_base(policy: Exponential) -> None:
    assert policy.raw(1) == min(policy.base, policy.cap)


@given(
    step=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    cap=st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    attempt=attempts,
)
def test_linear_is_capped_and_non_decreasing(step: float, cap: float, attempt: int) -> None:
    policy = Linear(step=step, cap=cap)
    assert 0.0 <= policy(attempt, ERR) <= cap
    assert policy(attempt, ERR) <= policy(attempt + 1, ERR)


fibonacci_policies = st.builds(
    Fibonacci,
    base=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    cap=st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    jitter=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    rng=st.integers(min_value=0, max_value=2**32).map(random.Random),
)


@settings(max_examples=300)
@given(policy=fibonacci_policies, attempt=attempts, step=st.integers(min_value=1, max_value=1000))
def test_fibonacci_is_capped_non_decreasing_and_within_its_jitter(
    policy: Fibonacci, attempt: int, step: int
) -> None:
    raw = policy.raw(attempt)
    assert 0.0 <= raw <= policy.cap
    assert raw <= policy.raw(attempt + 1) <= policy.raw(attempt + step)
    assert policy.raw(1) == policy.raw(2) == min(policy.base, policy.cap)
    delay = policy(attempt, ERR)
    assert raw * (1 - policy.jitter) * (1 - EPS) - EPS <= delay
    assert delay <= raw * (1 + policy.jitter) * (1 + EPS) + EPS


@given(policy=fibonacci_policies, attempt=st.integers(min_value=3, max_value=60))
def test_fibonacci_adds_the_two_delays_before(policy: Fibonacci, attempt: int) -> None:
    total = policy.raw(attempt - 1) + policy.raw(attempt - 2)
    assert policy.raw(attempt) == min(total, policy.cap) or policy.raw(attempt - 1) == policy.cap
