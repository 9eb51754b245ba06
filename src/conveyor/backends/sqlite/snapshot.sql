-- Backup, restore and moves between engines (conveyor/snapshot/): the export reads every table
-- of jobs and queue settings inside one read transaction, the fields of each record in the
-- order of conveyor.snapshot.records.FIELDS; the import writes them back in that order (?
-- placeholders, one per field) inside one write transaction. Workers and leaderships are not
-- part of a snapshot.

-- name: snapshot_counts
-- The first read of the export: it fixes the snapshot every later read sees. last_id: the
-- highest id AUTOINCREMENT ever handed out, pruned jobs included.
SELECT (SELECT count(*) FROM conveyor_queue_limits),
       (SELECT count(*) FROM conveyor_breakers),
       (SELECT count(*) FROM conveyor_schedules),
       (SELECT count(*) FROM conveyor_rate_buckets),
       (SELECT count(*) FROM conveyor_retry_budgets),
       (SELECT count(*) FROM conveyor_jobs),
       (SELECT count(*) FROM conveyor_job_edges),
       (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'conveyor_jobs'),
       (SELECT coalesce(max(version), 0) FROM conveyor_migrations)

-- name: snapshot_queue
SELECT queue, max_running, paused_until, quiet, rate_count, rate_per, rate_next
FROM conveyor_queue_limits ORDER BY queue

-- name: snapshot_breaker
SELECT name, state, tasks, recent, window_seconds, opened_at, probe_at, cooldown, probe_job,
       probe_token, updated_at
FROM conveyor_breakers ORDER BY name

-- name: snapshot_schedule
SELECT name, paused, since, last_tick, last_job_id, last_enqueued_at
FROM conveyor_schedules ORDER BY name

-- name: snapshot_rate_bucket
SELECT task, key, rate_count, rate_per, rate_next FROM conveyor_rate_buckets ORDER BY task, key

-- name: snapshot_retry_budget
SELECT task, window_start, used FROM conveyor_retry_budgets ORDER BY task

-- name: snapshot_job
SELECT id, queue, task, state, priority, attempts, max_attempts, lost_runs, cancel_requested,
       suspect, run_at, created_at, started_at, finished_at, lease_expires_at, timeout,
       lease_token, worker_id, idempotency_key, rate_key, dead_reason, args, kwargs, result,
       progress, checkpoint, errors, pending_parents, has_children, on_parent_failure,
       stopped_by, workflow_id, escalated_to, escalated_from, trace_context
FROM conveyor_jobs ORDER BY id

-- name: snapshot_edge
SELECT parent_id, child_id FROM conveyor_job_edges ORDER BY parent_id, child_id

-- name: restore_has_data
-- Whether the target holds anything a snapshot would bring (workers and leaderships aside).
SELECT EXISTS (SELECT 1 FROM conveyor_jobs) OR EXISTS (SELECT 1 FROM conveyor_job_edges)
       OR EXISTS (SELECT 1 FROM conveyor_queue_limits) OR EXISTS (SELECT 1 FROM conveyor_breakers)
       OR EXISTS (SELECT 1 FROM conveyor_schedules)
       OR EXISTS (SELECT 1 FROM conveyor_rate_buckets)
       OR EXISTS (SELECT 1 FROM conveyor_retry_budgets)

-- name: restore_queue
INSERT INTO conveyor_queue_limits (queue, max_running, paused_until, quiet, rate_count, rate_per,
                                   rate_next)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: restore_breaker
INSERT INTO conveyor_breakers (name, state, tasks, recent, window_seconds, opened_at, probe_at,
                               cooldown, probe_job, probe_token, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: restore_schedule
INSERT INTO conveyor_schedules (name, paused, since, last_tick, last_job_id, last_enqueued_at)
VALUES (?, ?, ?, ?, ?, ?)

-- name: restore_rate_bucket
INSERT INTO conveyor_rate_buckets (task, key, rate_count, rate_per, rate_next)
VALUES (?, ?, ?, ?, ?)

-- name: restore_retry_budget
INSERT INTO conveyor_retry_budgets (task, window_start, used) VALUES (?, ?, ?)

-- name: restore_job
INSERT INTO conveyor_jobs (
    id, queue, task, state, priority, attempts, max_attempts, lost_runs, cancel_requested,
    suspect, run_at, created_at, started_at, finished_at, lease_expires_at, timeout,
    lease_token, worker_id, idempotency_key, rate_key, dead_reason, args, kwargs, result,
    progress, checkpoint, errors, pending_parents, has_children, on_parent_failure,
    stopped_by, workflow_id, escalated_to, escalated_from, trace_context
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
          ?, ?, ?, ?, ?, ?, ?)

-- name: restore_edge
INSERT INTO conveyor_job_edges (parent_id, child_id) VALUES (?, ?)

-- name: restore_advance_ids
-- Ids of the source's pruned jobs are never handed out again here either. The row exists once
-- a job was inserted; restore_start_ids writes it when none was.
UPDATE sqlite_sequence SET seq = max(seq, :last_id) WHERE name = 'conveyor_jobs'

-- name: restore_start_ids
INSERT INTO sqlite_sequence (name, seq) VALUES ('conveyor_jobs', :last_id)
