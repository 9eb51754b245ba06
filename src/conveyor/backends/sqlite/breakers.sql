-- Circuit breakers (conveyor/limits/breakers.py, backends/breakers.py): the same query names
-- in every dialect.

-- name: unsettled_breakers
-- Which breakers are not closed (read about once a second per process, not per claim).
SELECT name FROM conveyor_breakers WHERE state <> 'closed'

-- name: unsettled_breaker_rows
SELECT name, state, tasks, recent, window_seconds, opened_at, probe_at, cooldown, probe_job,
       probe_token
FROM conveyor_breakers WHERE state <> 'closed'

-- name: lock_breakers
-- The rows of the breakers named in the JSON array :names; the claim's write transaction is
-- the only writer, so nothing to lock beyond it.
SELECT name, state, tasks, recent, window_seconds, opened_at, probe_at, cooldown, probe_job,
       probe_token
FROM conveyor_breakers WHERE name IN (SELECT value FROM json_each(:names))

-- name: list_breakers
SELECT name, state, tasks, recent, window_seconds, opened_at, probe_at, cooldown, probe_job,
       probe_token
FROM conveyor_breakers ORDER BY name

-- name: save_breaker
INSERT INTO conveyor_breakers (name, state, tasks, recent, window_seconds, opened_at, probe_at,
                               cooldown, probe_job, probe_token, updated_at)
VALUES (:name, :state, :tasks, :recent, :window, :opened_at, :probe_at, :cooldown, :probe_job,
        :probe_token, :now)
ON CONFLICT (name) DO UPDATE SET
    state = excluded.state, tasks = excluded.tasks, recent = excluded.recent,
    window_seconds = excluded.window_seconds, opened_at = excluded.opened_at,
    probe_at = excluded.probe_at, cooldown = excluded.cooldown,
    probe_job = excluded.probe_job, probe_token = excluded.probe_token,
    updated_at = excluded.updated_at

-- name: probe_running
-- Whether a half-open breaker's probe is still running under the run that took it.
SELECT 1 FROM conveyor_jobs WHERE id = :id AND lease_token = :token AND state = 'running'

-- name: claim_probe
-- One job of the tasks in the JSON array :tasks, from the queues in :queues (NULL: any) except
-- those in :capped: the probe of a breaker whose cool-down is over.
UPDATE conveyor_jobs
SET state = 'running',
    attempts = attempts + 1,
    lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease,
    lease_boot = :boot,
    lease_expires_uptime = :uptime + :lease,
    worker_id = :worker_id,
    started_at = :now,
    cancel_requested = 0
WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE state = 'queued' AND rate_key IS NULL
      AND task IN (SELECT value FROM json_each(:tasks))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND queue NOT IN (SELECT value FROM json_each(:capped))
    ORDER BY priority DESC, run_at, id
    LIMIT 1
)
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, run_at

-- name: claim_any_held
-- claim_any skipping the tasks in the JSON array :held (behind breakers that are not closed):
-- it walks past their jobs in the ready index.
UPDATE conveyor_jobs
SET state = 'running',
    attempts = attempts + 1,
    lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease,
    lease_boot = :boot,
    lease_expires_uptime = :uptime + :lease,
    worker_id = :worker_id,
    started_at = :now,
    cancel_requested = 0
WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE state = 'queued' AND rate_key IS NULL
      AND task NOT IN (SELECT value FROM json_each(:held))
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, run_at

-- name: claim_queue_held
UPDATE conveyor_jobs
SET state = 'running',
    attempts = attempts + 1,
    lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :now + :lease,
    lease_boot = :boot,
    lease_expires_uptime = :uptime + :lease,
    worker_id = :worker_id,
    started_at = :now,
    cancel_requested = 0
WHERE id IN (
    SELECT id FROM conveyor_jobs
    WHERE state = 'queued' AND rate_key IS NULL AND queue = :queue
      AND task NOT IN (SELECT value FROM json_each(:held))
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, run_at
