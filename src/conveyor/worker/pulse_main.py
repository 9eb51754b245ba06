"""``python -m conveyor.worker.pulse_main IN OUT``: a worker's heartbeat process (pulse.py).

An entry point of its own, so that pulse.py never runs as ``__main__``: anything importing it
as ``conveyor.worker.pulse`` would get a second copy. Every worker start pays for its imports:
it imports only what the heartbeat process needs (tests/unit/test_imports.py lists them).

Its CPU priority is lowered (by ``NICENESS``) before those imports: its start -- imports, a
connection, about a tenth of a second of CPU -- would otherwise take cores from its worker's
first jobs, while nothing it does is urgent then (the worker registered itself, and leases
last many beats). A lower weight is a smaller share of a busy CPU, never none: a beat needs a
millisecond of CPU every few seconds, which even cores saturated by the worker's jobs give it.
"""

from __future__ import annotations

import contextlib
import os
import sys

NICENESS = 10

if __name__ == "__main__":
    with contextlib.suppress(AttributeError, OSError):  # no os.nice on Windows
        os.nice(NICENESS)
    from conveyor.worker.pulse import main

    main(sys.argv[1:])
