-- Test-only queries of test_async_enqueue.py.

-- name: sessions_named
-- The sessions of one application_name in this test database, and what each is doing.
SELECT pid, state, wait_event_type FROM pg_stat_activity
WHERE datname = current_database() AND application_name = %(name)s
ORDER BY pid

-- name: block_inserts
-- Held until the transaction ends: every INSERT into the jobs table waits for it.
LOCK TABLE conveyor_jobs IN SHARE MODE

-- name: count_jobs
SELECT count(*) FROM conveyor_jobs

-- name: terminate
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = %(name)s

-- name: async_sessions
-- Every session of this test database made for async enqueues, whatever its application.
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE '%%-async'

-- name: listen
-- composed
LISTEN {channel}

-- name: select_one
SELECT 1

-- name: sleep
-- Long enough for the test to end the session while it runs.
SELECT pg_sleep(30)

-- name: terminate_waiting
-- The sessions of one application_name waiting on a lock (not the test's own, holding it).
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = %(name)s AND wait_event_type = 'Lock'
