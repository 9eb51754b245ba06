"""What goes in comes back: payloads exactly as given, times to the microsecond."""

from __future__ import annotations

import time

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.postgres import PostgresBackend
from tests.support import FakeClock, new_job


def test_payloads_come_back_exactly_as_given(pg: PostgresBackend) -> None:
    # jsonb would hand back 1e20 as an integer, -0.0 as 0, and the keys sorted.
    args = '[1e20, -0.0, 1.5, 12345678901234567890, "\\u00e9"]'
    kwargs = '{"zeta": 1, "alpha": {"b": 2, "a": 1}}'
    job_id = pg.enqueue_many([new_job(args_json=args, kwargs_json=kwargs)])[0].job_id
    [run] = pg.claim("w", None, 1, 30.0)
    for values in (run.args, pg.get(job_id).args):
        assert values == [1e20, -0.0, 1.5, 12345678901234567890, "é"]
        assert isinstance(values[0], float)
        assert str(values[1]) == "-0.0"
    assert list(run.kwargs) == ["zeta", "alpha"]
    assert list(run.kwargs["alpha"]) == ["b", "a"]
    pg.save_progress(run.id, run.lease_token, '{"done": 3e-7}', '{"z": 1, "a": 2}')
    pg.finish_many(
        [Outcome(run.id, run.lease_token, OutcomeKind.SUCCEEDED, '{"y": 1, "x": 1e300}')]
    )
    job = pg.get(job_id)
    assert list(job.result) == ["y", "x"] and job.result["x"] == 1e300
    assert job.progress == {"done": 3e-7}
    assert list(job.checkpoint) == ["z", "a"]


def test_times_keep_microseconds(pg: PostgresBackend, clock: FakeClock) -> None:
    clock.now = 1_800_000_000.123456
    job_id = pg.enqueue_many([new_job(delay=0.25)])[0].job_id
    job = pg.get(job_id)
    assert job.created_at == 1_800_000_000.123456
    assert job.run_at == 1_800_000_000.373456
    assert pg.next_due() == 1_800_000_000.373456


def test_without_a_clock_times_are_the_servers(pg_real_time: PostgresBackend) -> None:
    before = time.time()
    job_id = pg_real_time.enqueue_many([new_job(delay=10.0)])[0].job_id
    after = time.time()
    job = pg_real_time.get(job_id)
    # The local and the server clock are the same machine's here.
    assert before - 0.5 <= job.created_at <= after + 0.5
    assert job.run_at - job.created_at == 10.0
    assert before - 0.5 <= pg_real_time.now() <= time.time() + 0.5
    assert pg_real_time.claim("w", None, 1, 30.0) == [], "due ten seconds ahead, server time"


def test_results_with_quotes_backslashes_and_commas_come_back_in_a_batch(
    pg: PostgresBackend,
) -> None:
    # finish_many sends a batch's results as one array literal (array_literal.py).
    results = [
        "null",
        '"NULL"',
        '"a \\"quoted\\" word, and a comma"',
        '{"path": "C:\\\\temp\\\\x", "empty": ""}',
        '"\\u00e9 {braces} \\\\"',
        "[]",
    ]
    ids = [j.job_id for j in pg.enqueue_many([new_job() for _ in results])]
    runs = pg.claim("w", None, len(results), 30.0)
    by_id = {run.id: run for run in runs}
    outcomes = [
        Outcome(i, by_id[i].lease_token, OutcomeKind.SUCCEEDED, r)
        for i, r in zip(ids, results, strict=True)
    ]
    assert all(r.applied for r in pg.finish_many(outcomes))
    assert [pg.get(i).result for i in ids] == [
        None,
        "NULL",
        'a "quoted" word, and a comma',
        {"path": "C:\\temp\\x", "empty": ""},
        "é {braces} \\",
        [],
    ]


def test_empty_arguments_are_fresh_objects_per_job(pg: PostgresBackend) -> None:
    # Read without parsing (json_loader.py): one job's task must not see another's changes.
    pg.enqueue_many([new_job(), new_job()])
    first, second = pg.claim("w", None, 2, 30.0)
    assert first.args == [] and first.kwargs == {}
    first.args.append(1)
    first.kwargs["x"] = 1
    assert second.args == [] and second.kwargs == {}
