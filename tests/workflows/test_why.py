"""`app.why` (conveyor/limits/why.py) beside the other gates of main: a blocked job names the
parents it waits for, a job behind an open circuit breaker names the breaker."""

from __future__ import annotations

from conveyor import Conveyor


def test_a_blocked_job_names_the_parents_not_yet_succeeded(app: Conveyor) -> None:
    value, add = app.get_task("value"), app.get_task("add_parents")
    first, second = value.enqueue(1), value.enqueue(2)
    child = add.options(depends_on=[first, second]).enqueue()
    [hold] = [h for h in app.why(child.id) if h.gate == "blocked"]
    assert hold.reason == f"waiting for job(s) {first.id} (queued), {second.id} (queued)"


def test_a_job_behind_an_open_breaker_names_it(app: Conveyor) -> None:
    app.breaker("partner-api", failures=3)
    task = app.task(name="partner", breaker="partner-api")(lambda: None)
    job = task.enqueue()
    assert [h.gate for h in app.why(job.id) if h.gate == "breaker"] == []
    app.open_breaker("partner-api")
    [hold] = [h for h in app.why(job.id) if h.gate == "breaker"]
    assert hold.reason == "breaker partner-api open until closed by hand"
