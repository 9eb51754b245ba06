"""SQLite connections done right: WAL, a busy timeout, BEGIN IMMEDIATE for writes, and errors
translated into Conveyor's typed errors naming the file."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from conveyor.backends.sql import load_queries
from conveyor.errors import (
    BackendError,
    ConfigurationError,
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseNotWritable,
    StorageFull,
)

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
Q = load_queries("conveyor.backends.sqlite")

#: RETURNING arrived in 3.35; everything else used here is older.
MIN_SQLITE = (3, 35, 0)
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_MEMORY = ":memory:"


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigurationError(
            f"bad SQLite URL {url!r}: expected sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    path = url[len(prefix) :].split("?", 1)[0]
    if not path:
        raise ConfigurationError(f"bad SQLite URL {url!r}: no file path")
    return path


def translate(exc: sqlite3.Error, path: str) -> BackendError:
    """Turn an sqlite3 error into a typed error that names the file."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    message = str(exc)
    if code in _BUSY_CODES or "locked" in message:
        return DatabaseBusy(f"{path}: the database stayed locked by another process ({message})")
    if code == sqlite3.SQLITE_FULL or "disk is full" in message:
        return StorageFull(f"{path}: the disk is full; nothing was written ({message})")
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or "not a database" in message:
        return DatabaseCorrupt(
            f"{path} is not a usable SQLite database ({message}); "
            "point CONVEYOR_URL at a Conveyor database or a new file"
        )
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
        denied = _permission_problem(path)
        if denied:
            return DatabaseNotWritable(denied)
    if code == sqlite3.SQLITE_CANTOPEN:
        return BackendError(f"cannot open {path}: {message} (does the directory exist?)")
    if code == sqlite3.SQLITE_READONLY:
        return BackendError(f"{path} is read-only: {message}")
    return BackendError(f"{path}: {message}")


def _permission_problem(path: str) -> str | None:
    """Why this process may not write the database at ``path``, if permissions are why: SQLite
    itself only says "unable to open database file" or "readonly database"."""
    if path == _MEMORY:
        return None
    file = Path(path)
    folder = file.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        if not file.exists():
            return f"cannot create database at {path}: folder {folder} is not writable"
        # In WAL mode SQLite creates the -wal and -shm files next to the database.
        return (
            f"cannot open database {path}: folder {folder} is not writable "
            "(SQLite keeps its -wal and -shm files beside the database)"
        )
    if file.exists() and not os.access(file, os.R_OK | os.W_OK):
        return f"cannot open database {path}: the file is not writable by this user"
    return None


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in _BUSY_CODES or "database is locked" in str(exc)


class Connection:
    """One sqlite3 connection guarded by a lock, with transactions that survive contention.

    SQLite allows one writer at a time per file. ``busy_timeout`` makes SQLite wait for the lock
    itself; the retry loop covers the cases where SQLite reports BUSY without waiting (WAL
    recovery, a snapshot that became stale). Callers see DatabaseBusy only once ``lock_timeout``
    is exhausted.
    """

    def __init__(self, path: str, *, synchronous: str, lock_timeout: float) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.lock = threading.RLock()
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise BackendError(
                f"SQLite {sqlite3.sqlite_version} is too old: Conveyor needs 3.35 or newer "
                "(use a Python built against a newer SQLite)"
            )
        if path != _MEMORY:
            parent = Path(path).parent
            if not parent.is_dir():
                raise BackendError(f"cannot open {path}: directory {parent} does not exist")
            if Path(path).is_dir():
                raise BackendError(f"cannot open {path}: it is a directory, not a database file")
        busy_timeout = min(lock_timeout, 5.0)
        # How long a statement waits for another connection's lock, filled in here (PRAGMA
        # takes no parameters): none while a write must not wait (write_now), else as connected.
        self._no_wait = Q["pragma_busy_timeout"].format(ms=0)
        self._wait = Q["pragma_busy_timeout"].format(ms=round(busy_timeout * 1000))
        try:
            self.raw = sqlite3.connect(
                path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,
            )
            #: For single statements under ``lock`` (write_one): one cursor, not one per call.
            self.cursor = self.raw.cursor()
            self._retry(lambda: self.raw.execute(Q["pragma_wal"]).fetchone())
            pragma = f"pragma_synchronous_{synchronous.lower()}"
            self.raw.execute(Q[pragma])
        except sqlite3.Error as exc:
            raise translate(exc, path) from None

    def _retry(self, action: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.001
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE takes the file's write lock up front, so the
        transaction never has to upgrade a read lock (which would fail with BUSY)."""
        with self.lock:
            try:
                self._retry(lambda: self.raw.execute(Q["begin_immediate"]))
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None
            try:
                yield self.raw
                self.raw.execute(Q["commit"])
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc, self.path) from None
                raise

    def write_one(self, action: Callable[[sqlite3.Cursor, A, B], T], a: A, b: B) -> T:
        """A write of one statement, ``action(connection, a, b)``, which SQLite makes a
        transaction of its own: the write lock is taken as the statement starts, as BEGIN
        IMMEDIATE would, without the two statements around it. ``action`` runs again while the
        file is busy: a statement that failed with BUSY wrote nothing."""
        with self.lock:
            try:
                try:
                    return action(self.cursor, a, b)
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise
                # Busy: again until lock_timeout (the deadline only counts from here).
                return self._retry(lambda: action(self.cursor, a, b))
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None

    def write_now(self, action: Callable[[sqlite3.Cursor, A, B], T], a: A, b: B) -> T | None:
        """``write_one`` if it need not wait: None, having written nothing, when another
        thread uses this connection or another connection holds the file's write lock."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            raw = self.raw
            raw.execute(self._no_wait)
            try:
                return action(self.cursor, a, b)
            except sqlite3.Error as exc:
                if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                    return None
                raise translate(exc, self.path) from None
            finally:
                raw.execute(self._wait)
        finally:
            self.lock.release()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-statement reads."""
        with self.lock:
            try:
                self._retry(lambda: self.raw.execute(Q["begin_deferred"]))
                yield self.raw
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from None
            finally:
                self._rollback()

    def _rollback(self) -> None:
        if not self.raw.in_transaction:
            return
        # The error that made us roll back is the one worth reporting; SQLite itself rolls back
        # a transaction it cannot finish when the connection is next used or closed.
        with contextlib.suppress(sqlite3.Error):
            self.raw.execute(Q["rollback"])

    def close(self) -> None:
        with self.lock:
            self.raw.close()
