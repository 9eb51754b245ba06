"""Flow control: the rules of the gates a waiting job must pass before a claim may start it --
queue gates (pause, quiet hours, rate limits), circuit breakers (breakers.py) -- and of
periodic jobs (schedules.py).

The state lives in the database (``conveyor_queue_limits``, ``conveyor_rate_buckets``,
``conveyor_breakers``, the schedules) and the backends enforce it inside their own transactions
(the claim, the finish batch, the tick); these modules only decide -- what a rate limit or a
quiet window allows at a given time, how much room a gated queue leaves, when a breaker opens --
and explain (``why``). Nothing here touches a database: the backends read the rows and hand them
to these rules, and the worker only caches what they decide and sleeps.
"""

from __future__ import annotations

from conveyor.limits.gates import QueueGate
from conveyor.limits.quiet import QuietHours
from conveyor.limits.rates import RateLimit

__all__ = ["QueueGate", "QuietHours", "RateLimit"]
