"""``python -m conveyor.worker.pulse_main IN OUT ENGINE``: a worker's heartbeat process (pulse.py).

An entry point of its own, so that pulse.py never runs as ``__main__``: anything importing it
as ``conveyor.worker.pulse`` would get a second copy. Every worker start pays for its imports:
it imports only what the heartbeat process needs (tests/unit/test_imports.py lists them).
"""

from __future__ import annotations

import sys

from conveyor.worker.pulse import main

if __name__ == "__main__":
    main(sys.argv[1:])
