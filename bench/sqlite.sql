-- Queries of the benchmark scripts against SQLite.

-- name: waiting
-- w1_cli_drain.py's poll: jobs not finished yet (queued and running), from the partial indexes
-- of ready and running jobs.
SELECT (SELECT count(*) FROM conveyor_jobs WHERE state = 'queued')
     + (SELECT count(*) FROM conveyor_jobs WHERE state = 'running')
