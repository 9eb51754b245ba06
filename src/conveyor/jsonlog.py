"""Structured logs: one JSON object per line (``conveyor worker --log-format json``).

Each line holds ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger`` and ``message``,
then every field the call passed with ``extra=`` (the worker's lines about a job carry
``job_id``, ``task``, ``queue`` and ``attempt``; at ``--log-level debug`` one line per run adds
``outcome`` and ``duration``), ``worker_id`` in a worker process, and ``exception`` (the
formatted traceback) when there is one. Log shippers (Loki,
CloudWatch, Datadog, journald's JSON mode) index those fields without a parsing rule.

Plain ``logging``: an application's own log calls come out the same way, and ``extra=``
fields of its own become fields of the line. A value JSON cannot hold is written as its
``str()``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.hooks import RunInfo

#: The attributes every LogRecord has: the rest came from ``extra=`` (or a filter).
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """A ``logging.Formatter`` that writes each record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class WorkerIdFilter(logging.Filter):
    """Adds ``worker_id`` to every record that passes through the handler."""

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker_id"):
            record.worker_id = self.worker_id
        return True


def job_fields(job: Any) -> dict[str, Any]:
    """The ``extra=`` of a log call about one job (a ClaimedJob, a Job or a RunInfo)."""
    return {
        "job_id": getattr(job, "job_id", None) or job.id,
        "task": job.task,
        "queue": job.queue,
        "attempt": job.attempt,
    }


def log_each_run(app: Conveyor, logger: logging.Logger | None = None) -> None:
    """Log the end of every run at DEBUG (``conveyor worker --log-level debug``), with the
    job's fields, its outcome and its duration. An ``after_run`` hook: it costs nothing unless
    registered."""
    out = logger or logging.getLogger("conveyor.jobs")

    def log_run(run: RunInfo) -> None:
        fields = {**job_fields(run), "outcome": run.outcome, "duration": run.duration}
        if run.exception is not None:
            fields["error"] = f"{type(run.exception).__name__}: {run.exception}"
        out.debug(
            "job %s (%s) %s after %.3fs",
            run.job_id,
            run.task,
            run.outcome,
            run.duration or 0.0,
            extra=fields,
        )

    app.on("after_run", log_run)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``--log-format``: "text" (for people, the default) or "json"."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


__all__ = ["FORMATS", "JsonFormatter", "WorkerIdFilter", "formatter", "job_fields", "log_each_run"]
