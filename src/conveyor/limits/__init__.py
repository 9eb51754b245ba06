"""Flow control across the fleet: rules whose state lives in the database (circuit breakers in
breakers.py, schedules of periodic jobs in schedules.py).

The rules here are pure: they decide from times and stored state; the backends carry them out
inside their own transactions (the claim, the finish batch, the tick), and the worker only
caches what they decide and sleeps.
"""
