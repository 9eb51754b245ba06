"""The lines a worker and its heartbeat process exchange over their two pipes.

Worker to heartbeat process: first the configuration (one JSON line), then one line per change:
``+<token>`` when the worker claims a run, ``-<token>`` when it no longer needs the run's lease,
and ``s`` once it begins to stop. Lease tokens never contain white space.

Heartbeat process to worker: JSON lines, each one of a report ``{"lost": [...], "cancel":
[...]}`` (tokens), ``{"stop": true}`` (someone asked the worker to stop, through the database),
or a log record ``{"log": [level, logger name, message]}`` for the worker to log as its own,
through whatever logging the application set up.
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
from conveyor.worker_info import WorkerRegistration

HOLD = b"+"
RELEASE = b"-"
STOPPING = b"s"


@dataclass(frozen=True)
class PulseConfig:
    #: Opens the worker's store (``Backend.settings``).
    settings: Settings
    #: The worker's row in the registry, beaten every ``registration.beat_interval`` seconds.
    registration: WorkerRegistration
    #: The lease each heartbeat grants.
    lease: float
    #: Seconds between looks for cancel requests, while the worker holds runs.
    cancel_check: float
    #: Seconds between looks at the worker's row for a stop request, whatever it holds.
    stop_check: float

    def encode(self) -> bytes:
        settings = {f.name: getattr(self.settings, f.name) for f in dataclasses.fields(Settings)}
        settings["queue_limits"] = dict(self.settings.queue_limits)
        fields = {
            "settings": settings,
            "registration": dataclasses.asdict(self.registration),
            "lease": self.lease,
            "cancel_check": self.cancel_check,
            "stop_check": self.stop_check,
        }
        return json.dumps(fields).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> PulseConfig:
        fields = json.loads(line)
        registration = fields["registration"]
        queues = registration["queues"]
        return cls(
            settings=Settings(**fields["settings"]),
            registration=WorkerRegistration(
                **{**registration, "queues": None if queues is None else tuple(queues)}
            ),
            lease=fields["lease"],
            cancel_check=fields["cancel_check"],
            stop_check=fields["stop_check"],
        )


def changes(sign: bytes, tokens: Iterable[str]) -> bytes:
    return b"".join(sign + token.encode() + b"\n" for token in tokens)


def report(lost: set[str], cancel: set[str]) -> bytes:
    return json.dumps({"lost": sorted(lost), "cancel": sorted(cancel)}).encode() + b"\n"


STOP_REQUESTED = b'{"stop": true}\n'


def log_record(level: int, name: str, message: str) -> bytes:
    return json.dumps({"log": [level, name, message]}).encode() + b"\n"


@dataclass(frozen=True)
class LogLine:
    level: int
    name: str
    message: str


@dataclass(frozen=True)
class StopRequested:
    pass


def decode(line: bytes) -> LeaseReport | StopRequested | LogLine:
    message: dict[str, Any] = json.loads(line)
    if "log" in message:
        level, name, text = message["log"]
        return LogLine(int(level), str(name), str(text))
    if message.get("stop"):
        return StopRequested()
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
