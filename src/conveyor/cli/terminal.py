"""Where human output goes: rich on a terminal (colour, boxes, live views), plain text
otherwise.

Only the CLI's human output imports rich, and only when it prints: ``--json`` output and the
library never do. Off a terminal (a pipe, a file, a test's runner) the same renderables come
out as plain text -- no ANSI codes, no box characters -- so that grep, cut and awk keep
working on them.
"""

from __future__ import annotations

import io
import shutil
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

#: Off a terminal nothing wraps: a line is as long as its content.
PLAIN_WIDTH = 10_000


def stdout_is_terminal() -> bool:
    # sys.stdout at call time: click's test runner swaps it for a buffer.
    return sys.stdout.isatty()


def console(*, terminal: bool | None = None) -> Console:
    """A console writing to stdout: rich's own on a terminal, plain text otherwise."""
    from rich.console import Console

    if terminal is None:
        terminal = stdout_is_terminal()
    if terminal:
        return Console(file=sys.stdout, highlight=False, emoji=False)
    return _plain(sys.stdout)


def _plain(file: Any) -> Console:
    from rich.console import Console

    return Console(
        file=file,
        width=PLAIN_WIDTH,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,
        no_color=True,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=True,
    )


def needed_width(renderable: Any) -> int:
    """The least width ``renderable`` must be drawn at: its tables' ``min_width`` (a Group's,
    the widest of its parts)."""
    parts = getattr(renderable, "renderables", None)
    if parts is not None:
        return max((needed_width(part) for part in parts), default=0)
    return getattr(renderable, "min_width", None) or 0


def render(renderable: Any, *, terminal: bool | None = None) -> str:
    """``renderable`` as text for ``click.echo``: styled for the terminal stdout is, else
    plain, each line without trailing spaces."""
    from rich.console import Console

    if terminal is None:
        terminal = stdout_is_terminal()
    buffer = io.StringIO()
    if terminal:
        styled = Console(file=buffer, force_terminal=True, highlight=False, emoji=False)
        # As wide as the window; wider if what may not be cut needs it (the terminal wraps).
        styled.width = max(shutil.get_terminal_size().columns, needed_width(renderable))
        styled.print(renderable)
    else:
        _plain(buffer).print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").split("\n"))
