"""Is a process running, stopped or gone? The heartbeat process asks about its worker before
every beat.

It beats for a worker whose every thread is blocked (a task holding the GIL) -- but not for a
stopped one (SIGSTOP, Ctrl-Z, a debugger's breakpoint): a stopped worker must lose its leases as
a dead one does, so that its jobs run elsewhere and its late writes are fenced off.

On Linux the answer is the state letter in ``/proc/<pid>/stat``: one small read. Elsewhere on
POSIX (macOS, the BSDs) it is the STAT column of ``ps``, a process start per look: affordable at
one look per heartbeat interval. Without ``ps`` either, a process that exists counts as running.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path

from conveyor.worker.machine import pid_gone

_PROC = Path("/proc")
_STOPPED = "Tt"  # stopped by a signal; stopped by a tracer
_DEAD = "ZXx"  # zombie: exited, not yet reaped; dead


class ProcessState(enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    GONE = "gone"


def _from_letter(letter: str) -> ProcessState:
    if letter in _STOPPED:
        return ProcessState.STOPPED
    if letter in _DEAD:
        return ProcessState.GONE
    return ProcessState.RUNNING


def proc_state(pid: int) -> ProcessState:
    """From /proc (Linux)."""
    try:
        text = (_PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ProcessState.GONE
    # "pid (comm) S ...": the command name may hold spaces and parentheses; the state letter
    # follows the last ")".
    return _from_letter(chr(text[text.rindex(b")") + 2]))


def ps_state(pid: int) -> ProcessState:
    """From ``ps -o stat=`` (any POSIX system)."""
    # Imported here: on Linux nothing else in the heartbeat process needs it (it costs a few
    # milliseconds of CPU at each start).
    import subprocess

    try:
        found = subprocess.run(
            ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ProcessState.GONE if pid_gone(pid) else ProcessState.RUNNING
    text = found.stdout.strip()
    if found.returncode != 0 or not text:
        return ProcessState.GONE
    return _from_letter(text[0])


process_state: Callable[[int], ProcessState] = (
    proc_state if (_PROC / "self" / "stat").exists() else ps_state
)
