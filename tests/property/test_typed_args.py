"""The compiled checkers of conveyor.jsontypes against a reference written the plain way, for
random type expressions and random JSON values (and values built to fit the expression)."""

from __future__ import annotations

from typing import Any, Literal, Union

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.jsontypes import Compiler, Mismatch

texts = st.text(max_size=5)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
literal_values = st.lists(
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["a", "b"]),
    min_size=1,
    max_size=3,
    unique_by=lambda v: (type(v), v),
)

# A type expression as a tree: ("int",), ("list", item), ("union", a, b), ("literal", values) ...
leaves = st.sampled_from([("int",), ("float",), ("str",), ("bool",), ("none",), ("any",)])
expressions = st.recursive(
    leaves | literal_values.map(lambda values: ("literal", tuple(values))),
    lambda inner: (
        st.tuples(st.just("list"), inner)
        | st.tuples(st.just("dict"), inner)
        | st.tuples(st.just("tuple"), inner, inner)
        | st.tuples(st.just("union"), inner, inner)
    ),
    max_leaves=5,
)

SCALARS: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool, "none": None}


def to_type(expr: tuple[Any, ...]) -> Any:
    kind = expr[0]
    if kind in SCALARS:
        return SCALARS[kind]
    if kind == "any":
        return Any
    if kind == "literal":
        return Literal[expr[1]]
    if kind == "list":
        return list[to_type(expr[1])]  # type: ignore[misc]
    if kind == "dict":
        return dict[str, to_type(expr[1])]  # type: ignore[misc]
    if kind == "tuple":
        return tuple[to_type(expr[1]), to_type(expr[2])]  # type: ignore[misc]
    return Union[to_type(expr[1]), to_type(expr[2])]  # noqa: UP007


def fits(expr: tuple[Any, ...], value: Any) -> bool:
    """The reference: what each form takes, written out."""
    kind = expr[0]
    if kind == "any":
        return True
    if kind == "int":
        return type(value) is int
    if kind == "float":
        return type(value) in (int, float)
    if kind == "str":
        return type(value) is str
    if kind == "bool":
        return type(value) is bool
    if kind == "none":
        return value is None
    if kind == "literal":
        return any(type(value) is type(v) and value == v for v in expr[1])
    if kind == "list":
        return isinstance(value, list) and all(fits(expr[1], v) for v in value)
    if kind == "dict":
        return isinstance(value, dict) and all(fits(expr[1], v) for v in value.values())
    if kind == "tuple":
        return (
            isinstance(value, list)
            and len(value) == 2
            and fits(expr[1], value[0])
            and fits(expr[2], value[1])
        )
    return fits(expr[1], value) or fits(expr[2], value)


def fitting(expr: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """Values built to fit ``expr``."""
    kind = expr[0]
    if kind == "any":
        return json_values
    if kind == "int":
        return st.integers()
    if kind == "float":
        return st.floats(allow_nan=False) | st.integers()
    if kind == "str":
        return texts
    if kind == "bool":
        return st.booleans()
    if kind == "none":
        return st.none()
    if kind == "literal":
        return st.sampled_from(expr[1])
    if kind == "list":
        return st.lists(fitting(expr[1]), max_size=3)
    if kind == "dict":
        return st.dictionaries(texts, fitting(expr[1]), max_size=3)
    if kind == "tuple":
        return st.tuples(fitting(expr[1]), fitting(expr[2])).map(list)
    return fitting(expr[1]) | fitting(expr[2])


def accepts(tp: Any, value: Any) -> bool:
    node = Compiler().compile(tp)
    if node is None:
        return True
    try:
        encoded = node.encode(value)
    except Mismatch:
        return False
    assert encoded == value, "plain JSON types keep the value as it is"
    return True


@settings(max_examples=400)
@given(expr=expressions, data=st.data())
def test_the_checker_agrees_with_the_reference(expr: tuple[Any, ...], data: st.DataObject) -> None:
    value = data.draw(json_values | fitting(expr), label="value")
    assert accepts(to_type(expr), value) == fits(expr, value), (to_type(expr), value)


@settings(max_examples=200)
@given(expr=expressions, data=st.data())
def test_values_built_to_fit_are_accepted(expr: tuple[Any, ...], data: st.DataObject) -> None:
    value = data.draw(fitting(expr), label="value")
    assert fits(expr, value)
    assert accepts(to_type(expr), value), (to_type(expr), value)
