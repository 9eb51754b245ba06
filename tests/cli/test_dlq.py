"""`conveyor dlq list|show|requeue|discard`: dead jobs made by a real (burst) worker."""

from __future__ import annotations

import pytest

from tests.cli.support import Invoke, WriteApp, assert_user_error, output_json


@pytest.fixture
def module(write_app: WriteApp) -> str:
    return write_app()


def kill(invoke: Invoke, module: str, *queues: str) -> list[int]:
    """One job per queue that fails for good (max_attempts=1), run to death by a worker."""
    ids = []
    for queue in queues:
        result = invoke(
            "enqueue",
            f"{module}.explode",
            "--kwargs",
            '{"reason": "no ink"}',
            "--queue",
            queue,
            "--app",
            f"{module}:app",
        )
        assert result.exit_code == 0, result.output
        ids.append(int(result.stdout))
    worker = invoke("worker", "--app", f"{module}:app", "--burst")
    assert worker.exit_code == 0, worker.output
    return ids


def states(invoke: Invoke) -> dict[int, str]:
    return {job["id"]: job["state"] for job in output_json(invoke("jobs", "list", "--json"))}


def test_list_and_show_dead_jobs_with_their_reason(invoke: Invoke, module: str) -> None:
    first, second = kill(invoke, module, "a", "b")
    listed = invoke("dlq", "list")
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["ID", "TASK", "QUEUE", "TRIES"]
    assert [int(row.split()[0]) for row in rows] == [second, first]
    assert "RuntimeError: no ink" in rows[0]

    only_a = output_json(invoke("dlq", "list", "--queue", "a", "--json"))
    assert [job["id"] for job in only_a] == [first]
    assert only_a[0]["dead_reason"].startswith("attempts exhausted (1/1)")

    shown = invoke("dlq", "show", str(first))
    assert shown.exit_code == 0, shown.output
    assert "dead reason:" in shown.stdout
    assert "attempt 1" in shown.stdout
    assert "RuntimeError: no ink" in shown.stdout
    assert "Traceback (most recent call last)" in shown.stdout  # the job's, not ours


def test_show_of_a_live_job_is_a_user_error(invoke: Invoke) -> None:
    job_id = invoke("enqueue", "t").stdout.strip()
    assert_user_error(invoke("dlq", "show", job_id), "not in the dead-letter queue", "queued")


def test_empty_dead_letter_queue(invoke: Invoke, migrated: None) -> None:
    assert invoke("dlq", "list").stdout == "the dead-letter queue is empty\n"
    assert invoke("dlq", "requeue", "--all").stdout == "no dead jobs\n"


def test_requeue_by_id_gives_one_more_attempt(invoke: Invoke, module: str) -> None:
    first, second = kill(invoke, module, "a", "a")
    requeued = output_json(invoke("dlq", "requeue", str(first), "--json"))
    assert [(job["id"], job["state"], job["max_attempts"]) for job in requeued] == [
        (first, "queued", 2)
    ]
    assert states(invoke) == {first: "queued", second: "dead"}


def test_requeue_with_reset_attempts(invoke: Invoke, module: str) -> None:
    (job_id,) = kill(invoke, module, "a")
    result = invoke("dlq", "requeue", str(job_id), "--reset-attempts")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[:2] == [str(job_id), "queued"]
    job = output_json(invoke("jobs", "show", str(job_id), "--json"))
    assert job["attempts"] == 0


def test_requeue_all_of_a_queue_with_yes(invoke: Invoke, module: str) -> None:
    a1, b1, a2 = kill(invoke, module, "a", "b", "a")
    result = invoke("dlq", "requeue", "--all", "--queue", "a", "--yes")
    assert result.exit_code == 0, result.output
    assert states(invoke) == {a1: "queued", b1: "dead", a2: "queued"}


def test_bulk_change_without_a_terminal_needs_yes(invoke: Invoke, module: str) -> None:
    ids = kill(invoke, module, "a", "b")
    for verb in ("requeue", "discard"):
        assert_user_error(invoke("dlq", verb, "--all"), "2 dead job(s)", "pass --yes")
    assert states(invoke) == dict.fromkeys(ids, "dead")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend stdin is a terminal, so the confirmation prompt is shown."""
    monkeypatch.setattr("conveyor.cli.core.stdin_is_interactive", lambda: True)


def test_confirmed_at_the_prompt(invoke: Invoke, module: str, terminal: None) -> None:
    ids = kill(invoke, module, "a", "b")
    result = invoke("dlq", "requeue", "--all", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Requeue all 2 dead job(s)?" in result.stderr
    assert states(invoke) == dict.fromkeys(ids, "queued")


def test_declined_at_the_prompt_changes_nothing(
    invoke: Invoke, module: str, terminal: None
) -> None:
    ids = kill(invoke, module, "a", "b")
    result = invoke("dlq", "discard", "--all", input="n\n")
    assert result.exit_code == 1
    assert "nothing changed" in result.stderr
    assert states(invoke) == dict.fromkeys(ids, "dead")


def test_discard_by_id_and_all(invoke: Invoke, module: str) -> None:
    first, second, third = kill(invoke, module, "a", "a", "b")
    result = invoke("dlq", "discard", str(first))
    assert result.stdout == "discarded 1 dead job(s)\n"
    assert output_json(invoke("dlq", "discard", "--all", "--yes", "--json")) == {
        "discarded": 2,
        "ids": [third, second],
    }
    assert states(invoke) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the ids of the jobs, or --all"),
        (["1", "--all"], "not both"),
        (["1", "--queue", "a"], "--queue only narrows --all"),
    ],
)
def test_choosing_jobs_wrongly_is_a_user_error(
    invoke: Invoke, migrated: None, args: list[str], message: str
) -> None:
    for verb in ("requeue", "discard"):
        assert_user_error(invoke("dlq", verb, *args), message)


def test_requeue_or_discard_of_a_live_job_changes_nothing(invoke: Invoke, module: str) -> None:
    (dead,) = kill(invoke, module, "a")
    live = int(invoke("enqueue", "t").stdout)
    assert_user_error(invoke("dlq", "requeue", str(dead), str(live)), f"cannot requeue job {live}")
    assert_user_error(invoke("dlq", "discard", str(dead), str(live)), f"cannot discard job {live}")
    assert states(invoke) == {dead: "dead", live: "queued"}
