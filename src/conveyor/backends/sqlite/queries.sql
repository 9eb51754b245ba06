-- Named queries of the SQLite engine. Parameters are :named; times are UNIX seconds passed in
-- as :now by the backend's clock. Leases, beats and leaderships are measured on the machine's
-- boot clock as well (see conveyor/boottime.py): :boot is the boot id and :uptime the seconds
-- since that boot, both NULL where the machine has no boot clock. A deadline is judged on the
-- boot clock when it was written under this boot, is void when written under another (the
-- machine restarted since), and is judged on the wall clock when either side has no boot id.

-- name: pragma_wal
PRAGMA journal_mode = WAL

-- name: pragma_synchronous_normal
PRAGMA synchronous = NORMAL

-- name: pragma_synchronous_full
PRAGMA synchronous = FULL

-- name: pragma_busy_timeout
PRAGMA busy_timeout = {ms}

-- name: data_version
PRAGMA data_version

-- name: begin_immediate
BEGIN IMMEDIATE

-- name: begin_deferred
BEGIN DEFERRED

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS conveyor_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
)

-- name: has_migrations_table
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'conveyor_migrations'

-- name: schema_version
SELECT coalesce(max(version), 0) FROM conveyor_migrations

-- name: record_migration
INSERT INTO conveyor_migrations (version, name, applied_at) VALUES (:version, :name, :now)

-- name: schema_objects
SELECT type, name, tbl_name, sql FROM sqlite_master
WHERE name LIKE 'conveyor\_%' ESCAPE '\' AND name <> 'conveyor_migrations'
ORDER BY type, name

-- name: find_idempotent_live
SELECT id, state FROM conveyor_jobs
WHERE idempotency_key IS NOT NULL AND idempotency_key = :key
  AND (state = 'blocked' OR state = 'scheduled' OR state = 'queued' OR state = 'running'
       OR state = 'retrying')
LIMIT 1

-- name: find_idempotent_any
SELECT id, state FROM conveyor_jobs
WHERE idempotency_key = :key
ORDER BY id DESC
LIMIT 1

-- name: insert_job
-- One keyed job, inside the enqueue's transaction (its id is the cursor's lastrowid).
INSERT INTO conveyor_jobs (
    queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout,
    idempotency_key, created_at
) VALUES (
    :queue, :task, :args, :kwargs, :state, :priority, :run_at, :max_attempts, :timeout,
    :idempotency_key, :now
)

-- name: insert_plain_job
-- The single enqueue's job, without a key (enqueue.insert_single): insert_job with its
-- parameters by position, which SQLite binds a tenth faster than by name.
INSERT INTO conveyor_jobs (
    queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout, created_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: insert_jobs_head
-- The bulk path: one statement inserts a chunk of jobs, this head followed by one row of
-- placeholders per job, joined by commas; the rows take a parameter of their own only for the
-- columns whose values differ within the chunk (see enqueue.py). Binding a flat list of
-- parameters in C is the cheapest way into SQLite from Python (a third faster than executemany
-- or json_each). idempotency_key stays NULL: keyed jobs take insert_job.
INSERT INTO conveyor_jobs (
    created_at, queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout
) VALUES

-- name: last_insert_id
SELECT last_insert_rowid()

-- name: queue_depth
-- Waiting jobs of one queue: the queued ones from the ready index, the others from the small
-- index of jobs waiting for a time or a dependency (each predicate as its index states it), and
-- the queued jobs of rate-limited tasks from conveyor_jobs_rate_ready (not keyed by queue: a
-- walk of the rate-limited backlog, paid only by enqueues into queues with queue_limits).
SELECT (SELECT count(*) FROM conveyor_jobs
        WHERE queue = :queue AND state = 'queued' AND rate_key IS NULL)
     + (SELECT count(*) FROM conveyor_jobs
        WHERE queue = :queue AND (state = 'blocked' OR state = 'scheduled' OR state = 'retrying'))
     + (SELECT count(*) FROM conveyor_jobs
        WHERE queue = :queue AND state = 'queued' AND rate_key IS NOT NULL)

-- name: promote_due
-- Suspects stay waiting for claim_suspect (migration 7); the predicate is the due index's.
UPDATE conveyor_jobs SET state = 'queued'
WHERE (state = 'scheduled' OR state = 'retrying') AND suspect = 0 AND run_at <= :now

-- name: claim_any
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
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, run_at

-- name: claim_queue
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
    ORDER BY priority DESC, run_at, id
    LIMIT :limit
)
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, run_at

-- name: pick_suspect
-- The suspect (migration 7) claim_suspect should take: the best one that is due, in one of
-- :queues (a JSON array, NULL for all) and in a queue that is neither paused nor waiting for
-- its rate limit's next start, nor in :closed (in its quiet hours, which the backend works
-- out), and whose cap, if any, leaves room; of a task neither in :held (behind a breaker that
-- is not closed) nor waiting for its rate limit bucket's next start.
SELECT j.id, j.queue, j.task, j.rate_key FROM conveyor_jobs AS j INDEXED BY conveyor_jobs_suspects
WHERE j.state = 'retrying' AND j.suspect = 1 AND j.run_at <= :now
  AND (:queues IS NULL OR j.queue IN (SELECT value FROM json_each(:queues)))
  AND j.queue NOT IN (SELECT value FROM json_each(:closed))
  AND j.task NOT IN (SELECT value FROM json_each(:held))
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_queue_limits AS l
      WHERE l.queue = j.queue AND (
          l.paused_until > :now OR l.rate_next > :now OR l.max_running <= (
              SELECT count(*) FROM conveyor_jobs AS r
              WHERE r.queue = j.queue AND r.state = 'running')))
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_rate_buckets AS b
      WHERE j.rate_key IS NOT NULL AND b.task = j.task AND b.key = j.rate_key
        AND b.rate_next > :now)
ORDER BY j.priority DESC, j.run_at, j.id
LIMIT 1

-- name: lock_suspect_bucket
-- The rate limit bucket of a suspect being claimed (the write transaction excludes others).
SELECT task, key, rate_count, rate_per, rate_next
FROM conveyor_rate_buckets
WHERE task = :task AND key = :key

-- name: claim_suspect
-- retrying -> running for the suspect :id, alone: only for a worker that holds no running job
-- (prefetched ones included), which then claims nothing else until this run is settled.
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
WHERE id = :id AND state = 'retrying' AND suspect = 1
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_jobs INDEXED BY conveyor_jobs_leases
      WHERE state = 'running' AND worker_id = :worker_id)
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, run_at

-- name: capped_queues
-- Which queues have a gate -- a cap, a pause, quiet hours or a rate limit -- and so take the
-- claim's gated path (see backends/caps.py: read about once a second, not per claim).
SELECT queue FROM conveyor_queue_limits
WHERE max_running IS NOT NULL OR paused_until IS NOT NULL OR quiet IS NOT NULL
   OR rate_count IS NOT NULL

-- name: ready_queues
-- The queues holding ready jobs, in name order, for a claim from every queue while some queue
-- is capped, and for a burst worker that claimed nothing from capped queues: one seek into
-- conveyor_jobs_ready_by_queue per queue (a loose index scan), however many jobs wait.
-- INDEXED BY pins that plan whatever the statistics say: any other walk would step over
-- finished jobs.
WITH RECURSIVE ready (queue) AS (
    SELECT (SELECT queue FROM conveyor_jobs INDEXED BY conveyor_jobs_ready_by_queue
            WHERE state = 'queued' AND rate_key IS NULL ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM conveyor_jobs AS j INDEXED BY conveyor_jobs_ready_by_queue
            WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue > ready.queue
            ORDER BY j.queue LIMIT 1)
    FROM ready WHERE ready.queue IS NOT NULL
)
SELECT queue FROM ready WHERE queue IS NOT NULL

-- name: extend_leases
-- Walks the running jobs (a few thousand at most: the concurrency of all workers) rather than
-- keeping an index on tokens that every claim and finish would have to maintain.
UPDATE conveyor_jobs INDEXED BY conveyor_jobs_leases
SET lease_expires_at = :now + :lease, lease_boot = :boot, lease_expires_uptime = :uptime + :lease
WHERE state = 'running' AND lease_token IN (SELECT value FROM json_each(:tokens))
RETURNING lease_token, cancel_requested

-- name: cancel_requests
-- Repeats the predicate of conveyor_jobs_cancel_requested verbatim, so the index serves it.
SELECT lease_token FROM conveyor_jobs
WHERE state = 'running' AND cancel_requested = 1 AND worker_id = :worker_id

-- name: save_progress
UPDATE conveyor_jobs
SET progress = coalesce(:progress, progress),
    checkpoint = coalesce(:checkpoint, checkpoint)
WHERE id = :id AND lease_token = :token AND state = 'running'

-- name: owns_run
SELECT task FROM conveyor_jobs WHERE id = :id AND lease_token = :token AND state = 'running'

-- name: finish_succeeded
UPDATE conveyor_jobs
SET state = 'succeeded', result = :result, finished_at = :now,
    lease_token = NULL, lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING state, has_children

-- name: finish_retry
UPDATE conveyor_jobs
SET state = 'retrying', run_at = :now + :retry_in,
    errors = json_insert(errors, '$[#]', json(:error)),
    checkpoint = coalesce(:checkpoint, checkpoint),
    -- it returned, so it did not kill its worker: it may run beside others again
    suspect = 0,
    lease_token = NULL, lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING state, has_children

-- name: finish_dead
UPDATE conveyor_jobs
SET state = 'dead', dead_reason = :reason, finished_at = :now,
    errors = CASE WHEN :error IS NULL THEN errors
                  ELSE json_insert(errors, '$[#]', json(:error)) END,
    checkpoint = coalesce(:checkpoint, checkpoint),
    lease_token = NULL, lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING state, has_children

-- name: finish_cancelled
UPDATE conveyor_jobs
SET state = 'cancelled', finished_at = :now,
    errors = CASE WHEN :error IS NULL THEN errors
                  ELSE json_insert(errors, '$[#]', json(:error)) END,
    checkpoint = coalesce(:checkpoint, checkpoint),
    lease_token = NULL, lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING state, has_children

-- name: finish_released
-- Back in the queue without charging the attempt, unless someone asked to cancel the job
-- meanwhile: then it ends cancelled instead of running again. A suspect goes back to wait for
-- claim_suspect.
UPDATE conveyor_jobs
SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                 WHEN suspect = 1 THEN 'retrying'
                 ELSE 'queued' END,
    finished_at = CASE WHEN cancel_requested = 1 THEN :now ELSE NULL END,
    attempts = attempts - 1,
    checkpoint = coalesce(:checkpoint, checkpoint),
    lease_token = NULL, lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING state, has_children

-- name: budget_open_window
INSERT INTO conveyor_retry_budgets (task, window_start, used) VALUES (:task, :now, 0)
ON CONFLICT (task) DO UPDATE SET window_start = :now, used = 0
WHERE window_start + :window <= :now

-- name: budget_take
UPDATE conveyor_retry_budgets SET used = used + 1
WHERE task = :task AND used < :limit
RETURNING used

-- name: rescue_expired
-- Runs whose lease expired go back to wait, as suspects (migration 7). Only a run that was the
-- only one its worker held (alone) is charged: it keeps its attempt and, with none left, the
-- job ends dead. Any other run gets its attempt back: the death cannot be told apart from its
-- neighbours'. Walks the running jobs (the index is keyed by queue first, for caps), never the
-- table.
WITH held (worker_id, alone) AS (
    SELECT worker_id, count(*) = 1 FROM conveyor_jobs INDEXED BY conveyor_jobs_leases
    WHERE state = 'running'
    GROUP BY worker_id
),
lost (id, alone) AS (
    SELECT j.id, held.alone FROM conveyor_jobs AS j INDEXED BY conveyor_jobs_leases
    JOIN held ON held.worker_id IS j.worker_id
    WHERE j.state = 'running'
      AND CASE WHEN j.lease_boot IS NULL OR :boot IS NULL THEN j.lease_expires_at < :now
               WHEN j.lease_boot = :boot THEN j.lease_expires_uptime < :uptime
               ELSE 1 END
      AND (:exclude IS NULL OR j.worker_id IS NOT :exclude)
)
UPDATE conveyor_jobs
SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                 WHEN lost.alone AND attempts >= max_attempts THEN 'dead'
                 ELSE 'retrying' END,
    dead_reason = CASE WHEN cancel_requested = 1 THEN dead_reason
                       WHEN lost.alone AND attempts >= max_attempts THEN
                           'lost: the lease expired on run ' || attempts
                           || ' while the job ran alone in its worker, ' || (lost_runs + 1)
                           || ' run(s) lost in all; the job may be killing or hanging its'
                           || ' worker'
                       ELSE dead_reason END,
    finished_at = CASE WHEN cancel_requested = 1 OR (lost.alone AND attempts >= max_attempts)
                       THEN :now ELSE NULL END,
    attempts = CASE WHEN lost.alone OR cancel_requested = 1 THEN attempts
                    ELSE attempts - 1 END,
    suspect = CASE WHEN cancel_requested = 1 OR (lost.alone AND attempts >= max_attempts)
                   THEN 0 ELSE 1 END,
    lost_runs = lost_runs + 1,
    run_at = :now,
    lease_token = NULL,
    lease_expires_at = NULL
FROM lost
WHERE conveyor_jobs.id = lost.id
RETURNING conveyor_jobs.id, conveyor_jobs.state, conveyor_jobs.has_children

-- name: cancel_waiting
UPDATE conveyor_jobs SET state = 'cancelled', finished_at = :now
WHERE id = :id AND state IN ('blocked', 'scheduled', 'queued', 'retrying')
RETURNING has_children

-- name: request_cancel
UPDATE conveyor_jobs SET cancel_requested = 1
WHERE id = :id AND state = 'running'

-- name: requeue
UPDATE conveyor_jobs
SET state = 'queued', run_at = :now, finished_at = NULL, dead_reason = NULL,
    cancel_requested = 0, stopped_by = NULL,
    max_attempts = CASE WHEN :reset THEN max_attempts ELSE max(max_attempts, attempts + 1) END,
    attempts = CASE WHEN :reset THEN 0 ELSE attempts END,
    lost_runs = CASE WHEN :reset THEN 0 ELSE lost_runs END
WHERE id = :id AND state IN ('dead', 'cancelled')

-- name: discard
DELETE FROM conveyor_jobs WHERE id = :id AND state = 'dead'

-- name: get_job
SELECT * FROM conveyor_jobs WHERE id = :id

-- name: list_jobs
SELECT * FROM conveyor_jobs
WHERE (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit

-- name: list_jobs_by_key
-- The jobs holding one idempotency key: a lookup in conveyor_jobs_idempotency_any, whatever
-- the size of the table.
SELECT * FROM conveyor_jobs
WHERE idempotency_key = :key
  AND (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit

-- name: stats
SELECT queue, state, count(*) FROM conveyor_jobs GROUP BY queue, state

-- name: oldest_ready
-- The run_at of each queue's oldest ready job (conveyor top), without walking the ready rows:
-- loose scans of conveyor_jobs_ready_by_queue find each queue, then each of its priorities,
-- then the first run_at of each (queue, priority), a few probes each. Jobs held by a task's
-- rate limit lie in another index, without their queue: those are read whole.
WITH RECURSIVE queues(queue) AS (
    SELECT min(queue) FROM conveyor_jobs WHERE state = 'queued' AND rate_key IS NULL
  UNION ALL
    SELECT (SELECT min(j.queue) FROM conveyor_jobs j
            WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue > queues.queue)
    FROM queues WHERE queues.queue IS NOT NULL
),
groups(queue, priority) AS (
    SELECT queue, (SELECT max(j.priority) FROM conveyor_jobs j
                   WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue = queues.queue)
    FROM queues WHERE queue IS NOT NULL
  UNION ALL
    SELECT queue, (SELECT max(j.priority) FROM conveyor_jobs j
                   WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue = groups.queue
                     AND j.priority < groups.priority)
    FROM groups WHERE priority IS NOT NULL
)
SELECT queue, min(run_at) FROM (
    SELECT queue, (SELECT min(j.run_at) FROM conveyor_jobs j
                   WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue = groups.queue
                     AND j.priority = groups.priority) AS run_at
    FROM groups WHERE priority IS NOT NULL
  UNION ALL
    SELECT queue, run_at FROM conveyor_jobs WHERE state = 'queued' AND rate_key IS NOT NULL
)
GROUP BY queue

-- name: running_by_worker
SELECT worker_id, count(*) FROM conveyor_jobs
WHERE state = 'running' AND worker_id IS NOT NULL
GROUP BY worker_id

-- name: prune
-- A parent stays while a child of its is live: the child may read its result.
DELETE FROM conveyor_jobs
WHERE id IN (
    SELECT j.id FROM conveyor_jobs AS j
    WHERE j.finished_at IS NOT NULL AND j.finished_at < :cutoff
      AND j.state IN ('succeeded', 'cancelled')
      AND NOT (j.has_children = 1 AND EXISTS (
          SELECT 1 FROM conveyor_job_edges AS e JOIN conveyor_jobs AS c ON c.id = e.child_id
          WHERE e.parent_id = j.id
            AND c.state IN ('blocked', 'scheduled', 'queued', 'running', 'retrying')))
    LIMIT :batch
)
RETURNING id

-- name: next_due
SELECT min(run_at) FROM conveyor_jobs
WHERE (state = 'scheduled' OR state = 'retrying') AND suspect = 0

-- name: job_state
SELECT state FROM conveyor_jobs WHERE id = :id

-- name: finish_succeeded_many
-- The hot path of a busy worker: every success of a batch in one statement. :outcomes is a JSON
-- array of [id, token, result JSON text] with distinct ids; RETURNING names the jobs whose run
-- was still owned (it can only name columns of the updated table, so ids, not tokens).
UPDATE conveyor_jobs
SET state = 'succeeded', result = o.result, finished_at = :now,
    lease_token = NULL, lease_expires_at = NULL
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS token,
           json_extract(value, '$[2]') AS result
    FROM json_each(:outcomes)
) AS o
WHERE conveyor_jobs.id = o.id AND conveyor_jobs.lease_token = o.token
  AND conveyor_jobs.state = 'running'
RETURNING conveyor_jobs.id, conveyor_jobs.has_children

-- name: mark_dead_workers
-- Workers that went dead_after seconds without a beat, counted from :since at the earliest (the
-- sweeper's view of the database was broken before; :since_uptime on the boot clock), those
-- that last beat under another boot, and those the sweeper knows are dead (:known_dead, a JSON
-- array of ids). Whoever sweeps is alive: :exclude.
UPDATE conveyor_workers SET state = 'dead'
WHERE (state = 'running' OR state = 'stopping')
  AND (CASE WHEN beat_boot IS NULL OR :boot IS NULL
                THEN max(last_beat_at, coalesce(:since, last_beat_at)) + dead_after < :now
            WHEN beat_boot = :boot
                THEN max(last_beat_uptime, coalesce(:since_uptime, last_beat_uptime))
                     + dead_after < :uptime
            ELSE 1 END
       OR id IN (SELECT value FROM json_each(:known_dead)))
  AND (:exclude IS NULL OR id IS NOT :exclude)
RETURNING id

-- name: rescue_dead_workers
-- rescue_expired for the runs of the workers just declared dead (:workers, a JSON array of ids),
-- whatever their lease says: the same outcomes, and their tokens are void from here on.
WITH held (worker_id, alone) AS (
    SELECT worker_id, count(*) = 1 FROM conveyor_jobs INDEXED BY conveyor_jobs_leases
    WHERE state = 'running' AND worker_id IN (SELECT value FROM json_each(:workers))
    GROUP BY worker_id
),
lost (id, alone) AS (
    SELECT j.id, held.alone FROM conveyor_jobs AS j INDEXED BY conveyor_jobs_leases
    JOIN held ON held.worker_id = j.worker_id
    WHERE j.state = 'running'
)
UPDATE conveyor_jobs
SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                 WHEN lost.alone AND attempts >= max_attempts THEN 'dead'
                 ELSE 'retrying' END,
    dead_reason = CASE WHEN cancel_requested = 1 THEN dead_reason
                       WHEN lost.alone AND attempts >= max_attempts THEN
                           'lost: its worker died during run ' || attempts
                           || ' while the job ran alone in it, ' || (lost_runs + 1)
                           || ' run(s) lost in all; the job may be killing or hanging its'
                           || ' worker'
                       ELSE dead_reason END,
    finished_at = CASE WHEN cancel_requested = 1 OR (lost.alone AND attempts >= max_attempts)
                       THEN :now ELSE NULL END,
    attempts = CASE WHEN lost.alone OR cancel_requested = 1 THEN attempts
                    ELSE attempts - 1 END,
    suspect = CASE WHEN cancel_requested = 1 OR (lost.alone AND attempts >= max_attempts)
                   THEN 0 ELSE 1 END,
    lost_runs = lost_runs + 1,
    run_at = :now,
    lease_token = NULL,
    lease_expires_at = NULL
FROM lost
WHERE conveyor_jobs.id = lost.id
RETURNING conveyor_jobs.id, conveyor_jobs.state, conveyor_jobs.has_children

-- name: forget_dead_workers
DELETE FROM conveyor_workers WHERE state = 'dead' AND last_beat_at < :now - :forget_after

-- name: register_worker
INSERT INTO conveyor_workers (
    id, host, pid, machine, queues, concurrency, state, started_at, last_beat_at, beat_interval,
    dead_after, beat_boot, last_beat_uptime
) VALUES (
    :id, :host, :pid, :machine, :queues, :concurrency, 'running', :now, :now, :beat_interval,
    :dead_after, :boot, :uptime
)
ON CONFLICT (id) DO UPDATE SET
    state = 'running', last_beat_at = excluded.last_beat_at,
    beat_boot = excluded.beat_boot, last_beat_uptime = excluded.last_beat_uptime,
    beat_interval = excluded.beat_interval, dead_after = excluded.dead_after

-- name: beat_worker
UPDATE conveyor_workers
SET last_beat_at = :now, beat_boot = :boot, last_beat_uptime = :uptime, state = :state
WHERE id = :id AND state <> 'dead'
RETURNING stop_requested

-- name: worker_stop_requested
-- One probe of the primary key: workers ask about once a second.
SELECT stop_requested FROM conveyor_workers WHERE id = :id

-- name: deregister_worker
DELETE FROM conveyor_workers WHERE id = :id

-- name: release_leaderships
DELETE FROM conveyor_leaders WHERE holder = :holder

-- name: release_dead_leaderships
DELETE FROM conveyor_leaders WHERE holder IN (SELECT value FROM json_each(:workers))

-- name: list_workers
SELECT id, host, pid, machine, queues, concurrency, state, stop_requested, started_at,
       last_beat_at, beat_interval, dead_after, beat_boot, last_beat_uptime
FROM conveyor_workers
ORDER BY started_at, id

-- name: request_worker_stop
UPDATE conveyor_workers SET stop_requested = 1
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id

-- name: request_every_worker_stop
UPDATE conveyor_workers SET stop_requested = 1
WHERE state <> 'dead'
RETURNING id

-- name: acquire_leadership
-- Taken when free or lapsed, renewed by its holder; otherwise nothing changes and nothing is
-- returned.
INSERT INTO conveyor_leaders (name, holder, expires_at, boot, expires_uptime)
VALUES (:name, :holder, :now + :ttl, :boot, :uptime + :ttl)
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder, expires_at = excluded.expires_at,
    boot = excluded.boot, expires_uptime = excluded.expires_uptime
WHERE conveyor_leaders.holder = excluded.holder
   OR CASE WHEN conveyor_leaders.boot IS NULL OR :boot IS NULL
               THEN conveyor_leaders.expires_at < :now
           WHEN conveyor_leaders.boot = :boot THEN conveyor_leaders.expires_uptime < :uptime
           ELSE 1 END
RETURNING holder

-- name: release_leadership
DELETE FROM conveyor_leaders WHERE name = :name AND holder = :holder

-- name: set_concurrency_limit
INSERT INTO conveyor_queue_limits (queue, max_running) VALUES (:queue, :max_running)
ON CONFLICT (queue) DO UPDATE SET max_running = excluded.max_running

-- name: remove_concurrency_limit
-- The row stays: it may hold the queue's other gates (see queue_gates).
UPDATE conveyor_queue_limits SET max_running = NULL WHERE queue = :queue

-- name: queue_limits
SELECT queue, max_running FROM conveyor_queue_limits
WHERE max_running IS NOT NULL
ORDER BY queue

-- ===== Queue gates: pause, quiet hours, rate limits (conveyor/limits/) ======================

-- name: queue_gates
-- The gates of the queues in the JSON array :queues, as conveyor.limits.QueueGate reads them
-- (the running jobs are counted for capped queues only, from conveyor_jobs_leases), and :now.
-- Exact inside the claim's write transaction, which no other writer shares.
SELECT l.queue, l.max_running,
       CASE WHEN l.max_running IS NOT NULL THEN (
           SELECT count(*) FROM conveyor_jobs AS j WHERE j.queue = l.queue AND j.state = 'running')
       END,
       l.paused_until, l.quiet, l.rate_count, l.rate_per, l.rate_next, :now
FROM conveyor_queue_limits AS l
WHERE l.queue IN (SELECT value FROM json_each(:queues))

-- name: every_queue_gate
-- queue_gates for every queue that has a row, for people (queues list, jobs why).
SELECT l.queue, l.max_running,
       CASE WHEN l.max_running IS NOT NULL THEN (
           SELECT count(*) FROM conveyor_jobs AS j WHERE j.queue = l.queue AND j.state = 'running')
       END,
       l.paused_until, l.quiet, l.rate_count, l.rate_per, l.rate_next, :now
FROM conveyor_queue_limits AS l
ORDER BY l.queue

-- name: take_rate
-- Where a claim that started jobs of a rate-limited queue moves its next start.
UPDATE conveyor_queue_limits SET rate_next = :rate_next WHERE queue = :queue

-- name: pause_queue
-- :until is 9e999 (infinity) for a pause that lasts until resumed.
INSERT INTO conveyor_queue_limits (queue, paused_until) VALUES (:queue, :until)
ON CONFLICT (queue) DO UPDATE SET paused_until = excluded.paused_until

-- name: resume_queue
UPDATE conveyor_queue_limits SET paused_until = NULL WHERE queue = :queue

-- name: set_quiet_hours
INSERT INTO conveyor_queue_limits (queue, quiet) VALUES (:queue, :quiet)
ON CONFLICT (queue) DO UPDATE SET quiet = excluded.quiet

-- name: set_rate_limit
-- A changed limit keeps the next start already promised; a removed one forgets it.
INSERT INTO conveyor_queue_limits (queue, rate_count, rate_per) VALUES (:queue, :count, :per)
ON CONFLICT (queue) DO UPDATE
SET rate_count = excluded.rate_count, rate_per = excluded.rate_per,
    rate_next = CASE WHEN excluded.rate_count IS NULL THEN NULL ELSE rate_next END

-- ===== Rate limits of tasks, per key (conveyor/limits/rates.py) =============================

-- name: rate_buckets_exist
-- Whether any task has a rate limit bucket: claims look at rate-limited jobs only then (read
-- about once a second, see backends/caps.py).
SELECT 'buckets' FROM conveyor_rate_buckets LIMIT 1

-- name: upsert_rate_bucket
-- At enqueue: the bucket of a rate-limited task and key, with the limit the task declares now.
INSERT INTO conveyor_rate_buckets (task, key, rate_count, rate_per)
VALUES (:task, :key, :count, :per)
ON CONFLICT (task, key) DO UPDATE
SET rate_count = excluded.rate_count, rate_per = excluded.rate_per

-- name: mark_rate_key
-- At enqueue, in the same transaction: the new jobs of the JSON array :ids take their bucket's
-- key, which moves them out of the ready indexes before any claim can see them.
UPDATE conveyor_jobs SET rate_key = :key WHERE id IN (SELECT value FROM json_each(:ids))

-- name: pick_rate_limited
-- For the claim: the buckets whose next start has come and that hold a queued job in the JSON
-- array :queues (NULL: any queue), each with its first job, the bucket waiting longest first;
-- only buckets of the tasks in :only (NULL: any) that are not in :held (behind breakers that
-- are not closed). One probe of conveyor_jobs_rate_ready per such bucket.
SELECT task, key, rate_count, rate_per, rate_next, job FROM (
    SELECT b.task, b.key, b.rate_count, b.rate_per, b.rate_next, (
        SELECT j.id FROM conveyor_jobs AS j INDEXED BY conveyor_jobs_rate_ready
        WHERE j.state = 'queued' AND j.rate_key IS NOT NULL
          AND j.task = b.task AND j.rate_key = b.key
          AND (:queues IS NULL OR j.queue IN (SELECT value FROM json_each(:queues)))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT 1
    ) AS job
    FROM conveyor_rate_buckets AS b
    WHERE (b.rate_next IS NULL OR b.rate_next <= :now)
      AND b.task NOT IN (SELECT value FROM json_each(:held))
      AND (:only IS NULL OR b.task IN (SELECT value FROM json_each(:only)))
)
WHERE job IS NOT NULL
ORDER BY coalesce(rate_next, 0), task, key
LIMIT :limit

-- name: claim_ids
-- claim_any for the jobs of the JSON array :ids that are still queued.
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
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'queued'
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, run_at

-- name: take_bucket
UPDATE conveyor_rate_buckets SET rate_next = :rate_next WHERE task = :task AND key = :key

-- name: next_rate_token
-- The earliest next start of a bucket that holds a queued job in :queues (NULL: any queue):
-- when a worker whose claim found no token should look again.
SELECT min(b.rate_next) FROM conveyor_rate_buckets AS b
WHERE b.rate_next > :now AND EXISTS (
    SELECT 1 FROM conveyor_jobs AS j INDEXED BY conveyor_jobs_rate_ready
    WHERE j.state = 'queued' AND j.rate_key IS NOT NULL
      AND j.task = b.task AND j.rate_key = b.key
      AND (:queues IS NULL OR j.queue IN (SELECT value FROM json_each(:queues))))

-- name: rate_bucket_of
-- The bucket of job :id, for `jobs why`.
SELECT b.task, b.key, b.rate_count, b.rate_per, b.rate_next
FROM conveyor_jobs AS j
JOIN conveyor_rate_buckets AS b ON b.task = j.task AND b.key = j.rate_key
WHERE j.id = :id

-- name: queues_of
-- The queues of the jobs of the JSON array :ids (rate-limited jobs a claim picked, whose queues
-- may have gates).
SELECT id, queue FROM conveyor_jobs WHERE id IN (SELECT value FROM json_each(:ids))
-- Dependencies (conveyor/workflows/). Lists are JSON arrays; parallel arrays pair by index.

-- name: lock_parents
-- Marks the parents of jobs being enqueued (their finish will look for children from now on)
-- and reads their states.
UPDATE conveyor_jobs SET has_children = 1
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id, state

-- name: insert_edges
-- :rows holds [parent, child] pairs (one array: a join of two json_each by key would be
-- quadratic).
INSERT OR IGNORE INTO conveyor_job_edges (parent_id, child_id)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:rows)

-- name: set_dependency_states
-- The jobs of an enqueue that have parents, once the parents' states are known: blocked with
-- their count of parents not yet ended, or already ended by a parent's failure, or left as
-- inserted (every parent succeeded) with only their policy recorded.
UPDATE conveyor_jobs
SET state = coalesce(d.state, conveyor_jobs.state),
    pending_parents = d.pending,
    on_parent_failure = d.policy,
    dead_reason = d.reason,
    stopped_by = d.stopped_by,
    finished_at = CASE WHEN d.state = 'dead' OR d.state = 'cancelled' THEN :now END
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS state,
           json_extract(value, '$[2]') AS pending, json_extract(value, '$[3]') AS policy,
           json_extract(value, '$[4]') AS reason, json_extract(value, '$[5]') AS stopped_by
    FROM json_each(:rows)
) AS d
WHERE conveyor_jobs.id = d.id

-- name: set_workflow
UPDATE conveyor_jobs SET workflow_id = :workflow_id
WHERE id IN (SELECT value FROM json_each(:ids))

-- name: release_children
-- The children of parents that just succeeded: one parent fewer to wait for each, ready (or
-- scheduled) once none is left.
UPDATE conveyor_jobs
SET pending_parents = pending_parents - e.n,
    state = CASE WHEN pending_parents - e.n > 0 THEN 'blocked'
                 WHEN on_parent_failure = 'run_only' AND stopped_by IS NULL THEN 'cancelled'
                 WHEN run_at > :now THEN 'scheduled'
                 ELSE 'queued' END,
    finished_at = CASE WHEN pending_parents - e.n = 0 AND on_parent_failure = 'run_only'
                            AND stopped_by IS NULL THEN :now END,
    dead_reason = CASE WHEN pending_parents - e.n = 0 AND on_parent_failure = 'run_only'
                            AND stopped_by IS NULL THEN 'not needed: every parent succeeded' END
FROM (
    SELECT child_id, count(*) AS n FROM conveyor_job_edges
    WHERE parent_id IN (SELECT value FROM json_each(:parents))
    GROUP BY child_id
) AS e
WHERE conveyor_jobs.id = e.child_id AND conveyor_jobs.state = 'blocked'
RETURNING conveyor_jobs.id, conveyor_jobs.queue, conveyor_jobs.state

-- name: unblock
-- :rows holds [job id, n, failed]: n parents fewer for each of those jobs, whose policy runs
-- them after a parent's failure; a failure callback ('run_only') records the parent that
-- failed (failed, else NULL) in stopped_by, which makes it run rather than be cancelled.
UPDATE conveyor_jobs
SET pending_parents = pending_parents - e.n,
    stopped_by = coalesce(stopped_by, e.failed),
    state = CASE WHEN pending_parents - e.n > 0 THEN 'blocked'
                 WHEN run_at > :now THEN 'scheduled'
                 ELSE 'queued' END
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS n,
           json_extract(value, '$[2]') AS failed
    FROM json_each(:rows)
) AS e
WHERE conveyor_jobs.id = e.id AND conveyor_jobs.state = 'blocked'
RETURNING conveyor_jobs.id, conveyor_jobs.queue, conveyor_jobs.state

-- name: blocked_children
-- The blocked children of parents that just ended dead or cancelled, with their policy.
SELECT c.id, e.parent_id, c.on_parent_failure
FROM conveyor_job_edges AS e JOIN conveyor_jobs AS c ON c.id = e.child_id
WHERE e.parent_id IN (SELECT value FROM json_each(:parents)) AND c.state = 'blocked'
ORDER BY c.id, e.parent_id

-- name: stop_children
-- Blocked children ended by a parent's failure, as their policy says (cancelled or dead).
UPDATE conveyor_jobs
SET state = d.state, dead_reason = d.reason, stopped_by = d.stopped_by, finished_at = :now
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS state,
           json_extract(value, '$[2]') AS reason, json_extract(value, '$[3]') AS stopped_by
    FROM json_each(:rows)
) AS d
WHERE conveyor_jobs.id = d.id AND conveyor_jobs.state = 'blocked'
RETURNING conveyor_jobs.id, conveyor_jobs.state, conveyor_jobs.has_children

-- name: reblock_children
-- A requeued parent is unfinished again: its still-blocked children wait for it once more.
UPDATE conveyor_jobs
SET pending_parents = pending_parents + 1
WHERE state = 'blocked' AND id IN (
    SELECT child_id FROM conveyor_job_edges WHERE parent_id = :id)

-- name: stopped_children
SELECT c.id FROM conveyor_job_edges AS e JOIN conveyor_jobs AS c ON c.id = e.child_id
WHERE e.parent_id IN (SELECT value FROM json_each(:parents))
  AND c.stopped_by = e.parent_id AND (c.state = 'dead' OR c.state = 'cancelled')
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_job_edges AS o JOIN conveyor_jobs AS p ON p.id = o.parent_id
      WHERE o.child_id = c.id AND o.parent_id <> e.parent_id
        AND (p.state = 'dead' OR p.state = 'cancelled'))
ORDER BY c.id

-- name: revive_children
-- Children ended by a parent's failure, back to waiting for their parents not yet succeeded.
UPDATE conveyor_jobs
SET state = 'blocked', finished_at = NULL, dead_reason = NULL, stopped_by = NULL,
    cancel_requested = 0,
    pending_parents = (
        SELECT count(*) FROM conveyor_job_edges AS e JOIN conveyor_jobs AS p
          ON p.id = e.parent_id
        WHERE e.child_id = conveyor_jobs.id AND p.state <> 'succeeded')
WHERE id IN (SELECT value FROM json_each(:ids)) AND (state = 'dead' OR state = 'cancelled')

-- name: job_parents
SELECT p.id, p.state, p.result FROM conveyor_job_edges AS e JOIN conveyor_jobs AS p
  ON p.id = e.parent_id
WHERE e.child_id = :id
ORDER BY p.id

-- name: job_children
SELECT c.id, c.state FROM conveyor_job_edges AS e JOIN conveyor_jobs AS c ON c.id = e.child_id
WHERE e.parent_id = :id
ORDER BY c.id

-- name: workflow_jobs
SELECT * FROM conveyor_jobs WHERE workflow_id = :workflow_id ORDER BY id

-- name: forget_edges
DELETE FROM conveyor_job_edges WHERE child_id IN (SELECT value FROM json_each(:ids))

-- Escalation (conveyor/workflows/escalation.py), in the transaction that wrote the job dead.

-- name: escalate
-- A job of :task with the arguments of job :from; none when :from is itself an escalated copy
-- of that same task (a task escalates to itself once).
INSERT INTO conveyor_jobs (
    queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout, created_at,
    escalated_from
)
SELECT :queue, :task, args, kwargs, 'queued', :priority, :now, :max_attempts, :timeout, :now, id
FROM conveyor_jobs
WHERE id = :from AND NOT (task = :task AND escalated_from IS NOT NULL)
RETURNING id

-- name: link_escalation
UPDATE conveyor_jobs
SET escalated_to = :to,
    dead_reason = 'escalated to job ' || :to || ' (' || :task || ', on ' || :why || '): '
                  || coalesce(dead_reason, '')
WHERE id = :from

-- name: set_trace_contexts
-- Jobs enqueued with tracing on (conveyor.tracing): their traceparent, in the enqueue's
-- transaction. :rows: [id, traceparent] as JSON.
UPDATE conveyor_jobs
SET trace_context = (SELECT json_extract(r.value, '$[1]') FROM json_each(:rows) AS r
                     WHERE json_extract(r.value, '$[0]') = conveyor_jobs.id)
WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(:rows))

-- name: trace_context
SELECT trace_context FROM conveyor_jobs WHERE id = :id
