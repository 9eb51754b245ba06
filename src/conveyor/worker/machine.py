"""Which registered workers on this machine are certainly dead: their process is gone.

Two workers share a *machine* when they run under the same kernel boot and in the same PID
namespace: then a pid means the same process to both, and a worker whose pid no longer exists
has died, whatever its last beat says. Maintenance declares such workers dead at once instead of
waiting out their silence, so a crashed worker's jobs come back within a sweep, not a lease.

The check errs only towards "alive": a pid that was reused, a zombie not reaped yet, or a
process this user may not signal all count as alive, and the worker is judged by its beats as
any worker on another machine is. A worker that could not tell its machine (not Linux) records
none, and is never judged by pid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from conveyor.worker_info import WorkerInfo, WorkerState

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_PID_NAMESPACE = "/proc/self/ns/pid"


def machine_identity() -> str | None:
    """``<boot id>/<pid namespace>`` of this process, e.g.
    ``"6430b093-48ed-4da4-a178-57955e4f75be/pid:[4026531836]"``; None where either is unknown."""
    try:
        boot_id = _BOOT_ID.read_text().strip()
        namespace = os.readlink(_PID_NAMESPACE)
    except OSError:
        return None
    if not boot_id or not namespace:
        return None
    return f"{boot_id}/{namespace}"


def pid_gone(pid: int) -> bool:
    """True only when no process of this pid exists in this PID namespace."""
    if pid <= 0:  # 0 and negative pids name process groups, never a worker
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, under another user
        return False
    return False


def gone_workers(
    workers: Iterable[WorkerInfo],
    machine: str | None,
    me: str,
    is_gone: Callable[[int], bool] = pid_gone,
) -> list[str]:
    """The ids of the running or stopping workers on ``machine`` (other than ``me``) whose
    process is gone. Workers on any other machine, or on none, are not looked at."""
    if machine is None:
        return []
    return [
        worker.id
        for worker in workers
        if worker.machine == machine
        and worker.id != me
        and worker.state is not WorkerState.DEAD
        and is_gone(worker.pid)
    ]
