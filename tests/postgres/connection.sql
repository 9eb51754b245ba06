-- Test-only queries of test_connection.py.

-- name: lock_job
SELECT id FROM conveyor_jobs WHERE id = %(id)s FOR UPDATE

-- name: terminate
-- The server ends the sessions of one kind in this test database, as a restart or an
-- administrator would.
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name = %(application)s

-- name: conveyor_sessions
SELECT pid, application_name FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE 'conveyor%%'

-- name: session_activity
-- When each of the backend's sessions last started a statement or changed state.
SELECT pid, application_name, state, state_change FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE 'conveyor%%'
ORDER BY pid

-- name: terminate_pid
SELECT pg_terminate_backend(%(pid)s)
