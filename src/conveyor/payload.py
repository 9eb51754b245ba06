"""Strict JSON encoding of job arguments and results.

Only what survives a JSON round trip unchanged is accepted: no NaN/Infinity, no bytes, no
arbitrary objects, no non-string keys, no NUL characters in strings (PostgreSQL cannot store
them and most consumers truncate at them), and no more than ``MAX_DEPTH`` levels of nesting:
Python decodes JSON recursively, so a value encoded near the interpreter's recursion limit
could not be read back by a deeper caller (a worker, ``conveyor jobs list``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import repeat
from operator import add
from typing import Any

from conveyor.errors import InvalidArguments, ResultNotSerializable

_encoder = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))
#: The C encoder behind ``_encoder``, built once: ``JSONEncoder.encode`` builds one per call,
#: which costs five times as much as encoding a job's few arguments. Without markers it does
#: not look for circular references (one ends in RecursionError instead), so that threads can
#: share it; ``dumps_one`` leaves every error to ``dumps``, which names it.
_make_encoder: Any = json.encoder.c_make_encoder  # type: ignore[attr-defined]
_one_shot: Any = _make_encoder and _make_encoder(
    None,
    _encoder.default,
    json.encoder.encode_basestring,
    None,
    ":",
    ",",
    False,
    False,
    False,
)

#: Levels of arrays and objects a value may nest.
MAX_DEPTH = 200


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
        return _dumps(value, what)
    except RecursionError:
        raise InvalidArguments(f"{what} nests deeper than {MAX_DEPTH} levels") from None


def _dumps(value: Any, what: str) -> str:
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
    # Nesting needs an opening bracket per level: only text with many of them is measured.
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(value):
        raise InvalidArguments(f"{what} nests deeper than {MAX_DEPTH} levels")
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


def dumps_one(value: list[Any] | tuple[Any, ...] | dict[str, Any]) -> str | None:
    """``dumps`` of one job's arguments (a list, tuple or dict) on the single enqueue's path,
    or None when ``dumps`` must look at them: to name what is wrong, or because a cheap screen
    is inconclusive. The same screens as ``dumps_many``, for one value."""
    try:
        text = "".join(_one_shot(value, 0)) if _one_shot else _encoder.encode(value)
    except (ValueError, TypeError, RecursionError):
        return None
    if "\\u0000" in text or ("{" in text and _has_non_string_keys(value)):
        return None
    if text.count("[") + text.count("{") > MAX_DEPTH:
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return text


#: Put between the values that ``dumps_many`` encodes together. A NUL is never valid in a
#: payload, so once the batch holds no other NUL escape, each of these marks a boundary.
_BOUNDARY = "\x00"
_BOUNDARY_TEXT = ',"\\u0000",'


def dumps_many(values: Sequence[Any], *, containers: bool = False) -> list[str] | None:
    """``dumps`` of each of ``values``, through one encoder call for all of them (building the
    encoder costs far more than encoding a job's few arguments).

    Returns None when any value needs ``dumps`` of its own: to name what is wrong with it, or
    because the batch screens are inconclusive (a string holding the text ``\\u0000``).
    ``containers``: every value is a list, tuple or dict (a job's arguments), which lets the
    nesting screen pass a batch of flat values without looking at each."""
    if not values:
        return []
    joined: list[Any] = [_BOUNDARY] * (2 * len(values) - 1)
    joined[::2] = values
    try:
        text = _encoder.encode(joined)
    except (ValueError, TypeError, RecursionError):
        return None
    if text.count("\\u0000") != len(values) - 1:
        return None
    try:
        if "{" in text and _any_non_string_key(values, text):
            return None
    except RecursionError:  # nested too deep to walk: dumps says so
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return None
    texts = text[1:-1].split(_BOUNDARY_TEXT)
    if _maybe_too_deep(text, texts, len(values) if containers else 0):
        return None
    return texts


def _maybe_too_deep(text: str, texts: list[str], containers: int) -> bool:
    """Whether a value of the batch might nest deeper than ``MAX_DEPTH``. Such a value opens
    more than ``MAX_DEPTH`` brackets, every other container at least one, and its text is
    longer than twice that: C-speed counts that rule it out for almost every batch."""
    opened = text.count("[") + text.count("{") - 1  # less the batch's own list
    if opened <= MAX_DEPTH + max(containers - 1, 0):
        return False
    return max(map(len, texts)) > 2 * MAX_DEPTH and _many_brackets(texts)


def _many_brackets(texts: list[str]) -> bool:
    """Whether a text has more opening brackets than ``MAX_DEPTH``: only then can its value nest
    too deep (``dumps`` measures it). Counted without a Python loop: this runs on bulk paths."""
    opened = map(add, map(str.count, texts, repeat("[")), map(str.count, texts, repeat("{")))
    most: int = max(opened)
    return most > MAX_DEPTH


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests more than ``MAX_DEPTH`` arrays and objects (without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list | tuple):
            continue
        if depth >= MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list | tuple))
    return False


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
