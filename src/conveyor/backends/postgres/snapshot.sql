-- Backup, restore and moves between engines (conveyor/snapshot/): the export reads every table
-- of jobs and queue settings inside one REPEATABLE READ, READ ONLY transaction (one snapshot
-- of the database while workers go on), the fields of each record in the order of
-- conveyor.snapshot.records.FIELDS, times as UNIX seconds and JSON as its stored text; the
-- import writes them back in that order inside one transaction. Workers and leaderships are
-- not part of a snapshot.

-- name: snapshot_counts
-- last_id: the highest id the sequence handed out, pruned jobs included (a sequence is not
-- transactional: it may be above the snapshot's jobs, never below).
SELECT (SELECT count(*) FROM conveyor_queue_limits),
       (SELECT count(*) FROM conveyor_breakers),
       (SELECT count(*) FROM conveyor_schedules),
       (SELECT count(*) FROM conveyor_rate_buckets),
       (SELECT count(*) FROM conveyor_retry_budgets),
       (SELECT count(*) FROM conveyor_jobs),
       (SELECT count(*) FROM conveyor_job_edges),
       (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM conveyor_jobs_id_seq),
       (SELECT coalesce(max(version), 0) FROM conveyor_migrations),
       date_part('epoch', now())

-- name: snapshot_queue
SELECT queue, max_running, date_part('epoch', paused_until), quiet, rate_count, rate_per,
       date_part('epoch', rate_next)
FROM conveyor_queue_limits ORDER BY queue

-- name: snapshot_breaker
SELECT name, state, tasks::text, recent::text, window_seconds, date_part('epoch', opened_at),
       date_part('epoch', probe_at), cooldown, probe_job, probe_token,
       date_part('epoch', updated_at)
FROM conveyor_breakers ORDER BY name

-- name: snapshot_schedule
SELECT name, paused, date_part('epoch', since), date_part('epoch', last_tick), last_job_id,
       date_part('epoch', last_enqueued_at)
FROM conveyor_schedules ORDER BY name

-- name: snapshot_rate_bucket
SELECT task, key, rate_count, rate_per, date_part('epoch', rate_next)
FROM conveyor_rate_buckets ORDER BY task, key

-- name: snapshot_retry_budget
SELECT task, date_part('epoch', window_start), used FROM conveyor_retry_budgets ORDER BY task

-- name: snapshot_job
SELECT id, queue, task, state, priority, attempts, max_attempts, lost_runs, cancel_requested,
       suspect, date_part('epoch', run_at), date_part('epoch', created_at),
       date_part('epoch', started_at), date_part('epoch', finished_at),
       date_part('epoch', lease_expires_at), timeout, lease_token, worker_id, idempotency_key,
       rate_key, dead_reason, args::text, kwargs::text, result::text, progress::text,
       checkpoint::text, errors::text, pending_parents, has_children, on_parent_failure,
       stopped_by, workflow_id, escalated_to, escalated_from, trace_context
FROM conveyor_jobs ORDER BY id

-- name: snapshot_edge
SELECT parent_id, child_id FROM conveyor_job_edges ORDER BY parent_id, child_id

-- name: restore_lock
-- No enqueue or setting lands in the target between the check that it is empty and the commit.
LOCK TABLE conveyor_jobs, conveyor_job_edges, conveyor_queue_limits, conveyor_breakers,
           conveyor_schedules, conveyor_rate_buckets, conveyor_retry_budgets
IN SHARE ROW EXCLUSIVE MODE

-- name: restore_has_data
SELECT EXISTS (SELECT 1 FROM conveyor_jobs) OR EXISTS (SELECT 1 FROM conveyor_job_edges)
       OR EXISTS (SELECT 1 FROM conveyor_queue_limits) OR EXISTS (SELECT 1 FROM conveyor_breakers)
       OR EXISTS (SELECT 1 FROM conveyor_schedules)
       OR EXISTS (SELECT 1 FROM conveyor_rate_buckets)
       OR EXISTS (SELECT 1 FROM conveyor_retry_budgets)

-- name: restore_queue
INSERT INTO conveyor_queue_limits (queue, max_running, paused_until, quiet, rate_count, rate_per,
                                   rate_next)
VALUES (%s, %s, to_timestamp(%s), %s, %s, %s, to_timestamp(%s))

-- name: restore_breaker
INSERT INTO conveyor_breakers (name, state, tasks, recent, window_seconds, opened_at, probe_at,
                               cooldown, probe_job, probe_token, updated_at)
VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, to_timestamp(%s), to_timestamp(%s), %s, %s, %s,
        to_timestamp(%s))

-- name: restore_schedule
INSERT INTO conveyor_schedules (name, paused, since, last_tick, last_job_id, last_enqueued_at)
VALUES (%s, %s, to_timestamp(%s), to_timestamp(%s), %s, to_timestamp(%s))

-- name: restore_rate_bucket
INSERT INTO conveyor_rate_buckets (task, key, rate_count, rate_per, rate_next)
VALUES (%s, %s, %s, %s, to_timestamp(%s))

-- name: restore_retry_budget
INSERT INTO conveyor_retry_budgets (task, window_start, used) VALUES (%s, to_timestamp(%s), %s)

-- name: restore_job
-- COPY keeps the ids given, as OVERRIDING SYSTEM VALUE would; times arrive as timestamps.
COPY conveyor_jobs (
    id, queue, task, state, priority, attempts, max_attempts, lost_runs, cancel_requested,
    suspect, run_at, created_at, started_at, finished_at, lease_expires_at, timeout,
    lease_token, worker_id, idempotency_key, rate_key, dead_reason, args, kwargs, result,
    progress, checkpoint, errors, pending_parents, has_children, on_parent_failure,
    stopped_by, workflow_id, escalated_to, escalated_from, trace_context
) FROM STDIN

-- name: restore_edge
COPY conveyor_job_edges (parent_id, child_id) FROM STDIN

-- name: restore_advance_ids
-- Ids of the source's pruned jobs are never handed out again here either, nor the target's own.
SELECT setval('conveyor_jobs_id_seq', greatest(
    %(last_id)s, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM conveyor_jobs_id_seq)))
