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
from collections.abc import Callable, Generator, Iterable, Iterator
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
        _sync_folder(folder)
    except OSError as exc:
        raise SnapshotError(f"cannot write the backup to {target}: {exc.strerror}") from None
    finally:
        written.unlink(missing_ok=True)
    return summary


def _sync_folder(folder: Path) -> None:
    """Make the rename durable: a crash right after a backup must not lose the file."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
    peek = _records(source)
    try:
        next(peek)
    finally:
        peek.close()
    return _records(source)


def _records(source: Path) -> Generator[Record, None, None]:
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
    try:
        values = _decode(line)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise _damaged(source, number, "not a JSON object")
    if number == 1:
        try:
            return check_header(values)
        except SnapshotError as exc:
            raise SnapshotError(f"{source}, line 1: {exc}") from None
    kind = values.get("kind")
    specs = _SPECS.get(kind) if isinstance(kind, str) else None
    if specs is None or not isinstance(kind, str):
        raise _damaged(source, number, f"unknown record kind {kind!r}")
    if len(values) != len(specs) + 1:
        names = set(FIELDS[kind])
        extra, missing = sorted(set(values) - names - {"kind"}), sorted(names - set(values))
        raise _damaged(
            source, number, f"a {kind} record with missing fields {missing} or unknown ones {extra}"
        )
    # The hot loop of a restore: one type test a field, a function call only where a value
    # needs more (JSON text, a number that must be finite, a time that may be "infinity").
    for name, allowed, special in specs:
        value = values.get(name, _MISSING)
        if type(value) not in allowed:
            raise _malformed(source, number, kind, name, value)
        if special is not None and value is not None:
            try:
                values[name] = special(value)
            except (TypeError, ValueError):
                raise _malformed(source, number, kind, name, value) from None
    if kind == "job" and values["state"] not in _STATES:
        raise _damaged(source, number, f"unknown job state {values['state']!r}")
    return values


def _damaged(source: Path, number: int, why: str) -> SnapshotError:
    return SnapshotError(f"{source}, line {number}: {why}; nothing was restored")


def _malformed(source: Path, number: int, kind: str, name: str, value: Any) -> SnapshotError:
    shown = "missing" if value is _MISSING else f"malformed ({value!r:.80})"
    return _damaged(source, number, f"field {name!r} of a {kind} record is {shown}")


# --- field checks ------------------------------------------------------------------------------

_decode = json.JSONDecoder().decode
_MISSING = object()


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError
    return float(value)


def _json(value: str) -> str:
    if value not in ("[]", "{}", "null"):
        _decode(value)
    return value


def _time(value: float | str) -> float:
    if isinstance(value, str):
        if value != "infinity":
            raise ValueError
        return math.inf
    return _finite(value)


#: By field type: the Python types a JSON value of it may have, and what checks it further.
_TYPES: dict[str, tuple[frozenset[type], Callable[[Any], Any] | None]] = {
    "int": (frozenset({int}), None),
    "float": (frozenset({int, float}), _finite),
    "bool": (frozenset({bool}), None),
    "str": (frozenset({str}), None),
    "json": (frozenset({str}), _json),
    "time": (frozenset({int, float, str}), _time),
}
_SPECS: dict[str, list[tuple[str, frozenset[type], Callable[[Any], Any] | None]]] = {
    kind: [
        (
            name,
            _TYPES[type_.rstrip("?")][0] | ({type(None)} if type_.endswith("?") else set()),
            _TYPES[type_.rstrip("?")][1],
        )
        for name, type_ in fields.items()
    ]
    for kind, fields in FIELDS.items()
}
