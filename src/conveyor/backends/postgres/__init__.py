# First: psycopg's own version lookups are answered before it is imported (see versions.py).
from conveyor.backends.postgres import versions  # noqa: F401
from conveyor.backends.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
