-- Queries of the benchmark scripts against PostgreSQL. Templates marked "composed" hold
-- {identifiers} filled with psycopg.sql.Identifier.

-- name: synchronous_commit
SELECT current_setting('synchronous_commit')

-- name: drop_schema
-- composed
DROP SCHEMA IF EXISTS {schema} CASCADE

-- name: waiting
-- composed; W4's backlog: jobs not finished yet. Both counts walk small partial indexes, so
-- the query stays cheap while millions of finished jobs pile up.
SELECT (SELECT count(*) FROM {schema}.conveyor_jobs WHERE state = 'queued')
     + (SELECT count(*) FROM {schema}.conveyor_jobs WHERE state = 'running')

-- name: autovacuum
SELECT current_setting('autovacuum')

-- name: use_schema
-- composed
SET search_path TO {schema}

-- name: sessions
-- The server processes of one application's connections (claim_cost.py reads their CPU time).
SELECT pid FROM pg_stat_activity WHERE application_name = %(name)s

-- name: ceiling_insert_job
-- W1s's ceiling (w1s_ceiling.py): the row a single enqueue writes, as one prepared INSERT
-- that commits on its own (autocommit): the fewest round trips a job can cost.
INSERT INTO conveyor_jobs (
    queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout, created_at
) VALUES (%s, %s, %s::json, '{}', 'queued', 0, now(), 3, NULL, now())
RETURNING id

-- name: vacuum_analyze_jobs
-- composed; stats_big.py: what autovacuum does after a big load (visibility map, statistics).
VACUUM (ANALYZE) {schema}.conveyor_jobs

-- name: count_by_queue_and_state
-- composed; stats_big.py's ceiling: the exact count the estimates replace.
SELECT queue, state, count(*) FROM {schema}.conveyor_jobs GROUP BY queue, state

-- name: use_schema_plain
SELECT set_config('search_path', %(schema)s, false)

-- name: ceiling_empty
-- pg_drain_ceiling.py: an empty jobs table before each run, as a fresh schema is.
TRUNCATE conveyor_jobs

-- name: ceiling_fill
-- pg_drain_ceiling.py: N queued no-op jobs, the rows a bulk enqueue writes.
INSERT INTO conveyor_jobs (
    queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout, created_at
)
SELECT 'default', 'noop', '[]', '{}', 'queued', 0, now(), 3, NULL, now()
FROM generate_series(1, %(jobs)s)

-- name: ceiling_running
SELECT id, lease_token FROM conveyor_jobs WHERE state = 'running'

-- name: ceiling_succeeded
SELECT count(*) FROM conveyor_jobs WHERE state = 'succeeded'

-- name: wal_position
-- The server's WAL insert position, in bytes: the difference of two is the WAL written between.
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8
