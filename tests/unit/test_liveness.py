"""Both ways of telling a running process from a stopped or a dead one, on a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from conveyor.worker.liveness import ProcessState, proc_state, process_state, ps_state

Probe = Callable[[int], ProcessState]

PROBES = [
    pytest.param(
        proc_state,
        id="proc",
        marks=pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
    ),
    pytest.param(ps_state, id="ps"),
]


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield process
    finally:
        process.kill()
        process.send_signal(signal.SIGCONT)
        process.wait(10)


def settles_on(probe: Probe, pid: int, state: ProcessState) -> bool:
    """A signal is delivered asynchronously: look until the state shows (or 10 s pass)."""
    deadline = time.monotonic() + 10
    while probe(pid) is not state:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize("probe", PROBES)
def test_running_stopped_resumed_and_killed(probe: Probe, child: subprocess.Popen[bytes]) -> None:
    assert probe(child.pid) is ProcessState.RUNNING
    child.send_signal(signal.SIGSTOP)
    assert settles_on(probe, child.pid, ProcessState.STOPPED)
    child.send_signal(signal.SIGCONT)
    assert settles_on(probe, child.pid, ProcessState.RUNNING)

    child.kill()
    # Not reaped yet: a zombie is gone all the same.
    assert settles_on(probe, child.pid, ProcessState.GONE)
    child.wait(10)
    assert probe(child.pid) is ProcessState.GONE


def test_linux_reads_proc_and_this_process_runs() -> None:
    assert process_state is (proc_state if sys.platform.startswith("linux") else ps_state)
    assert process_state(os.getpid()) is ProcessState.RUNNING
