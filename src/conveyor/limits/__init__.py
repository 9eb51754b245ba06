"""Flow control: the rules of the gates a waiting job must pass before a claim may start it.

The state lives in the database (``conveyor_queue_limits``) and the claim enforces it inside its
own transaction; these modules only decide -- what a rate limit or a quiet window allows at a
given time, how much room a gated queue leaves -- and explain (``why``). Nothing here touches a
database: the backends read the gates' rows and hand them to these rules.
"""

from __future__ import annotations

from conveyor.limits.gates import QueueGate
from conveyor.limits.quiet import QuietHours
from conveyor.limits.rates import RateLimit

__all__ = ["QueueGate", "QuietHours", "RateLimit"]
