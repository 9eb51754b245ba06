-- Test-only queries of test_lease_locks.py.

-- name: lock_job
-- What a transaction writing the run's outcome holds until it commits.
SELECT id FROM conveyor_jobs WHERE id = %(id)s FOR UPDATE
