"""Flow control whose state lives in the database: schedules of periodic jobs (schedules.py).

The rules here are pure: they decide from times and stored state; the backends carry out the
transitions in one transaction each, and the worker only caches and sleeps.
"""
