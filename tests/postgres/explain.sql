-- Test-only queries of test_explain.py: loading a big jobs table fast, and reading plans.
-- Templates marked "composed" hold {placeholders} filled with psycopg.sql.

-- name: secondary_indexes
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = 'conveyor_jobs'
  AND indexname <> 'conveyor_jobs_pkey'
ORDER BY indexname

-- name: drop_index
-- composed
DROP INDEX {index}

-- name: bulk_session
SELECT set_config('jit', 'off', false), set_config('maintenance_work_mem', '256MB', false)

-- name: load_jobs
-- Every tenth job has succeeded; those sort first by priority and run_at, so a claim that
-- walked anything but the partial "ready" indexes would meet them before any queued job.
-- Every hundredth is scheduled for tomorrow: promotion must find the few due ones by time.
-- Another hundredth is running, held by one of 50 workers for another hour, and one of those in
-- a thousand was asked to cancel: a query about a few runs must not walk all of them.
INSERT INTO conveyor_jobs (
    queue, task, args, kwargs, state, priority, run_at, max_attempts, attempts, created_at,
    started_at, finished_at, result, lease_token, lease_expires_at, worker_id, cancel_requested
)
SELECT 'q' || mod(g / 10, 10), 'tests.noop', '[]', '{}',
       CASE WHEN mod(g, 10) = 0 THEN 'succeeded'
            WHEN mod(g, 100) = 5 THEN 'scheduled'
            WHEN mod(g, 100) = 7 THEN 'running' ELSE 'queued' END,
       CASE WHEN mod(g, 10) = 0 THEN 100 ELSE mod(g, 5) END,
       now() - interval '1 day' + g * interval '1 millisecond'
           - CASE WHEN mod(g, 10) = 0 THEN interval '1 year' ELSE interval '0' END
           + CASE WHEN mod(g, 100) = 5 THEN interval '2 days' ELSE interval '0' END,
       3,
       CASE WHEN mod(g, 10) = 0 OR mod(g, 100) = 7 THEN 1 ELSE 0 END,
       now() - interval '1 day',
       CASE WHEN mod(g, 10) = 0 OR mod(g, 100) = 7 THEN now() - interval '1 hour' END,
       CASE WHEN mod(g, 10) = 0 THEN now() - interval '1 hour' END,
       CASE WHEN mod(g, 10) = 0 THEN 'null'::json END,
       CASE WHEN mod(g, 100) = 7 THEN 'token-' || g END,
       CASE WHEN mod(g, 100) = 7 THEN now() + interval '1 hour' END,
       CASE WHEN mod(g, 10) = 0 OR mod(g, 100) = 7 THEN 'w' || mod(g, 50) END,
       mod(g, 100000) = 7
FROM generate_series(%(first)s::int, %(last)s::int) AS g

-- name: analyze
ANALYZE conveyor_jobs

-- name: explain_analyze
EXPLAIN (ANALYZE, FORMAT JSON)

-- name: force_generic_plans
SELECT set_config('plan_cache_mode', 'force_generic_plan', true)

-- name: latest_prepared_statement
SELECT name FROM pg_prepared_statements ORDER BY prepare_time DESC LIMIT 1

-- name: explain_execute
-- composed
EXPLAIN (FORMAT JSON) EXECUTE {name} ({arguments})
