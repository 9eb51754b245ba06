"""The JSON log formatter: one object per line, the standard fields, extras and exceptions."""

from __future__ import annotations

import json
import logging
from datetime import datetime

from conveyor.jsonlog import JsonFormatter, WorkerIdFilter, formatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("conveyor.worker", logging.WARNING, "x.py", 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_standard_fields_and_extras() -> None:
    line = JsonFormatter().format(record("job %s: lost", 7, job_id=7, task="t", attempt=2))
    assert "\n" not in line
    data = json.loads(line)
    assert data.pop("time").endswith("+00:00")
    assert data == {
        "level": "WARNING",
        "logger": "conveyor.worker",
        "message": "job 7: lost",
        "job_id": 7,
        "task": "t",
        "attempt": 2,
    }
    assert datetime.fromisoformat(json.loads(line)["time"]).tzinfo is not None


def test_exceptions_newlines_and_values_json_cannot_hold() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        import sys

        made = record("multi\nline", odd={1, 2}, path=object)
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "multi\nline"
    assert data["exception"].startswith("Traceback") and "ValueError: bad" in data["exception"]
    assert data["odd"] == "{1, 2}"
    assert data["path"] == str(object)


def test_worker_id_filter_and_text_default() -> None:
    made = record("hello")
    assert WorkerIdFilter("host:1:abc").filter(made)
    assert json.loads(JsonFormatter().format(made))["worker_id"] == "host:1:abc"
    assert not formatter("text").format(record("hello")).startswith("{")
