"""Workflows: jobs that wait for other jobs.

- ``rules``: the pure decisions (what a parent's end does to its children, cycles).
- ``links``: the enqueue side: ``depends_on`` references resolved to ids or batch positions.
- ``canvas``: chains, groups and chords, built on dependencies.

The backends carry the decisions out in the transaction that writes each end
(conveyor/backends/dependencies.py holds the engine-neutral statements).
"""
