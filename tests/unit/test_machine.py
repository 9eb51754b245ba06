"""Telling dead workers on this machine by their pid: a live pid is never dead, and workers on
another machine (or on none) are never judged by pid at all."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from conveyor.worker.machine import gone_workers, machine_identity, pid_gone
from conveyor.worker_info import WorkerInfo, WorkerState

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
HERE = "boot-1/pid:[4026531836]"


def worker(
    worker_id: str, pid: int, machine: str | None = HERE, state: WorkerState = WorkerState.RUNNING
) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="h",
        pid=pid,
        queues=None,
        concurrency=1,
        state=state,
        stop_requested=False,
        started_at=0.0,
        last_beat_at=0.0,
        beat_interval=1.0,
        dead_after=5.0,
        observed_at=0.0,
        machine=machine,
    )


@pytest.fixture
def exited_pid() -> Iterator[int]:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    yield process.pid


def test_a_live_pid_is_never_gone() -> None:
    assert pid_gone(os.getpid()) is False
    assert pid_gone(os.getppid()) is False


def test_a_pid_this_user_may_not_signal_is_alive() -> None:
    if os.geteuid() == 0:
        pytest.skip("root may signal every process")
    assert pid_gone(1) is False, "init exists, owned by root: PermissionError means alive"


def test_an_exited_pid_is_gone(exited_pid: int) -> None:
    assert pid_gone(exited_pid) is True


def test_pids_naming_process_groups_are_never_gone() -> None:
    assert pid_gone(0) is False
    assert pid_gone(-1) is False


def test_only_workers_of_this_machine_whose_process_is_gone(exited_pid: int) -> None:
    listed = [
        worker("me", exited_pid),  # the sweeper itself: alive, whatever its row says
        worker("alive", os.getpid()),
        worker("gone", exited_pid),
        worker("stopping-gone", exited_pid, state=WorkerState.STOPPING),
        worker("already-dead", exited_pid, state=WorkerState.DEAD),
        worker("elsewhere", exited_pid, machine="boot-2/pid:[4026531836]"),
        worker("other-namespace", exited_pid, machine="boot-1/pid:[4026532000]"),
        worker("unknown-machine", exited_pid, machine=None),
    ]
    assert gone_workers(listed, HERE, "me") == ["gone", "stopping-gone"]


def test_workers_on_other_machines_are_never_looked_up_by_pid() -> None:
    looked_up: list[int] = []

    def probe(pid: int) -> bool:
        looked_up.append(pid)
        return True

    listed = [
        worker("elsewhere", 11, machine="boot-2/pid:[4026531836]"),
        worker("unknown-machine", 12, machine=None),
        worker("here", 13),
    ]
    assert gone_workers(listed, HERE, "me", probe) == ["here"]
    assert looked_up == [13]
    looked_up.clear()
    assert gone_workers(listed, None, "me", probe) == [], "a sweeper of unknown machine"
    assert looked_up == []


@linux_only
def test_the_machine_is_the_boot_and_the_pid_namespace() -> None:
    identity = machine_identity()
    assert identity is not None
    boot_id, namespace = identity.split("/", 1)
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert boot_id == f.read().strip()
    assert namespace.startswith("pid:[") and namespace.endswith("]")
    child = subprocess.run(
        [sys.executable, "-c", "from conveyor.worker.machine import *; print(machine_identity())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == identity, "every process of this machine tells the same"
