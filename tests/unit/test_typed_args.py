"""Typed arguments (conveyor.typecheck): hints checked at enqueue with a typed error naming the
task, the place in the argument and the expected type, nothing written; dataclasses, models,
enums and tuples stored as JSON and rebuilt for the run."""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NewType, NotRequired, Required, TypedDict

import pydantic
import pytest

from conveyor import Conveyor, JobContext, Task
from conveyor.errors import ArgumentsMismatch, InvalidArguments
from conveyor.task import NonRetryable, _build_batch
from conveyor.worker.executor import rebuilt_arguments

# --- types the tests use (module level: string annotations resolve from the module) ----------


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


@dataclasses.dataclass
class Line:
    start: Point
    end: Point
    label: str | None = None


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


class Address(TypedDict):
    street: str
    number: int


class Extra(TypedDict, total=False):
    note: str
    tags: Required[list[str]]


class Person(TypedDict):
    name: str
    age: NotRequired[int]
    address: Address


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(pydantic.BaseModel):
    name: str
    price: float


class Order(pydantic.BaseModel):
    id: int
    items: list[Item]
    note: str = pydantic.Field(default="", alias="comment")


UserId = NewType("UserId", int)


class Opaque:
    """A class no JSON value can be: hints naming it stay unchecked."""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Conveyor]:
    with Conveyor(f"sqlite:///{tmp_path}/x.db") as conveyor:
        yield conveyor


def nothing_written(app: Conveyor) -> bool:
    return dict(app.stats()) == {}


def register(app: Conveyor, fn: Callable[..., Any], **options: Any) -> Task[..., Any]:
    return app.task(name=f"t.{fn.__name__}", **options)(fn)


def refused(task: Task[..., Any], *args: Any, **kwargs: Any) -> str:
    """The message of the ArgumentsMismatch that enqueueing raises; nothing may be written."""
    before = dict(task.app.stats())
    with pytest.raises(ArgumentsMismatch) as caught:
        task.enqueue(*args, **kwargs)
    assert dict(task.app.stats()) == before
    message = str(caught.value)
    assert f"task {task.name}:" in message
    return message


# --- scalars -----------------------------------------------------------------------------------


def test_scalars(app: Conveyor) -> None:
    def add(x: int, y: float, s: str, b: bool, n: None) -> None: ...

    task = register(app, add)
    assert task.enqueue(1, 2, "s", True, None).args == [1, 2, "s", True, None]
    assert task.enqueue(1, 2.5, "", False, None).args == [1, 2.5, "", False, None]
    assert refused(task, "1", 2, "s", True, None) == (
        "task t.add: argument x must be int, got str '1'"
    )
    assert "argument x must be int, got float 1.0" in refused(task, 1.0, 2, "s", True, None)
    assert "argument y must be float, got str" in refused(task, 1, "2", "s", True, None)
    assert "argument s must be str, got int 3" in refused(task, 1, 2, 3, True, None)
    assert "argument b must be bool, got int 1" in refused(task, 1, 2, "s", 1, None)
    assert "argument n must be None, got int 0" in refused(task, 1, 2, "s", True, 0)
    assert "argument y must be float" in refused(task, 1, y=None, s="s", b=True, n=None)
    # Arguments that do not bind say so first.
    assert "arguments do not match task t.add" in refused(task, "a")


def test_bool_is_not_a_number(app: Conveyor) -> None:
    """As in JSON Schema: ``True`` is refused where a number is expected."""

    def count(n: int, ratio: float) -> None: ...

    task = register(app, count)
    assert "argument n must be int, got bool True" in refused(task, True, 1.0)
    assert "argument ratio must be float, got bool False" in refused(task, 1, False)
    assert task.enqueue(1, 1).args == [1, 1], "an int is a float"


def test_unannotated_any_and_object_take_any_json(app: Conveyor) -> None:
    def loose(a, b: Any, c: object) -> None:  # type: ignore[no-untyped-def]
        ...

    task = register(app, loose)
    assert task.types is None, "nothing to check: such a task pays nothing"
    assert task.enqueue([1], {"k": None}, "x").args == [[1], {"k": None}, "x"]
    with pytest.raises(InvalidArguments):  # still JSON, as before
        task.enqueue(b"x", 1, 2)


# --- containers ------------------------------------------------------------------------------


def test_lists_and_sequences_with_the_path_to_the_bad_item(app: Conveyor) -> None:
    def totals(xs: list[int], rows: Sequence[list[float]], any_list: list) -> None:  # type: ignore[type-arg]
        ...

    task = register(app, totals)
    assert task.enqueue([1, 2], [[1.5], []], ["x", 1]).args == [[1, 2], [[1.5], []], ["x", 1]]
    stored = app.get_job(task.enqueue((1, 2), ([1],), []).id)
    assert stored.args == [[1, 2], [[1]], []], "tuples are arrays"
    assert "argument xs[2] must be int, got str 'c'" in refused(task, [1, 2, "c"], [], [])
    assert "argument rows[1][0] must be float, got NoneType None" in refused(
        task, [], [[1], [None]], []
    )
    assert "argument xs must be list[int], got str 'ab'" in refused(task, "ab", [], [])
    assert "argument any_list must be list" in refused(task, [], [], {"a": 1})


def test_dicts_and_mappings(app: Conveyor) -> None:
    def config(d: dict[str, int], m: Mapping[str, list[str]], plain: dict) -> None:  # type: ignore[type-arg]
        ...

    task = register(app, config)
    assert task.enqueue({"a": 1}, {"k": ["v"]}, {"x": None}).args == [
        {"a": 1},
        {"k": ["v"]},
        {"x": None},
    ]
    assert "argument d.b must be int, got str 'x'" in refused(task, {"a": 1, "b": "x"}, {}, {})
    assert "argument m['not an id'][0] must be str" in refused(task, {}, {"not an id": [1]}, {})
    assert "argument d must be dict[str, int], got list" in refused(task, [1], {}, {})
    assert "argument plain must be dict" in refused(task, {}, {}, [])
    assert "has a key that is not a string: 1" in refused(task, {1: 1}, {}, {})


def test_tuples_are_arrays_and_come_back_as_tuples(app: Conveyor) -> None:
    def pairs(pair: tuple[int, str], many: tuple[float, ...]) -> None: ...

    task = register(app, pairs)
    job = app.get_job(task.enqueue((1, "a"), [1.0, 2]).id)
    assert job.args == [[1, "a"], [1.0, 2]]
    assert "argument pair must be tuple[int, str], got list [1]" in refused(task, [1], [])
    assert "argument pair[1] must be str, got int 2" in refused(task, (1, 2), [])
    assert "argument many[1] must be float" in refused(task, (1, "a"), [1.0, "x"])
    assert task.types is not None
    args, _ = task.types.decode(job.args, job.kwargs)
    assert args == [(1, "a"), (1.0, 2)]


def test_literals_compare_type_and_value(app: Conveyor) -> None:
    def pick(mode: Literal["fast", "slow", 1, None]) -> None: ...

    task = register(app, pick)
    for good in ("fast", "slow", 1, None):
        task.enqueue(good)
    assert "argument mode must be Literal['fast', 'slow', 1, None], got bool True" in refused(
        task, True
    )
    assert "got str 'medium'" in refused(task, "medium")
    assert "got list [1]" in refused(task, [1])


def test_unions_and_optionals(app: Conveyor) -> None:
    def either(a: int | str, b: list[int] | None = None, c: float | list[str] = 0.0) -> None: ...

    task = register(app, either)
    task.enqueue(1)
    task.enqueue("x", None, ["a"])
    task.enqueue("x", [1], 2)
    assert "argument a must be int | str, got float 1.5" in refused(task, 1.5)
    # With one member besides None, the error is that member's, at its own place.
    assert "argument b[1] must be int, got str 'x'" in refused(task, 1, [1, "x"])
    assert "argument b must be list[int] | None, got str" in refused(task, 1, "x")
    assert "argument c must be float | list[str], got list [1]" in refused(task, 1, None, [1])


def test_typed_dicts(app: Conveyor) -> None:
    def visit(person: Person, extra: Extra) -> None: ...

    task = register(app, visit)
    home: Address = {"street": "Main", "number": 1}
    task.enqueue({"name": "ann", "address": home}, {"tags": []})
    task.enqueue({"name": "bob", "age": 3, "address": home}, {"tags": ["x"], "note": "n"})
    assert "argument person is missing key 'name' (TypedDict Person)" in refused(
        task, {"address": home}, {"tags": []}
    )
    assert "argument person.address.number must be int, got str '1'" in refused(
        task, {"name": "c", "address": {"street": "s", "number": "1"}}, {"tags": []}
    )
    assert "argument person has a key 'nick' that TypedDict Person does not declare" in refused(
        task, {"name": "c", "address": home, "nick": "x"}, {"tags": []}
    )
    # total=False, with a Required key; NotRequired written as a string counts too.
    assert "argument extra is missing key 'tags'" in refused(
        task, {"name": "c", "address": home}, {"note": "n"}
    )
    assert "argument person.age must be int" in refused(
        task, {"name": "c", "age": None, "address": home}, {"tags": []}
    )
    assert "argument person must be Person, got list" in refused(task, [], {"tags": []})


def test_dataclasses_as_instances_or_objects_rebuilt_for_the_run(app: Conveyor) -> None:
    def draw(line: Line, points: list[Point]) -> None: ...

    task = register(app, draw)
    job = task.enqueue(Line(Point(1, 2), Point(3)), [{"x": 5}])
    assert job.args == [
        {"start": {"x": 1, "y": 2}, "end": {"x": 3, "y": 0}, "label": None},
        [{"x": 5}],
    ]
    assert app.get_job(job.id).args == job.args, "the returned job shows what was written"
    assert task.types is not None
    args, kwargs = task.types.decode(job.args, job.kwargs)
    assert args == [Line(Point(1, 2), Point(3, 0)), [Point(5)]]
    assert kwargs == {}

    # A dataclass does not check its fields: the checker does, instance or object alike.
    bad_instance = Line(Point(1, 2), Point("3"))  # type: ignore[arg-type]
    assert "argument line.end.x must be int, got str '3'" in refused(task, bad_instance, [])
    assert "argument points[0] is missing field 'x' of Point" in refused(
        task, Line(Point(1), Point(2)), [{"y": 1}]
    )
    assert "argument points[0] has a key 'z' that Point does not have" in refused(
        task, Line(Point(1), Point(2)), [{"x": 1, "z": 1}]
    )
    assert "argument line must be Line (or a JSON object of its fields), got str" in refused(
        task, "line", []
    )


def test_recursive_dataclass(app: Conveyor) -> None:
    def walk(tree: Tree) -> None: ...

    task = register(app, walk)
    job = task.enqueue(Tree(1, [Tree(2, [Tree(3)])]))
    assert task.types is not None
    assert task.types.decode(job.args, {})[0] == [Tree(1, [Tree(2, [Tree(3)])])]
    assert "argument tree.children[0].children[0].value must be int" in refused(
        task, {"value": 1, "children": [{"value": 2, "children": [{"value": "x"}]}]}
    )


def test_enums_are_stored_as_their_values(app: Conveyor) -> None:
    def paint(color: Color) -> None: ...

    task = register(app, paint)
    assert task.enqueue(Color.RED).args == ["red"]
    assert task.enqueue("blue").args == ["blue"]
    assert "argument color must be Color (one of 'red', 'blue'), got str 'green'" in refused(
        task, "green"
    )
    assert task.types is not None
    assert task.types.decode(["red"], {}) == ([Color.RED], {})


def test_annotated_and_newtype_check_what_they_wrap(app: Conveyor) -> None:
    def user(uid: UserId, label: Annotated[str, "doc"]) -> None: ...

    task = register(app, user)
    task.enqueue(UserId(3), "x")
    assert "argument uid must be int" in refused(task, "3", "x")
    assert "argument label must be str" in refused(task, 3, 4)


# --- signatures ------------------------------------------------------------------------------


def test_star_args_kwargs_keyword_only_and_defaults(app: Conveyor) -> None:
    def many(a: int, /, b: str = "b", *rest: float, flag: bool = False, **extra: int) -> None: ...

    task = register(app, many)
    task.enqueue(1)  # defaults are not checked: they are not stored
    task.enqueue(1, "x", 1.5, 2, flag=True, n=3)
    assert "argument rest[1] must be float, got str 'x'" in refused(task, 1, "b", 1.0, "x")
    assert "argument flag must be bool" in refused(task, 1, flag=1)
    assert "argument extra['n'] must be int, got str" in refused(task, 1, n="3")
    assert "argument b must be str" in refused(task, 1, b=2)
    # A keyword named like the positional-only parameter goes to **extra.
    assert "argument extra['a'] must be int" in refused(task, 1, a="x")


def test_the_job_context_is_not_an_argument(app: Conveyor) -> None:
    def with_ctx(ctx: JobContext, n: int) -> None: ...

    task = register(app, with_ctx, pass_context=True)
    task.enqueue(1)
    assert "argument n must be int" in refused(task, "1")


def test_enqueue_by_name_is_checked(app: Conveyor) -> None:
    def add(x: int, y: int) -> None: ...

    register(app, add)
    with pytest.raises(ArgumentsMismatch, match="argument y must be int"):
        app.enqueue("t.add", [1, "2"])
    assert nothing_written(app)


def test_typecheck_false_turns_checks_and_rebuilds_off(app: Conveyor) -> None:
    def add(x: int, p: Point) -> None: ...

    task = register(app, add, typecheck=False)
    assert task.types is None
    assert task.enqueue("a", {"anything": 1}).args == ["a", {"anything": 1}]


# --- hints that cannot be checked, and hints resolved late ------------------------------------


def test_hints_the_checker_cannot_express_are_unchecked(app: Conveyor) -> None:
    def odd(o: Opaque, ctx: JobContext, n: int) -> None: ...

    task = register(app, odd)  # registering never fails because of a hint
    task.enqueue({"x": 1}, "anything", 2)
    assert "argument n must be int" in refused(task, 1, 2, "3")


def test_a_name_defined_after_the_task_is_resolved_on_first_use(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def later(p: DefinedLater, q: NeverDefined) -> None:  # type: ignore[name-defined]  # noqa: F821
        ...

    task = register(app, later)
    # Defined once the task is registered, as a class further down the module would be.
    monkeypatch.setattr(sys.modules[__name__], "DefinedLater", Point, raising=False)
    assert "argument p.x must be int" in refused(task, {"x": "1"}, 1)
    job = task.enqueue(Point(1), "q is unchecked: its name is still undefined")
    assert task.types is not None
    assert task.types.decode(job.args, {})[0][0] == Point(1)


def test_a_dataclass_field_naming_something_undefined_is_unchecked_alone(
    app: Conveyor,
) -> None:
    def draw(h: HalfKnown) -> None: ...

    task = register(app, draw)
    job = task.enqueue({"known": 1, "unknown": "anything"})
    assert "argument h.known must be int" in refused(task, {"known": "1", "unknown": 2})
    assert task.types is not None
    assert task.types.decode(job.args, {})[0] == [HalfKnown(1, "anything")]


@dataclasses.dataclass
class HalfKnown:
    known: int
    unknown: Undefined  # type: ignore[name-defined]  # noqa: F821


# --- Pydantic ---------------------------------------------------------------------------------


def test_pydantic_models_are_validated_dumped_and_rebuilt(app: Conveyor) -> None:
    def place(order: Order, when: datetime | None = None) -> None: ...

    task = register(app, place)
    order = Order(id=1, items=[Item(name="a", price=2)], comment="hi")
    job = task.enqueue(order, datetime(2030, 1, 2, tzinfo=UTC))
    # By alias: the stored form validates back to the same model.
    assert job.args == [
        {"id": 1, "items": [{"name": "a", "price": 2.0}], "comment": "hi"},
        "2030-01-02T00:00:00Z",
    ]
    assert task.types is not None
    args, _ = task.types.decode(job.args, {})
    assert args == [order, datetime(2030, 1, 2, tzinfo=UTC)]
    # A JSON object is validated by the model's own rules (here: "3" is a fine int).
    assert task.enqueue({"id": "3", "items": []}).args == [{"id": 3, "items": [], "comment": ""}]
    message = refused(task, {"id": 1, "items": [{"name": "a", "price": 1}, {"name": "b"}]})
    assert "argument order.items[1].price is not valid: Field required (validating Order)" in (
        message
    )
    assert "argument when is not valid" in refused(task, order, "not a date")


# --- batches ------------------------------------------------------------------------------------


def test_a_mismatch_in_a_batch_writes_nothing(app: Conveyor) -> None:
    def add(x: int, y: int) -> None: ...

    def untyped(x, y):  # type: ignore[no-untyped-def]
        ...

    typed, other = register(app, add), register(app, untyped)
    specs = [typed.job(1, 2), other.job("a", "b"), typed.job(3, "4"), typed.job(5, 6)]
    with pytest.raises(ArgumentsMismatch, match=r"task t\.add: argument y must be int"):
        app.enqueue_many(specs)
    assert nothing_written(app)


def test_typed_batches_take_the_fast_path(app: Conveyor) -> None:
    def draw(p: Point, n: int) -> None: ...

    task = register(app, draw)
    specs = [task.job(Point(i), i) for i in range(3)]
    built = _build_batch(specs)
    assert built is not None, "the batch path, not the exact one"
    assert [job.args_json for job in built] == [f'[{{"x":{i},"y":0}},{i}]' for i in range(3)]
    jobs = app.enqueue_many([task.job(Point(7), 7)])
    assert jobs[0].args == [{"x": 7, "y": 0}, 7] == app.get_job(jobs[0].id).args


def test_arguments_that_cannot_be_rebuilt_are_not_retried(app: Conveyor) -> None:
    def draw(p: Point) -> None: ...

    task = register(app, draw)
    assert task.types is not None
    with pytest.raises(NonRetryable, match="argument p does not build a Point"):
        rebuilt_arguments(task.types, [{"y": 1}], {})
