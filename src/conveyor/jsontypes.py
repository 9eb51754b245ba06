"""Type hints compiled into checkers of JSON values (see conveyor.typecheck for the rules).

A ``TypeNode`` checks one value against one hint and returns its JSON form; ``decode`` turns
that form back into what the hint declares (a dataclass, a model, an enum member, a tuple).
Nodes are built once, so that checking a value walks the value only.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import reprlib
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

_NoneType = type(None)
_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40


class Mismatch(Exception):
    """A value that does not fit; ``path`` collects the way to it while the stack unwinds."""

    def __init__(self, expected: str, value: Any, problem: str | None = None) -> None:
        self.expected = expected
        self.value = value
        self.problem = problem
        #: Innermost segment first: ``[3]``, ``.price``.
        self.path: list[str] = []

    def describe(self, root: str) -> str:
        where = root + "".join(reversed(self.path))
        if self.problem is not None:
            return f"argument {where} {self.problem}"
        got = f"{type(self.value).__name__} {_repr.repr(self.value)}"
        return f"argument {where} must be {self.expected}, got {got}"


def _key_segment(key: str) -> str:
    return f".{key}" if key.isidentifier() else f"[{key!r}]"


class TypeNode:
    """One compiled type: ``encode`` checks a value and returns its JSON form (the value itself
    unless ``converts``); ``decode`` rebuilds a stored JSON form (None: it is already right)."""

    __slots__ = ("by_type", "converts", "decode", "encode", "name")

    def __init__(
        self,
        name: str,
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any] | None = None,
        converts: bool = False,
        by_type: bool = False,
    ) -> None:
        self.name = name
        self.encode = encode
        self.decode = decode
        self.converts = converts
        #: Whether the value's type alone decides (int, str ...: not a list, not a Literal).
        self.by_type = by_type


# --- scalars -------------------------------------------------------------------------------------


def _encode_int(value: Any) -> Any:
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise Mismatch("int", value)


def _encode_float(value: Any) -> Any:
    if type(value) is float or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise Mismatch("float", value)


def _encode_str(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise Mismatch("str", value)


def _encode_bool(value: Any) -> Any:
    if value is True or value is False:
        return value
    raise Mismatch("bool", value)


def _encode_none(value: Any) -> Any:
    if value is None:
        return value
    raise Mismatch("None", value)


_INT = TypeNode("int", _encode_int, by_type=True)
_FLOAT = TypeNode("float", _encode_float, by_type=True)
_STR = TypeNode("str", _encode_str, by_type=True)
_BOOL = TypeNode("bool", _encode_bool, by_type=True)
_NONE = TypeNode("None", _encode_none, by_type=True)


# --- compiling ------------------------------------------------------------------------------------


class Unresolved(Exception):
    """A hint names something that does not exist (yet)."""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "").replace("collections.abc.", "")


def resolve_hint(annotation: Any, globalns: dict[str, Any], localns: Any = None) -> Any:
    """The type an annotation names (strings too, ``from __future__ import annotations``);
    Unresolved when it names something undefined, ``Any`` when it is not a type at all."""
    holder = types.SimpleNamespace(__annotations__={"hint": annotation})
    try:
        return typing.get_type_hints(
            holder, globalns=globalns, localns=localns, include_extras=True
        )["hint"]
    except NameError as exc:
        raise Unresolved(exc.name or str(exc)) from None
    except Exception:  # a string that does not parse, or names no type: unchecked
        return Any


class Compiler:
    def __init__(self, *, final: bool = True) -> None:
        #: Whether a name still undefined leaves its part unchecked (else: Unresolved).
        self.final = final
        #: Named types (dataclasses, TypedDicts) compiled so far: a recursive type refers to its
        #: own node.
        self._named: dict[Any, TypeNode] = {}

    def compile(self, tp: Any) -> TypeNode | None:
        """The checker of ``tp``, or None when it takes any JSON value."""
        tp = _unwrap(tp)
        if tp is Any or tp is object or isinstance(tp, typing.TypeVar | typing.ParamSpec):
            return None
        if isinstance(tp, typing.ParamSpecArgs | typing.ParamSpecKwargs):
            return None
        if tp is None or tp is _NoneType:
            return _NONE
        if tp is bool:
            return _BOOL
        if tp is int:
            return _INT
        if tp is float:
            return _FLOAT
        if tp is str:
            return _STR
        if isinstance(tp, str | typing.ForwardRef):
            raise Unresolved(tp if isinstance(tp, str) else tp.__forward_arg__)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp in (list, collections.abc.Sequence) or origin in (list, collections.abc.Sequence):
            return self._array(tp, args[0] if args else Any)
        if tp is tuple or origin is tuple:
            return self._tuple(tp, args)
        if tp in (dict, collections.abc.Mapping) or origin in (dict, collections.abc.Mapping):
            return self._object(tp, args)
        if origin is typing.Literal:
            return _literal(tp, args) or _adapter(tp)
        if origin is typing.Union or origin is types.UnionType:
            return self._union(tp, args)
        if typing.is_typeddict(tp):
            return self._typeddict(tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._dataclass(tp)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return _enum(tp) or _adapter(tp)
        pydantic = _pydantic_model_base()
        if pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic):
            return _model(tp)
        return _adapter(tp)

    def _array(self, tp: Any, item_tp: Any) -> TypeNode:
        name = _type_name(tp)
        item = self.compile(item_tp)
        return self._items(name, item, lambda items: items)

    def _items(
        self, name: str, item: TypeNode | None, rebuild: Callable[[list[Any]], Any]
    ) -> TypeNode:
        def is_array(value: Any) -> bool:
            return isinstance(value, list | tuple)

        if item is None:

            def encode_any(value: Any) -> Any:
                if not is_array(value):
                    raise Mismatch(name, value)
                return value

            return TypeNode(name, encode_any)

        def encode(value: Any) -> Any:
            if not is_array(value):
                raise Mismatch(name, value)
            out: list[Any] | None = [] if item.converts else None
            # item.encode looked up each time: a recursive type's node is finished later.
            for index, element in enumerate(value):
                try:
                    encoded = item.encode(element)
                except Mismatch as exc:
                    exc.path.append(f"[{index}]")
                    raise
                if out is not None:
                    out.append(encoded)
            return value if out is None else out

        decode = None
        if item.decode is not None:

            def decode(value: list[Any]) -> Any:
                return rebuild([item.decode(element) for element in value])  # type: ignore[misc]

        return TypeNode(name, encode, decode, item.converts)

    def _tuple(self, tp: Any, args: tuple[Any, ...]) -> TypeNode:
        name = _type_name(tp)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            array = self._items(name, self.compile(args[0] if args else Any), tuple)
            return TypeNode(name, array.encode, array.decode or tuple, array.converts)
        if args == ((),):  # tuple[()]
            args = ()
        items = [self.compile(arg) for arg in args]
        converts = any(item is not None and item.converts for item in items)

        def encode(value: Any) -> Any:
            if not isinstance(value, list | tuple) or len(value) != len(items):
                raise Mismatch(name, value)
            out = []
            for index, (item, element) in enumerate(zip(items, value, strict=True)):
                try:
                    out.append(element if item is None else item.encode(element))
                except Mismatch as exc:
                    exc.path.append(f"[{index}]")
                    raise
            return out if converts else value

        def decode_fixed(value: list[Any]) -> Any:
            return tuple(
                element if item is None or item.decode is None else item.decode(element)
                for item, element in zip(items, value, strict=True)
            )

        return TypeNode(name, encode, decode_fixed, converts)

    def _object(self, tp: Any, args: tuple[Any, ...]) -> TypeNode | None:
        name = _type_name(tp)
        if args and _unwrap(args[0]) is not str:
            return _adapter(tp)  # JSON keys are strings: dict[int, X] only through Pydantic
        value_type = self.compile(args[1]) if len(args) == 2 else None

        def encode(value: Any) -> Any:
            if not isinstance(value, dict):
                raise Mismatch(name, value)
            out: dict[str, Any] | None = {} if value_type and value_type.converts else None
            for key, element in value.items():
                if not isinstance(key, str):
                    raise Mismatch(name, value, f"has a key that is not a string: {key!r}")
                if value_type is None:
                    continue
                try:
                    encoded = value_type.encode(element)
                except Mismatch as exc:
                    exc.path.append(_key_segment(key))
                    raise
                if out is not None:
                    out[key] = encoded
            return value if out is None else out

        decode = None
        if value_type is not None and value_type.decode is not None:

            def decode(value: dict[str, Any]) -> Any:
                step: Any = value_type.decode
                return {key: step(element) for key, element in value.items()}

        converts = value_type is not None and value_type.converts
        return TypeNode(name, encode, decode, converts)

    def _union(self, tp: Any, args: tuple[Any, ...]) -> TypeNode:
        name = _type_name(tp)
        members = [self.compile(arg) for arg in args]
        if any(member is None for member in members):
            return TypeNode(name, lambda value: value, by_type=True)  # X | Any takes anything
        checked = [member for member in members if member is not None]
        # With one member besides None, its own error (with its path) says more than the union.
        others = [member for member in checked if member is not _NONE]
        single = others[0] if len(others) == 1 else None
        optional = _NONE in checked

        def encode(value: Any) -> Any:
            if optional and value is None:
                return None
            if single is not None:
                try:
                    return single.encode(value)
                except Mismatch as exc:
                    if exc.path or exc.problem is not None:
                        raise  # deep inside the member: its own place and words say more
                    raise Mismatch(name, value) from None
            for member in checked:
                try:
                    return member.encode(value)
                except Mismatch:
                    continue
            raise Mismatch(name, value)

        decode = None
        if any(member.decode is not None for member in checked):

            def decode(value: Any) -> Any:
                # The stored form tells which member it came from: the first that accepts it.
                for member in checked:
                    try:
                        member.encode(value)
                    except Mismatch:
                        continue
                    return value if member.decode is None else member.decode(value)
                raise Mismatch(name, value)

        converts = any(member.converts for member in checked)
        by_type = all(member.by_type for member in checked)
        return TypeNode(name, encode, decode, converts, by_type)

    def _hints(self, cls: type) -> dict[str, Any]:
        """The field hints of a dataclass or TypedDict, each resolved on its own: with
        ``final``, a name still undefined leaves that field unchecked, not the whole class."""
        # A TypedDict's own annotations hold its inherited keys too, with their modules.
        sources = [cls] if typing.is_typeddict(cls) else list(reversed(cls.__mro__))
        hints: dict[str, Any] = {}
        for klass in sources:
            module = sys.modules.get(klass.__module__)
            globalns = getattr(module, "__dict__", {})
            for key, annotation in inspect.get_annotations(klass).items():
                try:
                    hints[key] = resolve_hint(annotation, globalns, dict(vars(klass)))
                except Unresolved:
                    if not self.final:
                        raise
                    hints[key] = Any
        return hints

    def _typeddict(self, cls: Any) -> TypeNode:
        if cls in self._named:
            return self._named[cls]
        name = cls.__name__
        node = TypeNode(name, _unfinished, _unfinished, True)
        self._named[cls] = node
        try:
            hints = self._hints(cls)
            fields = {key: self.compile(_strip_required(hint)) for key, hint in hints.items()}
        except Unresolved:
            del self._named[cls]  # no other parameter may meet the unfinished node
            raise
        required = frozenset(_required_keys(cls, hints))

        def encode(value: Any) -> Any:
            if not isinstance(value, dict):
                raise Mismatch(name, value)
            for key in required:
                if key not in value:
                    raise Mismatch(name, value, f"is missing key {key!r} (TypedDict {name})")
            out: dict[str, Any] = {}
            for key, element in value.items():
                if key not in fields:
                    raise Mismatch(
                        name, value, f"has a key {key!r} that TypedDict {name} does not declare"
                    )
                field = fields[key]
                try:
                    out[key] = element if field is None else field.encode(element)
                except Mismatch as exc:
                    exc.path.append(_key_segment(key))
                    raise
            return out

        def decode(value: dict[str, Any]) -> Any:
            out = {}
            for key, element in value.items():
                field = fields.get(key)
                step = None if field is None else field.decode
                out[key] = element if step is None else step(element)
            return out

        # Always a copy, and always rebuilt: cheap, and right for recursive TypedDicts too.
        node.encode = encode
        node.decode = decode
        return node

    def _dataclass(self, cls: type) -> TypeNode:
        if cls in self._named:
            return self._named[cls]
        name = cls.__name__
        node = TypeNode(name, _unfinished, _unfinished, True)
        self._named[cls] = node
        init_fields = [f for f in dataclasses.fields(cls) if f.init]
        try:
            hints = self._hints(cls)
            fields = {f.name: self.compile(hints.get(f.name, Any)) for f in init_fields}
        except Unresolved:
            del self._named[cls]  # no other parameter may meet the unfinished node
            raise
        required = frozenset(
            f.name
            for f in init_fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )

        def check_field(key: str, element: Any) -> Any:
            field = fields[key]
            try:
                return element if field is None else field.encode(element)
            except Mismatch as exc:
                exc.path.append(_key_segment(key))
                raise

        def encode(value: Any) -> Any:
            if isinstance(value, cls):
                return {key: check_field(key, getattr(value, key)) for key in fields}
            if not isinstance(value, dict):
                raise Mismatch(f"{name} (or a JSON object of its fields)", value)
            for key in required:
                if key not in value:
                    raise Mismatch(name, value, f"is missing field {key!r} of {name}")
            out = {}
            for key, element in value.items():
                if key not in fields:
                    raise Mismatch(name, value, f"has a key {key!r} that {name} does not have")
                out[key] = check_field(key, element)
            return out

        def decode(value: Any) -> Any:
            if not isinstance(value, dict):
                raise Mismatch(f"a JSON object of the fields of {name}", value)
            given = {}
            for key, element in value.items():
                field = fields.get(key)
                if field is not None and field.decode is not None:
                    try:
                        element = field.decode(element)
                    except Mismatch as exc:
                        exc.path.append(_key_segment(key))
                        raise
                given[key] = element
            try:
                return cls(**given)
            except TypeError as exc:
                raise Mismatch(name, value, f"does not build a {name}: {exc}") from None

        node.encode = encode
        node.decode = decode
        return node


def _required_keys(cls: Any, hints: Mapping[str, Any]) -> set[str]:
    """The keys a TypedDict requires. Its ``__required_keys__`` misses ``Required`` and
    ``NotRequired`` written as strings (``from __future__ import annotations``, Python < 3.14):
    the resolved hints tell."""
    required = set(cls.__required_keys__)
    for key, hint in hints.items():
        origin = typing.get_origin(_unwrap_annotated(hint))
        if origin is typing.NotRequired:
            required.discard(key)
        elif origin is typing.Required:
            required.add(key)
    return required


def _unwrap_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated or (
        getattr(typing, "ReadOnly", None) is not None
        and typing.get_origin(tp) is getattr(typing, "ReadOnly", None)
    ):
        tp = typing.get_args(tp)[0]
    return tp


def _unfinished(value: Any) -> Any:
    raise AssertionError("a recursive type's node is used before it is compiled")


def _unwrap(tp: Any) -> Any:
    """``tp`` without what does not change the JSON it takes: Annotated, NewType, aliases."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = tp.__origin__
        elif isinstance(tp, typing.NewType):
            tp = tp.__supertype__
        elif sys.version_info >= (3, 12) and isinstance(tp, typing.TypeAliasType):
            tp = tp.__value__
        else:
            return tp


_KEY_QUALIFIERS = tuple(
    q for q in (typing.Required, typing.NotRequired, getattr(typing, "ReadOnly", None)) if q
)


def _strip_required(tp: Any) -> Any:
    tp = _unwrap(tp)
    while typing.get_origin(tp) in _KEY_QUALIFIERS:
        tp = _unwrap(typing.get_args(tp)[0])
    return tp


def _literal(tp: Any, values: tuple[Any, ...]) -> TypeNode | None:
    name = _type_name(tp)
    for value in values:
        if not (value is None or isinstance(value, str | int | bool)) or isinstance(
            value, enum.Enum
        ):
            return None  # not a JSON literal
    # Type and value: Literal[1] must not take True, nor Literal[True] take 1.
    allowed = frozenset((type(value), value) for value in values)

    def encode(value: Any) -> Any:
        try:
            if (type(value), value) in allowed:
                return value
        except TypeError:  # unhashable: a list or a dict is no literal
            pass
        raise Mismatch(name, value)

    return TypeNode(name, encode)


def _enum(cls: type[enum.Enum]) -> TypeNode | None:
    name = cls.__name__
    by_value = {}
    for member in cls:
        if not (isinstance(member.value, str | int | float) or member.value is None):
            return None  # not JSON values
        by_value[(type(member.value), member.value)] = member

    def encode(value: Any) -> Any:
        if isinstance(value, cls):
            return value.value
        try:
            if (type(value), value) in by_value:
                return value
        except TypeError:
            pass
        choices = ", ".join(repr(m.value) for m in cls)
        raise Mismatch(f"{name} (one of {choices})", value)

    def decode(value: Any) -> Any:
        return cls(value)

    return TypeNode(name, encode, decode, True)


def _pydantic_model_base() -> type | None:
    """``pydantic.BaseModel`` if the application imported Pydantic: a model class cannot exist
    otherwise, and importing it here would cost every application that does not use it."""
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None) if module is not None else None


def _validation_error(cls_name: str, value: Any, exc: Any) -> Mismatch:
    """A Pydantic ValidationError as a mismatch at the place of its first error."""
    first = exc.errors()[0]
    problem = f"{first['msg'].rstrip('.')} (validating {cls_name})"
    mismatch = Mismatch(cls_name, value, None)
    mismatch.problem = f"is not valid: {problem}"
    for part in reversed(first.get("loc", ())):
        mismatch.path.append(f"[{part}]" if isinstance(part, int) else _key_segment(str(part)))
    return mismatch


def _model(cls: Any) -> TypeNode:
    from pydantic import ValidationError

    name = cls.__name__

    def encode(value: Any) -> Any:
        if not isinstance(value, cls):
            try:
                value = cls.model_validate(value)
            except ValidationError as exc:
                raise _validation_error(name, value, exc) from None
        return value.model_dump(mode="json", by_alias=True)

    def decode(value: Any) -> Any:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise _validation_error(name, value, exc) from None

    return TypeNode(name, encode, decode, True)


def _adapter(tp: Any) -> TypeNode | None:
    """A type the checker does not know itself, through Pydantic when it is installed and can
    validate it; None (unchecked) otherwise."""
    name = _type_name(tp)
    try:
        import pydantic
    except ImportError:
        return None
    try:
        adapter: Any = pydantic.TypeAdapter(tp)
    except Exception:  # no schema for it (an arbitrary class, a protocol ...): unchecked
        return None

    def encode(value: Any) -> Any:
        try:
            return adapter.dump_python(adapter.validate_python(value), mode="json")
        except pydantic.ValidationError as exc:
            raise _validation_error(name, value, exc) from None

    def decode(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            raise _validation_error(name, value, exc) from None

    return TypeNode(name, encode, decode, True)


__all__ = ["Compiler", "Mismatch", "TypeNode", "Unresolved", "resolve_hint"]
