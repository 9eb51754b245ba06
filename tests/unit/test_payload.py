"""payload.dumps: strict JSON, or a typed error naming the problem."""

from __future__ import annotations

import datetime
import decimal
import json
import math
from typing import Any

import pytest

from conveyor import payload
from conveyor.errors import EnqueueError, InvalidArguments


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**62),
        1.5,
        "",
        "plain",
        [],
        {},
        [1, "a", None, {"nested": [True, False, {"deep": 1.25}]}],
        {"k": {"l": ["m", {"n": None}]}},
    ],
)
def test_plain_json_round_trips(value: Any) -> None:
    text = payload.dumps(value)
    assert json.loads(text) == value
    assert payload.loads(text) == value


def test_output_is_compact() -> None:
    assert payload.dumps({"a": [1, 2]}) == '{"a":[1,2]}'


def test_unicode_is_kept_as_is() -> None:
    value = {"naïve": "héllo wörld ✓ 日本語 🚀", "emoji🙂": ["Ωmega"]}
    text = payload.dumps(value)
    assert "日本語" in text
    assert "🚀" in text
    assert json.loads(text) == value


def test_loads_of_none_is_none() -> None:
    assert payload.loads(None) is None
    assert payload.loads(b"[1]") == [1]


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, [1, math.nan], {"x": {"y": [math.inf]}}],
    ids=["nan", "inf", "-inf", "nan-in-list", "inf-nested"],
)
def test_nan_and_infinity_are_refused(value: Any) -> None:
    with pytest.raises(InvalidArguments) as caught:
        payload.dumps(value, "arguments of tests.task")
    assert "arguments of tests.task" in str(caught.value)
    assert "not valid JSON" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        b"bytes",
        bytearray(b"x"),
        {1, 2},
        frozenset({"a"}),
        object(),
        [1, {"when": datetime.datetime(2024, 1, 1)}],
        decimal.Decimal("1.5"),
        complex(1, 2),
    ],
    ids=["bytes", "bytearray", "set", "frozenset", "object", "datetime", "decimal", "complex"],
)
def test_non_json_types_are_refused(value: Any) -> None:
    with pytest.raises(InvalidArguments) as caught:
        payload.dumps(value, "arguments of tests.task")
    assert "arguments of tests.task is not JSON" in str(caught.value)


def test_circular_structures_are_refused() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(InvalidArguments):
        payload.dumps(looped)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("a\x00b", "value contains a NUL"),
        (["ok", "bad\x00"], "value[1] contains a NUL"),
        ({"k": ["x", {"deep": "\x00"}]}, "value.k[1].deep contains a NUL"),
        ({"ke\x00y": 1}, "value key contains a NUL"),
        ({"outer": {"\x00": 1}}, "value.outer key contains a NUL"),
    ],
)
def test_nul_characters_are_refused_with_their_place(value: Any, where: str) -> None:
    with pytest.raises(InvalidArguments) as caught:
        payload.dumps(value)
    assert where in str(caught.value)


def test_an_escaped_nul_looking_text_is_fine() -> None:
    # The backslash sequence "\u0000" typed as six characters is not a NUL.
    value = ["\\u0000"]
    assert json.loads(payload.dumps(value)) == value


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {"ok": {2.5: "b"}}, [{"x": 1}, {None: 1}], {True: 1}, {("t",): 1}],
    ids=["int", "float-nested", "none-in-list", "bool", "tuple"],
)
def test_non_string_keys_are_refused(value: Any) -> None:
    # json would silently turn 1 into "1": the job would see different arguments.
    with pytest.raises(InvalidArguments):
        payload.dumps(value)


def test_non_string_key_error_names_the_key() -> None:
    with pytest.raises(InvalidArguments) as caught:
        payload.dumps({"a": {7: "x"}}, "keyword arguments of t")
    assert "keyword arguments of t.a has a non-string key 7" in str(caught.value)


@pytest.mark.parametrize("text", ["\ud800", "ok \udfff", "\udc80abc"])
def test_lone_surrogates_are_refused(text: str) -> None:
    # They cannot be encoded as UTF-8, so no store can keep them.
    with pytest.raises(InvalidArguments):
        payload.dumps([text])
    with pytest.raises(InvalidArguments):
        payload.dumps({text: 1})


def test_invalid_arguments_is_an_enqueue_error() -> None:
    with pytest.raises(EnqueueError):
        payload.dumps(b"x")
    with pytest.raises(ValueError):
        payload.dumps(math.nan)


# --- dumps_many: a batch through one encoder call ----------------------------------------------

PLAIN_VALUES: list[Any] = [
    [],
    {},
    [1, "a", None, True, 2.5, -(2**62)],
    ("tuple", 1),
    {"k": {"l": ["m", {"n": None}]}, "x": [1, {"y": 2}]},
    ["naïve ✓ 日本語 🚀", {"emoji🙂": "Ωmega"}],
    ['a,"\\u0001\\\\', "{[}]", ",", '","'],
    {"nested": [[[]], [{}]]},
]


def test_dumps_many_is_dumps_of_each() -> None:
    assert payload.dumps_many(PLAIN_VALUES) == [payload.dumps(v) for v in PLAIN_VALUES]
    assert payload.dumps_many([[7]]) == ["[7]"]
    assert payload.dumps_many([]) == []


@pytest.mark.parametrize(
    "bad",
    [
        math.nan,
        [1, math.inf],
        b"bytes",
        {"when": datetime.datetime(2024, 1, 1)},
        ["a\x00b"],
        {"ke\x00y": 1},
        [{1: "a"}],
        {"ok": {2.5: "b"}},
        {None: 1},
        ["\ud800"],
        {"\udfff": 1},
    ],
    ids=[
        "nan",
        "inf",
        "bytes",
        "datetime",
        "nul",
        "nul-key",
        "int-key-nested",
        "float-key-nested",
        "none-key-top",
        "surrogate",
        "surrogate-key",
    ],
)
def test_dumps_many_leaves_any_bad_value_to_dumps(bad: Any) -> None:
    # None sends every value of the batch through dumps, which names what is wrong.
    values = [[1], bad, {"a": 2}]
    assert payload.dumps_many(values) is None
    with pytest.raises(InvalidArguments):
        payload.dumps(bad)


def test_dumps_many_leaves_circular_values_to_dumps() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    assert payload.dumps_many([[1], looped]) is None


def test_dumps_many_is_inconclusive_about_text_that_looks_like_its_boundary() -> None:
    # Six characters, not a NUL: valid, but the batch cannot tell them from its boundaries.
    looks_alike = ["\\u0000", ',"\\u0000",']
    assert payload.dumps_many([[1], looks_alike]) is None
    assert json.loads(payload.dumps(looks_alike)) == looks_alike
