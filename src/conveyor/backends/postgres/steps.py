"""Database work written once, run on a sync or an async connection.

An operation that must run on both kinds of connection (enqueue: on the pool's sync
connections, and inside an application's own transaction, sync or async) is written as a
generator that yields the statements it needs and receives their rows back. ``drive`` runs it
on a sync cursor, ``drive_async`` on an async one; the logic in between exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")

Cursor = psycopg.Cursor[Any]
AsyncCursor = psycopg.AsyncCursor[Any]


@dataclass(slots=True)
class Statement:
    """Run ``query``; the reply is its rows ([] for a statement that returns none)."""

    query: str
    params: Mapping[str, Any] | None = None
    #: psycopg's ``prepare``: None follows the connection's policy, False never prepares.
    prepare: bool | None = None
    #: Rows as {column: value} instead of tuples.
    dicts: bool = False


@dataclass(slots=True)
class CopyIn:
    """``COPY ... FROM STDIN`` in text format; reply [].

    ``chunks`` are sent as they are produced, so the server stores one while the next is
    being formatted (two cores at work instead of one after the other). ``meanwhile`` runs once
    the last chunk is sent, while the server is still storing the rows it has not reached: local
    work that would otherwise wait for the COPY to end."""

    query: str
    chunks: Iterable[str]
    meanwhile: Callable[[], None] | None = None


Step = Statement | CopyIn
Steps = Generator[Step, list[Any], T]


def _rows(description: Any, rows: list[Any], dicts: bool) -> list[Any]:
    if not dicts:
        return rows
    names = [column.name for column in description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def drive(cur: Cursor, steps: Steps[T]) -> T:
    """Run ``steps`` on a sync cursor and return what the generator returns."""
    try:
        step = next(steps)
        while True:
            reply: list[Any] = []
            if isinstance(step, CopyIn):
                with cur.copy(step.query) as copy:
                    for chunk in step.chunks:
                        copy.write(chunk)
                    if step.meanwhile is not None:
                        step.meanwhile()
            else:
                cur.execute(step.query, step.params, prepare=step.prepare)
                if cur.description is not None:
                    reply = _rows(cur.description, cur.fetchall(), step.dicts)
            step = steps.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result


async def drive_async(cur: AsyncCursor, steps: Steps[T]) -> T:
    """Run ``steps`` on an async cursor and return what the generator returns."""
    try:
        step = next(steps)
        while True:
            reply: list[Any] = []
            if isinstance(step, CopyIn):
                async with cur.copy(step.query) as copy:
                    for chunk in step.chunks:
                        await copy.write(chunk)
                    if step.meanwhile is not None:
                        step.meanwhile()
            else:
                await cur.execute(step.query, step.params, prepare=step.prepare)
                if cur.description is not None:
                    reply = _rows(cur.description, await cur.fetchall(), step.dicts)
            step = steps.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
