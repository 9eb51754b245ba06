"""Escalation rules: instead of only dead-lettering a job that failed, enqueue another task
(or the same task on another queue, or at a higher priority) with the same arguments, in the
transaction that ends the original. The original ends ``dead`` with ``escalated_to`` naming the
new job and a reason that says so; the new job's ``escalated_from`` names the original, whose
error and attempts it reads with ``ctx.escalation``.

A rule per task, in code (``@app.task(escalate=...)``, ``app.escalation({...})``) or in the
configuration (``escalation`` setting: ``[escalation.aider]`` in conveyor.toml)::

    {"aider": {"on_failure": "codex", "on_timeout": "codex", "max_retries": 2}}

- ``on_failure``: when the attempts are used up (or the error is not retryable);
- ``on_timeout``: at once when a run exceeds its timeout;
- ``on_exception``: ``{"RateLimited": "codex"}``, at once when the run raised that exception
  type (its name, or module.name; subclasses match);
- ``max_retries``: retries before giving up (attempts = max_retries + 1), overriding the
  task's ``max_attempts``.

A target is a task name, or ``{"task": name, "queue": q, "priority": p}`` (``task`` defaults to
the rule's own task: the same task elsewhere). Rules may chain (A to B, B to C); a loop
between different tasks is refused when the rules are given. A task that escalates to itself
does so once: the copy ends dead as usual. A target that is not a registered task is an error
when a worker starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConfigurationError, JobTimeout

_KEYS = frozenset({"on_failure", "on_timeout", "on_exception", "max_retries"})


@dataclass(frozen=True)
class Target:
    task: str | None = None
    queue: str | None = None
    priority: int | str | None = None


@dataclass(frozen=True)
class Escalation:
    on_failure: Target | None = None
    on_timeout: Target | None = None
    on_exception: Mapping[str, Target] = field(default_factory=dict)
    max_retries: int | None = None

    def targets(self) -> list[Target]:
        found = [t for t in (self.on_failure, self.on_timeout) if t is not None]
        return found + list(self.on_exception.values())


def _target(task: str, where: str, value: Any) -> Target:
    if isinstance(value, str) and value:
        return Target(task=value)
    if isinstance(value, Mapping) and set(value) <= {"task", "queue", "priority"}:
        name, queue, priority = value.get("task"), value.get("queue"), value.get("priority")
        if (
            (name is None or (isinstance(name, str) and name))
            and (queue is None or (isinstance(queue, str) and queue))
            and (priority is None or isinstance(priority, int | str))
            and not isinstance(priority, bool)
        ):
            return Target(task=name, queue=queue, priority=priority)
    raise ConfigurationError(
        f"escalation of {task!r}: {where} must be a task name or a table of task, queue, "
        f"priority; got {value!r}"
    )


def parse_rule(task: str, value: Escalation | Mapping[str, Any]) -> Escalation:
    if isinstance(value, Escalation):
        return value
    if not isinstance(value, Mapping) or not set(value) <= _KEYS:
        raise ConfigurationError(
            f"escalation of {task!r} takes {', '.join(sorted(_KEYS))}; got {value!r}"
        )
    retries = value.get("max_retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
    ):
        raise ConfigurationError(f"escalation of {task!r}: max_retries must be >= 0")
    on_exception = value.get("on_exception") or {}
    if not isinstance(on_exception, Mapping):
        raise ConfigurationError(
            f"escalation of {task!r}: on_exception maps exception names to targets"
        )
    return Escalation(
        on_failure=None
        if value.get("on_failure") is None
        else _target(task, "on_failure", value["on_failure"]),
        on_timeout=None
        if value.get("on_timeout") is None
        else _target(task, "on_timeout", value["on_timeout"]),
        on_exception={
            str(name): _target(task, f"on_exception[{name!r}]", t)
            for name, t in on_exception.items()
        },
        max_retries=retries,
    )


def parse_rules(rules: Mapping[str, Any]) -> dict[str, Escalation]:
    """Rules by task name, checked for loops."""
    if not isinstance(rules, Mapping):
        raise ConfigurationError(f"escalation rules map task names to rules, got {rules!r}")
    parsed = {str(task): parse_rule(str(task), rule) for task, rule in rules.items()}
    check_loops(parsed)
    return parsed


def check_loops(rules: Mapping[str, Escalation]) -> None:
    """Refuse a loop between different tasks (A to B to A); a task may target itself."""
    edges = {
        task: {t.task for t in rule.targets() if t.task is not None and t.task != task}
        for task, rule in rules.items()
    }
    done: set[str] = set()
    path: list[str] = []

    def visit(task: str) -> None:
        if task in path:
            loop = " -> ".join([*path[path.index(task) :], task])
            raise ConfigurationError(f"escalation rules loop: {loop}")
        if task in done:
            return
        path.append(task)
        for target in sorted(edges.get(task, ())):
            visit(target)
        path.pop()
        done.add(task)

    for start in sorted(edges):
        visit(start)


def check_targets(rules: Mapping[str, Escalation], tasks: Mapping[str, Any]) -> None:
    """Every target names a registered task (a worker checks at start-up)."""
    for task, rule in sorted(rules.items()):
        for target in rule.targets():
            name = target.task or task
            if name not in tasks:
                raise ConfigurationError(
                    f"escalation of {task!r} targets {name!r}, which is not a registered task "
                    f"(registered: {', '.join(sorted(tasks))})"
                )


def _matches(exc: BaseException, name: str) -> bool:
    return any(
        name in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}") for cls in type(exc).__mro__
    )


def escalation_for(
    rule: Escalation, exc: BaseException, gave_up: bool
) -> tuple[Target, str] | None:
    """The target a failed run escalates to, and why ("timeout", "exception X",
    "failure"); None to fail as usual. ``gave_up``: the run would end dead."""
    for name, target in rule.on_exception.items():
        if _matches(exc, name):
            return target, f"exception {name}"
    if rule.on_timeout is not None and isinstance(exc, JobTimeout):
        return rule.on_timeout, "timeout"
    if rule.on_failure is not None and gave_up:
        return rule.on_failure, "failure"
    return None


class EscalationRules:
    """An app's rules: those of the configuration (the ``escalation`` setting), overridden per
    task by those given in code. Checked for loops as they are given."""

    def __init__(self, configured: Mapping[str, Any]) -> None:
        self._rules = parse_rules(configured)

    def add(self, rules: Mapping[str, Any]) -> None:
        merged = {**self._rules, **parse_rules(rules)}
        check_loops(merged)
        self._rules = merged

    def rule_for(self, task: str) -> Escalation | None:
        return self._rules.get(task)

    def check_targets(self, tasks: Mapping[str, Any]) -> None:
        check_targets(self._rules, tasks)
