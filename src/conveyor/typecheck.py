"""Typed arguments: a task's type hints checked at enqueue, and its JSON arguments rebuilt into
dataclasses and Pydantic models at run time.

Each task compiles its hints once, when it is registered, into a tree of small checkers; an
enqueue then walks only the values, and a task without hints pays nothing (``compile_arguments``
returns None for it). The rules, which the README states for users:

- ``int`` refuses ``bool`` (as JSON Schema's "integer" does: ``True`` is not a count), ``float``
  takes ``int`` but not ``bool``; ``str``, ``bool`` and ``None`` are exact.
- ``list[X]``, ``Sequence[X]`` and ``tuple[X, ...]`` / ``tuple[X, Y]`` are JSON arrays (a list or
  a tuple at enqueue; a tuple parameter gets a tuple back at run time); ``dict[str, X]`` and
  ``Mapping[str, X]`` are JSON objects (other keys, e.g. ``dict[int, X]``, only through Pydantic).
- ``Literal`` compares type and value (``Literal[1]`` refuses ``True``); unions take the first
  member that accepts the value.
- A TypedDict needs its required keys and refuses keys it does not declare.
- A dataclass takes an instance or a JSON object of its ``init`` fields, checked field by field;
  it is stored as that object and rebuilt (``cls(**fields)``) before the task runs. An ``Enum``
  takes a member or a member's value, stored as the value and rebuilt as the member.
- A Pydantic model (Pydantic 2, imported only if the application uses it) takes an instance or
  anything ``model_validate`` accepts; it is stored as ``model_dump(mode="json", by_alias=True)``
  and rebuilt with ``model_validate``. Any other type Pydantic can validate (``datetime``,
  ``UUID``, ``Decimal`` ...) goes through a ``TypeAdapter`` the same way, when Pydantic is
  installed.
- ``Any``, ``object``, type variables and unannotated parameters take any JSON value.
- A hint the checker cannot express in JSON and Pydantic (absent, or unable) cannot validate --
  a protocol, an arbitrary class, ``ctx: JobContext`` on a task without ``pass_context`` --
  leaves that part unchecked, as every hint was before: registering a task never fails because
  of its hints.
- A hint naming something not defined yet (a forward reference, e.g. a model defined below the
  task) is looked up again on first use, from the function's module (its globals: a class local
  to a function cannot be named by a string annotation). Still undefined then (an import under
  ``TYPE_CHECKING``), that part is unchecked.

A mismatch raises ``ArgumentsMismatch`` naming the task, the path into the argument
(``items[3].price``) and the expected type, before anything is written.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.errors import ArgumentsMismatch
from conveyor.jsontypes import Compiler, Mismatch, TypeNode, Unresolved, resolve_hint


class ArgumentTypes:
    """The compiled hints of a task's enqueue signature (the arguments a job stores).

    ``encode`` checks arguments that already bind to the signature and returns their JSON forms;
    ``decode`` turns stored arguments back into what the function declared."""

    #: The argument type tuples remembered per task (each way of calling it is one).
    MAX_KNOWN = 64

    def __init__(self, task: str, fn: Callable[..., Any], signature: inspect.Signature) -> None:
        self.task = task
        self._fn = fn
        self._signature = signature
        self._compiled = False
        #: Whether ``encode`` may return other objects than it was given.
        self.converts = False
        #: Whether ``decode`` does anything.
        self.rebuilds = False
        self._positional: list[tuple[str, TypeNode | None]] = []
        self._checks: list[Callable[[Any], Any] | None] = []
        #: With scalar parameters only, the tuples of argument types seen to pass.
        self._known_types: set[tuple[type, ...]] | None = None
        self._by_name: dict[str, TypeNode | None] = {}
        self._star: TypeNode | None = None
        self._star_name = ""
        self._star_star: TypeNode | None = None
        self._star_star_name = ""
        # A name not defined yet is looked up again on first use: it may be defined further
        # down the module (a model below the task).
        with contextlib.suppress(Unresolved):
            self._compile(final=False)

    def _compile(self, *, final: bool) -> None:
        compiler = Compiler(final=final)
        positional: list[tuple[str, TypeNode | None]] = []
        by_name: dict[str, TypeNode | None] = {}
        star = star_star = None
        for param in self._signature.parameters.values():
            try:
                node = compiler.compile(self._hint(param))
            except Unresolved:
                if not final:
                    raise
                node = None  # still undefined on first use: unchecked, as the rule says
            if param.kind is param.VAR_POSITIONAL:
                star, self._star_name = node, param.name
            elif param.kind is param.VAR_KEYWORD:
                star_star, self._star_star_name = node, param.name
            else:
                if param.kind is not param.KEYWORD_ONLY:
                    positional.append((param.name, node))
                if param.kind is not param.POSITIONAL_ONLY:
                    by_name[param.name] = node
        self._positional, self._by_name = positional, by_name
        self._star, self._star_star = star, star_star
        nodes = (*by_name.values(), *(node for _, node in positional), star, star_star)
        present = [node for node in nodes if node is not None]
        self.converts = any(node.converts for node in present)
        self.rebuilds = any(node.decode is not None for node in present)
        self._checks = [node.encode if node else None for _, node in positional]
        scalars = all(n is None or n.by_type for n in (*(n for _, n in positional), star))
        self._known_types = set() if scalars else None
        self._compiled = True

    def _hint(self, param: inspect.Parameter) -> Any:
        if param.annotation is param.empty:
            return Any
        globalns = getattr(inspect.unwrap(self._fn), "__globals__", {})
        return resolve_hint(param.annotation, globalns)

    @property
    def empty(self) -> bool:
        """Whether no argument is checked (every hint takes any JSON value)."""
        return (
            self._compiled
            and not any(check is not None for check in self._checks)
            and not any(node is not None for node in self._by_name.values())
            and self._star is None
            and self._star_star is None
        )

    def encode(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Sequence[Any], Mapping[str, Any]]:
        """The arguments' JSON forms (the same objects when nothing converts), or
        ArgumentsMismatch. The arguments must already bind to the signature."""
        if not self._compiled:
            self._compile(final=True)
        if self.converts:
            return self._walk(args, kwargs, encoding=True)
        known = self._known_types
        # Scalars only: the types of the arguments decide, and these ones passed before.
        if known is not None and not kwargs and tuple(map(type, args)) in known:
            return args, kwargs
        # The common case, kept lean: check each value, return the arguments as they are.
        try:
            for check, value in zip(self._checks, args):  # noqa: B905  (*args may add more)
                if check is not None:
                    check(value)
            if len(args) > len(self._checks) and self._star is not None:
                for value in args[len(self._checks) :]:
                    self._star.encode(value)
            if kwargs:
                by_name, star_star = self._by_name, self._star_star
                for key, value in kwargs.items():
                    node = by_name.get(key, star_star)
                    if node is not None:
                        node.encode(value)
        except Mismatch:
            self._walk(args, kwargs, encoding=True)  # raises, naming the argument
        if known is not None and not kwargs and len(known) < self.MAX_KNOWN:
            known.add(tuple(map(type, args)))
        return args, kwargs

    def decode(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Stored (JSON) arguments as the function declared them; ArgumentsMismatch when they
        cannot be rebuilt (a job enqueued without this check, or by older code)."""
        if not self._compiled:
            self._compile(final=True)
        if not self.rebuilds:
            return list(args), dict(kwargs)
        new_args, new_kwargs = self._walk(args, kwargs, encoding=False)
        return list(new_args), dict(new_kwargs)

    def _walk(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], *, encoding: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        def convert(name: str, node: TypeNode | None, value: Any) -> Any:
            if node is None:
                return value
            step = node.encode if encoding else node.decode
            if step is None:
                return value
            try:
                return step(value)
            except Mismatch as exc:
                raise ArgumentsMismatch(f"task {self.task}: {exc.describe(name)}") from None

        out_args = []
        for index, value in enumerate(args):
            if index < len(self._positional):
                name, node = self._positional[index]
            else:
                name, node = f"{self._star_name}[{index - len(self._positional)}]", self._star
            out_args.append(convert(name, node, value))
        out_kwargs = {}
        for key, value in kwargs.items():
            if key in self._by_name:
                out_kwargs[key] = convert(key, self._by_name[key], value)
            else:
                out_kwargs[key] = convert(
                    f"{self._star_star_name}[{key!r}]", self._star_star, value
                )
        return out_args, out_kwargs


def compile_arguments(
    task: str, fn: Callable[..., Any], signature: inspect.Signature
) -> ArgumentTypes | None:
    """The checker of a task's arguments, or None when it has nothing to check."""
    if all(p.annotation is p.empty for p in signature.parameters.values()):
        return None
    types_ = ArgumentTypes(task, fn, signature)
    return None if types_.empty else types_


__all__ = ["ArgumentTypes", "compile_arguments"]
