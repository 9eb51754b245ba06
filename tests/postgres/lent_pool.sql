-- Test-only queries of test_lent_pool.py (the application's schema and orders table come from
-- transactional.sql).

-- name: set_session_search_path
SELECT set_config('search_path', %(path)s, false)

-- name: set_session_lock_timeout
SELECT set_config('lock_timeout', %(timeout)s, false)

-- name: session_settings
SELECT current_setting('search_path') AS search_path,
       current_setting('lock_timeout') AS lock_timeout

-- name: lock_job
-- composed
SELECT id FROM {schema}.conveyor_jobs WHERE id = %(id)s FOR UPDATE
