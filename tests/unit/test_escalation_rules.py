"""The escalation rules as given (conveyor.workflows.escalation): parsing, loops, decisions."""

from __future__ import annotations

import pytest

from conveyor.errors import ConfigurationError, JobTimeout
from conveyor.workflows.escalation import (
    Escalation,
    EscalationRules,
    Target,
    check_targets,
    escalation_for,
    parse_rules,
)

SEED = {"aider": {"on_failure": "codex", "on_timeout": "codex", "max_retries": 2}}


class RateLimited(Exception):
    pass


class Slow(RateLimited):
    pass


def test_the_seeds_dict_form() -> None:
    assert parse_rules(SEED) == {
        "aider": Escalation(on_failure=Target("codex"), on_timeout=Target("codex"), max_retries=2)
    }


def test_targets_may_name_a_queue_and_priority_of_the_same_task() -> None:
    rules = parse_rules({"render": {"on_failure": {"queue": "gpu", "priority": "high"}}})
    assert rules["render"].on_failure == Target(None, "gpu", "high")


@pytest.mark.parametrize(
    "rules",
    [
        {"a": {"on_failure": "b"}, "b": {"on_timeout": "a"}},
        {"a": {"on_failure": "b"}, "b": {"on_failure": "c"}, "c": {"on_exception": {"E": "a"}}},
    ],
)
def test_a_loop_between_tasks_is_refused(rules: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="loop"):
        parse_rules(rules)


def test_a_loop_made_by_adding_rules_later_is_refused_and_changes_nothing() -> None:
    rules = EscalationRules({"a": {"on_failure": "b"}})
    with pytest.raises(ConfigurationError, match="a -> b -> a"):
        rules.add({"b": {"on_failure": "a"}})
    assert rules.rule_for("b") is None
    rules.add({"b": {"on_failure": "c"}, "a": {"on_failure": "a"}})  # a chain; self is fine


@pytest.mark.parametrize(
    "rule",
    [
        {"on_failure": ""},
        {"on_failur": "x"},
        {"max_retries": -1},
        {"max_retries": True},
        {"on_failure": {"task": "x", "lane": "y"}},
        {"on_exception": ["E"]},
    ],
)
def test_malformed_rules_are_configuration_errors(rule: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        parse_rules({"t": rule})


def test_unknown_targets_are_named() -> None:
    with pytest.raises(ConfigurationError, match="'codex', which is not a registered task"):
        check_targets(parse_rules(SEED), {"aider": object()})


def test_the_decision() -> None:
    rule = parse_rules(
        {"t": {"on_failure": "f", "on_timeout": "o", "on_exception": {"RateLimited": "r"}}}
    )["t"]
    assert escalation_for(rule, Slow(), gave_up=False) == (Target("r"), "exception RateLimited")
    assert escalation_for(rule, JobTimeout("late"), gave_up=False) == (Target("o"), "timeout")
    assert escalation_for(rule, ValueError(), gave_up=False) is None
    assert escalation_for(rule, ValueError(), gave_up=True) == (Target("f"), "failure")
