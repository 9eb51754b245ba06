"""Contract: rate limits of tasks hold while a circuit breaker is unsettled. The claims that skip
the tasks behind a breaker must keep rate-limited jobs out as the ordinary claims do."""

from __future__ import annotations

import pytest

from conveyor.backends.base import Backend
from conveyor.limits import RateLimit
from tests.contract.helpers import LEASE
from tests.contract.test_breakers import declare
from tests.support import FakeClock, new_job


@pytest.mark.parametrize("queues", [None, ["api"], ["api", "other"]])
def test_a_rate_limit_holds_while_a_breaker_is_open(
    backend: Backend, clock: FakeClock, queues: list[str] | None
) -> None:
    backend.set_breaker(declare(), opened=True)
    rate = RateLimit(2, per=1.0)
    jobs = [new_job("tests.limited", "api", rate_key="", rate_limit=rate) for _ in range(5)]
    backend.enqueue_many(jobs)
    assert len(backend.claim("w", queues, 10, LEASE)) == 1
    assert backend.claim("w", queues, 10, LEASE) == []
    clock.advance(0.5)
    assert len(backend.claim("w", queues, 10, LEASE)) == 1
