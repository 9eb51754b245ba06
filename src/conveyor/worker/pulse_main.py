"""``python -m conveyor.worker.pulse_main IN OUT``: a worker's heartbeat process (pulse.py).

An entry point of its own, so that running it does not import pulse.py twice (as ``__main__``
and, through the worker package, as itself).
"""

from __future__ import annotations

import sys

from conveyor.worker.pulse import main

if __name__ == "__main__":
    main(sys.argv[1:])
