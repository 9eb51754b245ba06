"""Arrays for the hot statements' parameters, written as PostgreSQL array literals.

The queries cast their array parameters (``%(ids)b::int8[]``): handed a string, the server
parses it as an array literal, the same array psycopg would have sent for a list. psycopg dumps
a list element by element in Python (about 0.8 µs each); finishing a batch of outcomes sends
three lists per job, which at ten thousand jobs a second is a few percent of a core. A literal
is one join.
"""

from __future__ import annotations

from collections.abc import Iterable


def int_array(values: Iterable[int]) -> str:
    # int() keeps anything but digits out of the literal.
    return "{" + ",".join([str(int(v)) for v in values]) + "}"


def text_array(values: Iterable[str | None]) -> str:
    """Every element quoted (only ``"`` and ``\\`` need escaping inside quotes); None is NULL."""
    return "{" + ",".join([_quoted(v) for v in values]) + "}"


def _quoted(value: str | None) -> str:
    if value is None:
        return "NULL"
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + value + '"'
