"""How this backend's connections read json and jsonb columns (text format).

psycopg's own loader hands the bytes to ``json.loads``, which sniffs their encoding first; a
claim decodes the arguments and keyword arguments of every job it returns, so at ten thousand
jobs a second that is a measurable part of the worker's CPU. The server always sends UTF-8, and
most jobs have no arguments or no keyword arguments: those two values are read without parsing.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import Connection
from psycopg.adapt import Buffer, Loader

_decode = json.JSONDecoder().decode


class FastJsonLoader(Loader):
    def load(self, data: Buffer) -> Any:
        if len(data) == 2:
            if data == b"[]":
                return []
            if data == b"{}":
                return {}
        return _decode(bytes(data).decode("utf-8"))


def use_fast_json(conn: Connection[Any]) -> None:
    conn.adapters.register_loader("json", FastJsonLoader)
    conn.adapters.register_loader("jsonb", FastJsonLoader)
