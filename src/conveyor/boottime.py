"""The machine's boot clock: what SQLite leases are measured on.

Every process on one SQLite file runs on one machine (WAL needs shared memory), so the file has
no clock of its own: "database time" used to be each process's wall clock, and a step of that
clock (NTP, a VM resume, an operator) moved every lease at once -- a step forward expired every
healthy lease and declared every worker dead. ``CLOCK_BOOTTIME`` counts seconds since the kernel
booted, including time suspended; it never steps, and every process of one boot reads the same
value. A reading is only comparable with readings of the same boot, so it goes with the boot id:
a lease written under another boot is void (the machine restarted, every process of that boot
is gone).

Where either is unknown (not Linux, no /proc), ``boot_clock`` returns None and leases fall back
to the wall clock, as before. Not covered: processes on one file in different Linux time
namespaces (a container restored by CRIU may be one), whose boot clocks are offset from each
other under the same boot id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class BootTime(NamedTuple):
    #: The kernel's boot id: readings of different boots are not comparable.
    boot: str
    #: Seconds since that boot, on a clock no wall-clock step moves.
    seconds: float


#: A boot clock: the reading now, or None where this machine has none.
BootClock = Callable[[], BootTime | None]


def _read_boot_id() -> str | None:
    try:
        boot = _BOOT_ID.read_text().strip()
    except OSError:
        return None
    return boot or None


_CLOCK_ID: int | None = getattr(time, "CLOCK_BOOTTIME", None)
_BOOT: str | None = _read_boot_id() if _CLOCK_ID is not None else None


def boot_clock() -> BootTime | None:
    """This machine's boot id and its ``CLOCK_BOOTTIME``; None where it has no such clock."""
    if _BOOT is None or _CLOCK_ID is None:
        return None
    return BootTime(_BOOT, time.clock_gettime(_CLOCK_ID))
