"""psycopg exceptions turned into Conveyor's typed errors, each naming the database (never the
password) and saying what to do about it."""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout

from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    ConveyorError,
    DatabaseBusy,
    SchemaError,
    StorageFull,
)

#: The transaction was rolled back as a whole and can simply run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock

#: The server ended or refused the session (shutdown, restart, terminated backend).
_GONE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def is_connection_lost(exc: BaseException) -> bool:
    """The connection broke (or could not be made): the transaction did not commit."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate or ""
    return state == "" or state.startswith("08") or state in _GONE_SQLSTATES


def translate(exc: BaseException, target: str) -> ConveyorError:
    """A typed error for ``exc``, a psycopg or pool exception, raised while talking to
    ``target`` (a description such as "database 'jobs' on db1:5432 (schema conveyor)")."""
    if isinstance(exc, ConveyorError):
        return exc
    if isinstance(exc, PoolTimeout):
        return DatabaseBusy(
            f"{target}: no pooled connection became free in time ({exc}); raise "
            "postgres_pool_max_size or postgres_connect_timeout, or check for stuck callers"
        )
    if not isinstance(exc, psycopg.Error):
        return BackendError(f"{target}: {exc}")
    state = exc.sqlstate or ""
    message = _first_line(exc)
    if is_connection_lost(exc) or state.startswith("28") or state == "3D000":
        return BackendUnavailable(f"cannot reach PostgreSQL {target}: {message}")
    if state in ("53100",):  # disk_full
        return StorageFull(f"{target}: the server's disk is full; nothing was written ({message})")
    if state.startswith("53"):  # insufficient resources: out of memory, too many connections
        return BackendUnavailable(f"PostgreSQL {target} is out of resources: {message}")
    if state in ("55P03", "57014") or state in RETRYABLE_SQLSTATES:
        # lock_not_available (lock_timeout), query_canceled (statement_timeout), contention
        return DatabaseBusy(f"{target}: the database stayed busy ({message})")
    if state in ("42P01", "3F000"):  # undefined_table, invalid_schema_name
        return SchemaError(
            f"{target} has no Conveyor schema ({message}): run `conveyor schema migrate`"
        )
    if state == "25006":  # read_only_sql_transaction
        return BackendError(f"{target} is read-only (a standby?): {message}")
    return BackendError(f"{target}: {message}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
