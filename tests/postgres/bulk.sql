-- Test-only queries of test_bulk.py.

-- name: break_id_runs
-- Every id the sequence hands out skips one: no batch's ids are ever one unbroken run, as when
-- other sessions draw from the sequence while a batch reserves its ids.
ALTER TABLE conveyor_jobs ALTER COLUMN id SET INCREMENT BY 2

-- name: stored_jobs
SELECT id, args::text, state, date_part('epoch', run_at), date_part('epoch', created_at),
       date_part('epoch', now())
FROM conveyor_jobs
ORDER BY id
