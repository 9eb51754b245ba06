"""/api/stats, /api/queues and /metrics over the per-minute aggregates: what a worker did shows
in figures over time, per task and queue, on every engine."""

from __future__ import annotations

from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.backends.tally import BOUNDS


def _work(app: Conveyor) -> None:
    """3 sums that succeed, 1 explosion that ends dead, run by a burst worker; the enqueues
    counted as maintenance would count them."""
    for x in range(3):
        app.enqueue("add", [x, 1])
    app.enqueue("explode")
    app.worker(concurrency=1, burst=True).run()
    assert app.backend.count_enqueued(settle=0) == 4


def test_stats_show_the_last_hour_by_task(client: TestClient, app: Conveyor) -> None:
    _work(app)
    stats = client.get("/api/stats").json()
    assert stats["jobs"]["succeeded"] == 3 and stats["dead_letters"] == 1
    assert stats["estimated"] == []
    hour = stats["last_hour"]
    add, explode = hour["tasks"]["add"], hour["tasks"]["explode"]
    assert (add["enqueued"], add["succeeded"], add["retry_rate"]) == (1 * 3, 3, 0.0)
    assert add["run_time"]["count"] == 3 and add["run_time"]["avg"] >= 0
    assert 0 <= add["run_time"]["p95"] <= BOUNDS[-1]
    assert (explode["dead"], explode["queue_wait"]["count"]) == (1, 1)
    assert hour["retry_rate"] == 0.0
    series = hour["throughput"]
    assert len(series) == 60
    assert series[-1]["minute"] <= stats["counted_at"] < series[-1]["minute"] + 60
    assert sum(m["succeeded"] for m in series) == 3
    assert sum(m["failed"] for m in series) == sum(m["dead"] for m in series) == 1
    assert sum(m["enqueued"] for m in series) == 4


def test_queues_show_throughput_and_the_oldest_ready_job(client: TestClient, app: Conveyor) -> None:
    _work(app)
    app.enqueue("add", [5, 5])
    queues = {q["name"]: q for q in client.get("/api/queues").json()["queues"]}
    math = queues["math"]
    assert math["throughput"]["succeeded_last_hour"] == 3
    assert math["throughput"]["per_minute"] == 3 / 60
    assert math["oldest_ready_age"] is not None and math["oldest_ready_age"] >= 0
    assert queues["default"]["oldest_ready_age"] is None, "nothing ready there"
    assert queues["default"]["throughput"]["failed_last_hour"] == 1


def test_metrics_count_the_fleets_work_per_task_and_queue(
    client: TestClient, app: Conveyor
) -> None:
    _work(app)
    text = client.get("/metrics").text
    assert 'conveyor_jobs_enqueued_total{queue="math",task="add"} 3.0' in text
    assert 'conveyor_jobs_succeeded_total{queue="math",task="add"} 3.0' in text
    assert 'conveyor_jobs_dead_total{queue="default",task="explode"} 1.0' in text
    assert 'conveyor_jobs_failed_total{queue="default",task="explode"} 1.0' in text
    assert 'conveyor_jobs_rescued_total{queue="math",task="add"} 0.0' in text
    assert 'conveyor_job_run_seconds_count{queue="math",task="add"} 3.0' in text
    assert 'conveyor_job_run_seconds_bucket{le="+Inf",queue="math",task="add"} 3.0' in text
    assert 'conveyor_job_queue_wait_seconds_count{queue="default",task="explode"} 1.0' in text
    assert "conveyor_workers_alive 0.0" in text
    assert "conveyor_queue_oldest_ready_age_seconds" in text


def test_metrics_series_stay_bounded() -> None:
    from conveyor.backends.tally import Tally
    from conveyor.http.metrics import OTHER, bounded

    rows = [Tally("q", f"task{i}", None, enqueued=i) for i in range(10)]
    kept = bounded(rows, most=4)
    assert [(t.queue, t.task) for t in kept] == [
        ("q", "task7"),
        ("q", "task8"),
        ("q", "task9"),
        (OTHER, OTHER),
    ]
    assert kept[-1].enqueued == sum(range(7)), "the quietest summed, nothing lost"
    assert bounded(rows, most=10) == rows
