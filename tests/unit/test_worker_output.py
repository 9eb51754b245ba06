"""How `conveyor workers` words a beat's age."""

from __future__ import annotations

import pytest

from conveyor.cli.output import ago


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0.0s ago"),
        (0.44, "0.4s ago"),
        (9.94, "9.9s ago"),
        (10.0, "10s ago"),
        (59.9, "59s ago"),
        (60.0, "1m00s ago"),
        (3599.0, "59m59s ago"),
        (3600.0, "1h00m ago"),
        (86399.0, "23h59m ago"),
        (90000.0, "1d01h ago"),
    ],
)
def test_ages(seconds: float, shown: str) -> None:
    assert ago(seconds) == shown
