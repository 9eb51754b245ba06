"""The text each Redis script is sent as: the shared definitions it uses, and only those."""

from __future__ import annotations

from conveyor.backends.redis.scripts import script_text


def test_a_script_carries_the_shared_definitions_it_uses_and_what_they_use() -> None:
    text = script_text("enqueue_one")
    for needed in ("local P =", "local NOW", "local function server_time", "local function rank"):
        assert needed in text
    # enqueue_plain uses publish(), which needs the tables it writes out.
    plain = script_text("enqueue_plain")
    for needed in ("local function publish", "local stat_changes", "local woken"):
        assert needed in plain


def test_a_script_carries_no_shared_definition_it_does_not_use() -> None:
    text = script_text("enqueue_one")
    for unused in ("local function start_runs", "local function load", "local LIVE"):
        assert unused not in text
    # A script that never looks at the clock does not read the server's TIME.
    assert "TIME" not in script_text("discard")
