"""payload.dumps_many against payload.dumps, for any batch of plain JSON values."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import payload

# Text a store can keep: no NUL, no lone surrogates.
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(values=st.lists(json_values | st.tuples(scalars, scalars), max_size=8))
def test_a_batch_encodes_each_value_as_dumps_does(values: list[Any]) -> None:
    single = [payload.dumps(value) for value in values]
    batch = payload.dumps_many(values)
    if batch is None:
        # Only allowed when a string spells out the escape the batch puts between its values.
        assert any("\\u0000" in text for text in single)
    else:
        assert batch == single


@settings(max_examples=200)
@given(
    values=st.lists(json_values, min_size=1, max_size=6),
    bad=st.sampled_from([float("nan"), b"x", "nul\x00", "\udc80", {1: "int key"}]),
    where=st.integers(min_value=0),
    nested=st.booleans(),
)
def test_a_batch_with_a_bad_value_is_left_to_dumps(
    values: list[Any], bad: Any, where: int, nested: bool
) -> None:
    values.insert(where % (len(values) + 1), {"inner": [bad]} if nested else [bad])
    assert payload.dumps_many(values) is None
