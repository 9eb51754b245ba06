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

-- name: terminate_like
-- The server ends every session of this test database whose application_name starts with
-- %(prefix)s (a worker's pool and its LISTEN session), as an administrator or a restart would.
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE %(prefix)s || '%%'

-- name: runs_summary
-- How many jobs ended in each (state, attempts, lost runs): one row when all ran once.
SELECT state, attempts, lost_runs, count(*) FROM conveyor_jobs
GROUP BY state, attempts, lost_runs ORDER BY count(*) DESC

-- name: finish_percentiles
-- When the highest- and lowest-priority jobs finished, as percentiles of their finish times.
SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY finished_at)
           FILTER (WHERE priority >= %(high)s),
       percentile_cont(0.1) WITHIN GROUP (ORDER BY finished_at)
           FILTER (WHERE priority <= %(low)s)
FROM (SELECT priority, date_part('epoch', finished_at) AS finished_at FROM conveyor_jobs) AS j

-- name: failing_notify
-- test_single_enqueue.py: a wake-up that fails (a payload over the server's 8000 bytes).
SELECT pg_notify(%(channel)s, repeat('x', 9000))

-- name: select_one
SELECT 1

-- name: deallocate_all
-- What a pool's reset of a lent connection may do: the server forgets every prepared statement.
DEALLOCATE ALL
