"""Strict JSON encoding of job arguments and results.

Only what survives a JSON round trip unchanged is accepted: no NaN/Infinity, no bytes, no
arbitrary objects, no non-string keys, no NUL characters in strings (PostgreSQL cannot store
them and most consumers truncate at them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import repeat
from typing import Any

from conveyor.errors import InvalidArguments, ResultNotSerializable

_encoder = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def _find_problem(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return f"{path} contains a NUL character" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}"
            problem = _find_problem(key, f"{path} key") or _find_problem(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _find_problem(item, f"{path}[{index}]")
            if problem:
                return problem
    return None


def dumps(value: Any, what: str = "value") -> str:
    """Encode ``value`` as compact JSON or raise InvalidArguments naming the problem."""
    try:
        text = _encoder.encode(value)
    except ValueError as exc:  # NaN / Infinity, circular references
        raise InvalidArguments(f"{what} is not valid JSON: {exc}") from None
    except TypeError as exc:  # bytes, sets, arbitrary objects
        raise InvalidArguments(f"{what} is not JSON: {exc}") from None
    # Cheap C-level screen first; the exact walk runs only when something looks suspicious.
    # Only objects can hide non-string keys (json silently turns 1 into "1").
    if "\\u0000" in text or ("{" in text and _has_non_string_keys(value)):
        problem = _find_problem(value, what)
        if problem:
            raise InvalidArguments(problem)
    if not text.isascii():
        # Lone surrogates ("\ud800") encode to JSON but not to UTF-8: no store can keep them.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise InvalidArguments(
                f"{what} contains a lone surrogate {bad!r}, which is not valid Unicode"
            ) from None
    return text


#: Put between the values that ``dumps_many`` encodes together. A NUL is never valid in a
#: payload, so once the batch holds no other NUL escape, each of these marks a boundary.
_BOUNDARY = "\x00"
_BOUNDARY_TEXT = ',"\\u0000",'


def dumps_many(values: Sequence[Any]) -> list[str] | None:
    """``dumps`` of each of ``values``, through one encoder call for all of them (building the
    encoder costs far more than encoding a job's few arguments).

    Returns None when any value needs ``dumps`` of its own: to name what is wrong with it, or
    because the batch screens are inconclusive (a string holding the text ``\\u0000``)."""
    if not values:
        return []
    joined: list[Any] = [_BOUNDARY] * (2 * len(values) - 1)
    joined[::2] = values
    try:
        text = _encoder.encode(joined)
    except (ValueError, TypeError):
        return None
    if text.count("\\u0000") != len(values) - 1:
        return None
    if "{" in text and _any_non_string_key(values, text):
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return text[1:-1].split(_BOUNDARY_TEXT)


def _any_non_string_key(values: Sequence[Any], text: str) -> bool:
    """Whether a dict in ``values``, or inside one, has a key that is not a string. Every dict
    opens one object in ``text`` (and strings may hold more braces): when ``text`` opens no more
    objects than ``values`` holds dicts, none is nested, and their own keys tell; otherwise
    the values are walked."""
    dicts = [value for value in values if isinstance(value, dict)]
    if text.count("{") > len(dicts):
        return any(_has_non_string_keys(value) for value in values)
    return not all(all(map(isinstance, d, repeat(str))) for d in dicts)


def _has_non_string_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return any(not isinstance(k, str) or _has_non_string_keys(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(isinstance(v, dict | list | tuple) and _has_non_string_keys(v) for v in value)
    return False


def encode_result(value: Any, task: str) -> str:
    """A task's result as JSON, or ResultNotSerializable naming the task and the offending type
    (a deterministic failure: the worker dead-letters the job instead of retrying it)."""
    try:
        return dumps(value, f"result of {task}")
    except InvalidArguments as exc:
        raise ResultNotSerializable(task, _offending_type(value), str(exc)) from None


def _offending_type(value: Any) -> str:
    found = _find_bad_type(value)
    return found if found is not None else type(value).__qualname__


def _find_bad_type(value: Any) -> str | None:
    """The name of the first type inside ``value`` that JSON cannot hold as it is, if any."""
    if isinstance(value, float):
        return None if math.isfinite(value) else "float (NaN or infinity)"
    if value is None or isinstance(value, str | int | bool):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{type(key).__qualname__} key"
            found = _find_bad_type(item)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for item in value:
            found = _find_bad_type(item)
            if found is not None:
                return found
        return None
    return type(value).__qualname__


def loads(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)
