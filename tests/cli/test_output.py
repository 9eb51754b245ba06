"""Tables for people: plain columns off a terminal (what scripts parse, unchanged by the move
to rich), drawn by rich on one, where only free text is ever cut."""

from __future__ import annotations

import pytest

from conveyor.cli.output import drawn_table, table
from conveyor.cli.terminal import render

HEADERS = ("ID", "TASK", "N", "NOTE")
ROWS = [(7, "resize", 12, "RuntimeError: boom"), (1234, "x", 3, None)]


def test_off_a_terminal_columns_are_two_spaces_apart() -> None:
    assert table(HEADERS, ROWS, right={"ID", "N"}) == (
        "  ID  TASK     N  NOTE\n   7  resize  12  RuntimeError: boom\n1234  x        3  -"
    )


def test_cells_are_one_line_of_printable_text_not_markup() -> None:
    shown = table(("A", "B"), [("[bold]x[/bold]", "line\nbreak\x1b[31m")])
    assert shown.splitlines()[1] == "[bold]x[/bold]  line break?[31m"


def test_on_a_terminal_free_text_is_cut_and_ids_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    long_id = "worker-" + "0" * 30
    drawn = drawn_table(
        ("ID", "NOTE"), [(long_id, "a very long error message " * 4)], terminal=True
    )
    text = render(drawn, terminal=True)
    assert long_id in text  # whole, though wider than the window
    assert "\u2026" in text  # the note cut short
    assert "\x1b[" in text  # styled headers


def test_off_a_terminal_nothing_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    note = "a very long error message " * 4
    assert note.strip() in table(("ID", "NOTE"), [(1, note)])
