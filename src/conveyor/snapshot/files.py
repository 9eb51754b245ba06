"""Backup files: the records of a snapshot (records.py) as JSON lines, gzip-compressed when the
file name ends in ``.gz``.

Writing goes to a temporary file beside the target, renamed over it once complete and synced:
a failed backup leaves no file that looks whole. Reading is lazy, one line at a time, and checks
each record before the engine sees it, naming the line of the first damaged one; the restore
around it runs in one transaction, so a damaged line anywhere writes nothing.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from conveyor.errors import SnapshotError
from conveyor.job import JobState
from conveyor.snapshot.records import FIELDS, Record, Summary, check_header, finite_or_infinity

_STATES = frozenset(state.value for state in JobState)
#: Kinds whose times may be infinite (a pause until resumed): the others are written as is.
_TIMED = {
    kind: tuple(name for name, type_ in fields.items() if type_.startswith("time"))
    for kind, fields in FIELDS.items()
    if kind not in ("job", "edge")
}


def _open(path: Path, *, writing: bool, gz: bool) -> IO[str]:
    if gz:
        if writing:
            return gzip.open(path, "wt", encoding="utf-8")
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("w" if writing else "r", encoding="utf-8", newline="\n")


def write_snapshot(records: Iterable[Record], path: str | os.PathLike[str]) -> Summary:
    """Write ``records`` (a header first) to ``path``, replacing it only once all are written."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise SnapshotError(f"cannot write the backup to {target}: no folder {folder}")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    except OSError as exc:
        raise SnapshotError(f"cannot write the backup to {target}: {exc.strerror}") from None
    os.close(handle)
    written = Path(temporary)
    try:
        summary = _write(records, written, target)
        os.replace(written, target)
    except OSError as exc:
        raise SnapshotError(f"cannot write the backup to {target}: {exc.strerror}") from None
    finally:
        written.unlink(missing_ok=True)
    return summary


def _write(records: Iterable[Record], temporary: Path, target: Path) -> Summary:
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
    summary: Summary | None = None
    with _open(temporary, writing=True, gz=target.suffix == ".gz") as out:
        for values in records:
            kind = values["kind"]
            if summary is None:
                summary = Summary(
                    engine=str(values["engine"]), taken_at=float(values["created_at"])
                )
            else:
                summary.counts[kind] = summary.counts.get(kind, 0) + 1
                if kind == "job" and values["state"] == "running":
                    summary.running += 1
                if kind in _TIMED:
                    values = dict(values)
                    for name in _TIMED[kind]:
                        values[name] = finite_or_infinity(values[name])
            try:
                out.write(dumps(values) + "\n")
            except ValueError as exc:
                raise SnapshotError(f"cannot write a {kind} record to {target}: {exc}") from None
    with temporary.open("rb") as synced:
        os.fsync(synced.fileno())
    if summary is None:
        raise SnapshotError("the engine gave no records to back up")
    return summary


def read_snapshot(path: str | os.PathLike[str]) -> Iterator[Record]:
    """The records of the backup at ``path``, each checked as it is read; SnapshotError names
    the line of the first that is not a valid record."""
    source = Path(path)
    if not source.is_file():
        raise SnapshotError(f"no backup file at {source}")
    # The header now, before the caller opens (or creates) the target for a file that is no
    # backup: the records are read as they are written.
    next(_records(source))
    return _records(source)


def _records(source: Path) -> Iterator[Record]:
    try:
        with _open(source, writing=False, gz=source.suffix == ".gz") as lines:
            number = 0
            for number, line in enumerate(lines, 1):
                yield _parse(line, number, source)
            if number == 0:
                raise SnapshotError(f"{source} is empty: not a Conveyor backup")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"cannot read the backup {source}: {exc}") from None


def _parse(line: str, number: int, source: Path) -> Record:
    where = f"{source}, line {number}"
    try:
        values = json.loads(line)
    except ValueError:
        raise SnapshotError(f"{where}: not a JSON object; nothing was restored") from None
    if not isinstance(values, dict):
        raise SnapshotError(f"{where}: not a JSON object; nothing was restored")
    if number == 1:
        try:
            return check_header(values)
        except SnapshotError as exc:
            raise SnapshotError(f"{where}: {exc}") from None
    kind = values.get("kind")
    checks = _CHECKS.get(kind) if isinstance(kind, str) else None
    if checks is None:
        raise SnapshotError(f"{where}: unknown record kind {kind!r}; nothing was restored")
    if len(values) != len(checks) + 1:
        names = set(FIELDS[str(kind)])
        extra, missing = sorted(set(values) - names - {"kind"}), sorted(names - set(values))
        raise SnapshotError(
            f"{where}: a {kind} record with missing fields {missing} or unknown ones {extra}; "
            "nothing was restored"
        )
    for name, check in checks:
        try:
            values[name] = check(values[name])
        except (KeyError, TypeError, ValueError):
            raise SnapshotError(
                f"{where}: field {name!r} of a {kind} record is missing or malformed "
                f"({values.get(name)!r:.80}); nothing was restored"
            ) from None
    if kind == "job" and values["state"] not in _STATES:
        raise SnapshotError(f"{where}: unknown job state {values['state']!r}")
    return values


# --- field checks: each returns the value as the engines take it, or raises ------------------


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError
    return value


def _float(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise TypeError
    return float(value)


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError
    return value


def _json(value: Any) -> str:
    json.loads(_str(value))
    return str(value)


def _time(value: Any) -> float:
    if value == "infinity":
        return math.inf
    return _float(value)


def _nullable(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


_BY_TYPE: dict[str, Callable[[Any], Any]] = {
    "int": _int,
    "float": _float,
    "bool": _bool,
    "str": _str,
    "json": _json,
    "time": _time,
}
_CHECKS: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
    kind: [
        (
            name,
            _nullable(_BY_TYPE[type_[:-1]]) if type_.endswith("?") else _BY_TYPE[type_],
        )
        for name, type_ in fields.items()
    ]
    for kind, fields in FIELDS.items()
}
