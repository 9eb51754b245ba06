"""The lines a worker and its heartbeat process exchange over their two pipes.

Worker to heartbeat process: first the configuration (one JSON line), then one line per change
of the runs the worker holds: ``+<token>`` when it claims a run, ``-<token>`` when it no longer
needs its lease. Lease tokens never contain white space.

Heartbeat process to worker: JSON lines, either a report ``{"lost": [...], "cancel": [...]}``
(tokens) or a log record ``{"log": [level, logger name, message]}`` for the worker to log as its
own, through whatever logging the application set up.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from conveyor.backends.base import LeaseReport
from conveyor.settings import Settings

HOLD = b"+"
RELEASE = b"-"


@dataclass(frozen=True)
class PulseConfig:
    #: Opens the worker's store (``Backend.settings``).
    settings: Settings
    worker_id: str
    worker_pid: int
    #: Seconds between heartbeats, and the lease each one grants.
    interval: float
    lease: float
    #: Seconds between looks for cancel requests, while the worker holds runs.
    cancel_check: float

    def encode(self) -> bytes:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        settings = {f.name: getattr(self.settings, f.name) for f in dataclasses.fields(Settings)}
        settings["queue_limits"] = dict(self.settings.queue_limits)
        return json.dumps({**fields, "settings": settings}).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> PulseConfig:
        fields = json.loads(line)
        return cls(**{**fields, "settings": Settings(**fields["settings"])})


def changes(sign: bytes, tokens: Iterable[str]) -> bytes:
    return b"".join(sign + token.encode() + b"\n" for token in tokens)


def report(lost: set[str], cancel: set[str]) -> bytes:
    return json.dumps({"lost": sorted(lost), "cancel": sorted(cancel)}).encode() + b"\n"


def log_record(level: int, name: str, message: str) -> bytes:
    return json.dumps({"log": [level, name, message]}).encode() + b"\n"


@dataclass(frozen=True)
class LogLine:
    level: int
    name: str
    message: str


def decode(line: bytes) -> LeaseReport | LogLine:
    message: dict[str, Any] = json.loads(line)
    if "log" in message:
        level, name, text = message["log"]
        return LogLine(int(level), str(name), str(text))
    return LeaseReport(
        lost=frozenset(message["lost"]), cancel_requested=frozenset(message["cancel"])
    )


def batches(fd: int) -> Iterator[list[bytes]]:
    """The complete lines of each read from ``fd``, without their newline, until end of file.

    Plain reads, no buffered file object: the thread reading may still be blocked in one when
    the process exits (the worker gone, a process it forked holding the pipe open).
    """
    pending = b""
    while chunk := os.read(fd, 1 << 20):
        *complete, pending = (pending + chunk).split(b"\n")
        if complete:
            yield complete
