"""Schema-driven fuzzing of every endpoint (schemathesis, a bounded number of examples per
operation): no request is answered with a 5xx, a refused request changes no job count, and
every job written can be read back whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core.result import Ok

from conveyor import Conveyor
from conveyor.job import JobState
from tests.engines import Engine
from tests.http.conftest import register_tasks

#: Examples per operation and engine: about 60 s for the whole file on a loaded machine.
EXAMPLES = 15


@pytest.fixture
def fuzzed_app(database: Engine) -> Iterator[Conveyor]:
    with database.app() as app:
        register_tasks(app)
        yield app


def _total(app: Conveyor) -> int:
    return sum(sum(per_queue.values()) for per_queue in app.stats().values())


def test_no_5xx_and_no_half_written_job(fuzzed_app: Conveyor) -> None:
    schema = schemathesis.openapi.from_asgi(
        "/api/openapi.json", fuzzed_app.asgi(tokens_from_environment=False)
    )
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results)
    assert len(operations) >= 16
    for operation in operations:
        _fuzz(fuzzed_app, operation)
    for job in fuzzed_app.list_jobs(limit=1000):
        assert job.state in set(JobState)
        assert isinstance(job.args, list) and isinstance(job.kwargs, dict)


def _fuzz(app: Conveyor, operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the run stays bounded
    )
    def check(case: Any) -> None:
        if case.query and "wait" in case.query:
            case.query["wait"] = 0.05  # a long wait on a live job only makes the run slow
        before = _total(app)
        response = case.call()
        where = (case.method, case.path, case.path_parameters, case.query, case.body)
        assert response.status_code < 500, (where, response.text)
        if response.status_code >= 400:
            assert "application/problem+json" in str(response.headers["content-type"]), where
            assert response.json()["status"] == response.status_code
            # A refused request wrote nothing (no job, no part of a batch).
            assert _total(app) == before, (where, response.text)

    check()
