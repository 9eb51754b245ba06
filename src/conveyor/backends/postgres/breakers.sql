-- Circuit breakers (conveyor/limits/breakers.py, backends/breakers.py): the same query names
-- in every dialect. Times go in and out as UNIX seconds.

-- name: breaker_now
-- The time the rules of a finish_many judge by: the transaction's, or the injected clock's.
SELECT date_part('epoch', coalesce(to_timestamp(%(now)s::float8), now()))

-- name: unsettled_breakers
-- Which breakers are not closed (read about once a second per process, not per claim).
SELECT name FROM conveyor_breakers WHERE state <> 'closed'

-- name: unsettled_breaker_rows
SELECT name, state, tasks, recent, window_seconds, date_part('epoch', opened_at),
       date_part('epoch', probe_at), cooldown, probe_job, probe_token
FROM conveyor_breakers WHERE state <> 'closed'

-- name: lock_breakers
-- The rows of the breakers named in :names, locked until the transaction ends. A claim skips a
-- row another claim holds (SKIP LOCKED): that one is taking its probe. Read again under the lock,
-- since what the claim read before may have changed meanwhile.
SELECT name, state, tasks, recent, window_seconds, date_part('epoch', opened_at),
       date_part('epoch', probe_at), cooldown, probe_job, probe_token
FROM conveyor_breakers WHERE name = ANY(%(names)s::text[])
ORDER BY name
FOR UPDATE SKIP LOCKED

-- name: lock_breakers_wait
-- The same rows for finish_many and operators, who wait their turn instead.
SELECT name, state, tasks, recent, window_seconds, date_part('epoch', opened_at),
       date_part('epoch', probe_at), cooldown, probe_job, probe_token
FROM conveyor_breakers WHERE name = ANY(%(names)s::text[])
ORDER BY name
FOR UPDATE

-- name: list_breakers
SELECT name, state, tasks, recent, window_seconds, date_part('epoch', opened_at),
       date_part('epoch', probe_at), cooldown, probe_job, probe_token
FROM conveyor_breakers ORDER BY name

-- name: create_breaker
-- A closed row to lock, before the first failure of a breaker is counted.
INSERT INTO conveyor_breakers (name, state, window_seconds, updated_at)
VALUES (%(name)s, 'closed', %(window)s, coalesce(to_timestamp(%(now)s::float8), now()))
ON CONFLICT (name) DO NOTHING

-- name: save_breaker
INSERT INTO conveyor_breakers (name, state, tasks, recent, window_seconds, opened_at, probe_at,
                               cooldown, probe_job, probe_token, updated_at)
VALUES (%(name)s, %(state)s, %(tasks)s::jsonb, %(recent)s::jsonb, %(window)s,
        to_timestamp(%(opened_at)s::float8), to_timestamp(%(probe_at)s::float8),
        %(cooldown)s, %(probe_job)s, %(probe_token)s,
        coalesce(to_timestamp(%(now)s::float8), now()))
ON CONFLICT (name) DO UPDATE SET
    state = excluded.state, tasks = excluded.tasks, recent = excluded.recent,
    window_seconds = excluded.window_seconds, opened_at = excluded.opened_at,
    probe_at = excluded.probe_at, cooldown = excluded.cooldown,
    probe_job = excluded.probe_job, probe_token = excluded.probe_token,
    updated_at = excluded.updated_at

-- name: probe_running
-- Whether a half-open breaker's probe is still running under the run that took it.
SELECT 1 FROM conveyor_jobs WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running'

-- name: claim_probe
-- One job of the tasks in :tasks, from the queues in :queues (NULL: any) except those in
-- :capped: the probe of a breaker whose cool-down is over.
UPDATE conveyor_jobs
SET state = 'running',
    attempts = attempts + 1,
    lease_token = gen_random_uuid()::text,
    lease_expires_at = coalesce(to_timestamp(%(now)s::float8), now())
                       + %(lease)s::float8 * interval '1 second',
    worker_id = %(worker_id)s,
    started_at = coalesce(to_timestamp(%(now)s::float8), now()),
    cancel_requested = false
WHERE id = ANY(ARRAY(
    SELECT id FROM conveyor_jobs
    WHERE state = 'queued' AND rate_key IS NULL AND task = ANY(%(tasks)s::text[])
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND queue <> ALL(%(capped)s::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
))
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, date_part('epoch', run_at)

-- name: claim_any_held
-- claim_any skipping the tasks in :held (behind breakers that are not closed): it walks past
-- their jobs in the ready index.
UPDATE conveyor_jobs
SET state = 'running',
    attempts = attempts + 1,
    lease_token = gen_random_uuid()::text,
    lease_expires_at = coalesce(to_timestamp(%(now)s::float8), now())
                       + %(lease)s::float8 * interval '1 second',
    worker_id = %(worker_id)s,
    started_at = coalesce(to_timestamp(%(now)s::float8), now()),
    cancel_requested = false
WHERE id = ANY(ARRAY(
    SELECT id FROM conveyor_jobs
    WHERE state = 'queued' AND rate_key IS NULL AND task <> ALL(%(held)s::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, date_part('epoch', run_at)

-- name: claim_queue_held
UPDATE conveyor_jobs
SET state = 'running',
    attempts = attempts + 1,
    lease_token = gen_random_uuid()::text,
    lease_expires_at = coalesce(to_timestamp(%(now)s::float8), now())
                       + %(lease)s::float8 * interval '1 second',
    worker_id = %(worker_id)s,
    started_at = coalesce(to_timestamp(%(now)s::float8), now()),
    cancel_requested = false
WHERE id = ANY(ARRAY(
    SELECT id FROM conveyor_jobs
    WHERE state = 'queued' AND rate_key IS NULL AND queue = %(queue)s
      AND task <> ALL(%(held)s::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, date_part('epoch', run_at)
