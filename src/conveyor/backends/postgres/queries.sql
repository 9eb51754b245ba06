-- Named queries of the PostgreSQL engine: the same names as the SQLite engine's queries.sql
-- wherever the operation is the same, so the two dialects diff cleanly.
--
-- Parameters are psycopg's %(name)s (a literal percent sign would be written %%); arrays are
-- passed as %(name)b, in binary, which psycopg dumps several times faster. Queries never
-- name the schema: every pooled connection runs with search_path set to settings.postgres_schema.
-- Templates marked "composed" hold {placeholders} filled with psycopg.sql.Identifier.
--
-- Time: every comparison happens in DATABASE time. %(now)s is NULL in production, making
-- coalesce(to_timestamp(%(now)s::float8), now()) the transaction's start time; tests pass the
-- fake clock's UNIX seconds instead. The Backend API speaks UNIX seconds: times leave the
-- database through date_part('epoch', ...) (float8, no numeric detour) and enter it through
-- to_timestamp(); durations are seconds times interval '1 second'.
--
-- Row picking: "WHERE id = ANY(ARRAY(SELECT id ... FOR UPDATE SKIP LOCKED))", not "id IN
-- (SELECT ...)". Once psycopg prepares a statement, the server may switch to a generic plan,
-- which cannot see the LIMIT's value and guesses it at 10% of the table; with IN it then
-- hash-joins against a sequential scan of the whole jobs table. The ARRAY is computed once
-- (an InitPlan) and the outer UPDATE probes the primary key, whatever the estimates.

-- name: configure_session
SELECT set_config('search_path', %(schema)s, false),
       set_config('lock_timeout', %(lock_timeout)s, false)

-- name: borrow_session
-- A connection of the application's own pool, lent for one operation (lent.py): point the
-- session at Conveyor's schema and lock_timeout, returning the application's values, which
-- configure_session puts back afterwards.
SELECT caller.search_path, caller.lock_timeout,
       set_config('search_path', %(schema)s, false),
       set_config('lock_timeout', %(lock_timeout)s, false)
FROM (SELECT current_setting('search_path') AS search_path,
             current_setting('lock_timeout') AS lock_timeout OFFSET 0) AS caller

-- name: server_now
SELECT date_part('epoch', clock_timestamp())

-- name: create_schema
-- composed
CREATE SCHEMA IF NOT EXISTS {schema}

-- name: listen
-- composed
LISTEN {channel}

-- name: notify_queues
-- Delivered at commit, once per queue: the payload tells listeners which queue has work.
SELECT pg_notify(%(channel)s, queue) FROM unnest(%(queues)b::text[]) AS queue

-- name: notify_pending
-- The notifier's send (notifier.py), after the commits it tells of: the wake-ups of single
-- enqueues (channel <schema>_jobs, payload the queue) and one notification of the transactions
-- that ended jobs meanwhile (channel <schema>_finished, payload ''), on which those waiting for
-- results read theirs again.
SELECT pg_notify(c, p) FROM unnest(%(channels)b::text[], %(payloads)b::text[]) AS t (c, p)

-- name: notify_one
-- notify_pending for the usual send, a single enqueue's wake-up alone: two text parameters
-- cost the client a third less than two arrays.
SELECT pg_notify(%(channel)s, %(payload)s)

-- name: wake_after_commit
-- A single enqueue's wake-up, sent behind its INSERT in the same round trip (pipeline mode) as
-- a transaction of its own, which starts once the INSERT has committed: never in the INSERT's
-- transaction, whose commit would then hold the server-wide NOTIFY lock through its disk flush
-- (see notifier.py). Nothing here must survive a crash, so its commit waits for no flush.
SELECT set_config('synchronous_commit', 'off', true), pg_notify(%(channel)s, %(payload)s)

-- name: notifier_session
-- The session that sends the notifications after their commits (notifier.py): its
-- transactions write nothing that must survive a crash, so their commits need not wait for a
-- disk flush.
SET synchronous_commit TO off

-- name: migration_lock
-- Concurrent workers starting at once: the first migrates, the others wait and find nothing to do.
SELECT pg_advisory_xact_lock(hashtext('conveyor migrate'), hashtext(%(schema)s))

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS conveyor_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL
)

-- name: has_migrations_table
SELECT to_regclass('conveyor_migrations') IS NOT NULL

-- name: schema_version
SELECT coalesce(max(version), 0) FROM conveyor_migrations

-- name: record_migration
INSERT INTO conveyor_migrations (version, name, applied_at) VALUES (%(version)s, %(name)s, now())

-- name: local_search_path
-- For verify_schema: point this transaction only at a scratch (or the live) schema.
SELECT set_config('search_path', %(schema)s, true)

-- name: enter_schema
-- Enqueue inside an application's transaction, on its connection: point the rest of this
-- transaction at Conveyor's schema, and return the search_path to put back afterwards and the
-- database's clock (statement time: the application's transaction may have begun long ago).
SELECT caller.search_path, date_part('epoch', clock_timestamp()),
       set_config('search_path', %(schema)s, true)
FROM (SELECT current_setting('search_path') AS search_path OFFSET 0) AS caller

-- name: undo_enqueue
-- A transactional enqueue that failed after writing (QueueFull) takes its rows out again, in
-- the application's transaction, which it does not own and so cannot roll back.
DELETE FROM conveyor_jobs WHERE id = ANY(%(ids)b::int8[])

-- name: leave_schema
-- The application's search_path again, for the rest of its transaction.
SELECT set_config('search_path', %(search_path)s, true)

-- name: schema_objects
-- What verify_schema compares: tables (with storage options), columns, constraints and indexes
-- of one schema, rendered by the server's own deparsers. Index definitions name their table
-- schema-qualified; the schema is cut out so two schemas can be compared.
SELECT 'table' AS type, c.relname AS name, coalesce(array_to_string(c.reloptions, ', '), '') AS sql
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind = 'r' AND c.relname <> 'conveyor_migrations'
UNION ALL
SELECT 'column', c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod)
       || coalesce(' COLLATE ' || quote_ident(co.collname), '')
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                             WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation AND co.collname <> 'default'
WHERE n.nspname = %(schema)s AND c.relkind = 'r' AND c.relname <> 'conveyor_migrations'
  AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname <> 'conveyor_migrations'
UNION ALL
SELECT 'index', i.relname,
       replace(pg_get_indexdef(i.oid), ' ON ' || quote_ident(%(schema)s) || '.', ' ON ')
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname <> 'conveyor_migrations'
ORDER BY 1, 2

-- name: find_idempotent_any
-- Latest job holding each key in any state, a live holder first (a requeued old job may be live
-- while a newer finished one shares its key).
SELECT DISTINCT ON (idempotency_key) idempotency_key, id, state
FROM conveyor_jobs
WHERE idempotency_key = ANY(%(keys)b::text[])
ORDER BY idempotency_key,
         state IN ('blocked', 'scheduled', 'queued', 'running', 'retrying') DESC,
         id DESC

-- name: create_enqueue_stage
-- The bulk path: COPY lands rows in this temporary table (COPY is the fastest way into the
-- server, but cannot return ids), one INSERT ... SELECT moves them into the jobs table.
CREATE TEMPORARY TABLE conveyor_enqueue_stage (
    ord             bigint GENERATED ALWAYS AS IDENTITY,
    queue           text,
    task            text,
    args            text,
    kwargs          text,
    priority        integer,
    run_at          double precision,
    delay           double precision,
    max_attempts    integer,
    timeout         double precision,
    idempotency_key text
) ON COMMIT DROP

-- name: copy_enqueue_stage
COPY conveyor_enqueue_stage (
    queue, task, args, kwargs, priority, run_at, delay, max_attempts, timeout, idempotency_key
) FROM STDIN

-- name: drop_enqueue_stage
-- At once, not at commit: an application's transaction may enqueue another large batch.
DROP TABLE conveyor_enqueue_stage

-- name: reserve_jobs
-- The bulk path without keys, step 1: the clock, %(count)s ids from the jobs table's own
-- sequence, and one NOTIFY per queue (delivered at commit, discarded if the COPY that follows
-- fails). The ids are known before the rows exist, so the rows can be COPYed straight in.
-- Only the ends of the ids travel: unless another session drew from the sequence meanwhile,
-- they are one unbroken run (last - first + 1 = count); otherwise reserve_ids draws again.
WITH clock AS (SELECT coalesce(to_timestamp(%(now)s::float8), now()) AS now),
drawn AS (
    SELECT min(id) AS first, max(id) AS last
    FROM (SELECT nextval('conveyor_jobs_id_seq') AS id FROM generate_series(1, %(count)s)) AS ids
)
SELECT date_part('epoch', clock.now), drawn.first, drawn.last,
       (SELECT count(pg_notify(%(channel)s, queue)) FROM unnest(%(queues)b::text[]) AS queue)
FROM clock, drawn

-- name: reserve_ids
-- reserve_jobs when its run of ids was broken by another session: every id, in order (one
-- session's nextval() calls ascend, so they follow the order of the batch). The broken run's
-- ids are left unused, gaps like those of any rolled-back insert.
SELECT ARRAY(SELECT nextval('conveyor_jobs_id_seq') FROM generate_series(1, %(count)s))

-- name: copy_jobs
-- The bulk path without keys, step 2: rows with their reserved ids, states and due times.
COPY conveyor_jobs (
    id, queue, task, args, kwargs, state, priority, max_attempts, timeout, run_at, created_at
) FROM STDIN

-- name: copy_jobs_due_now
-- copy_jobs for a batch due at once on the server's clock: run_at and created_at are left to
-- their default, now(), the very clock reserve_jobs read in this transaction.
COPY conveyor_jobs (id, queue, task, args, kwargs, state, priority, max_attempts, timeout)
FROM STDIN

-- name: insert_jobs_staged
-- An open statement, completed by [skip_held_keys and] new_jobs_notify: the whole enqueue is
-- one statement, which inserts, returns the new ids and sends the NOTIFYs.
WITH clock AS (SELECT coalesce(to_timestamp(%(now)s::float8), now()) AS now),
rows AS (
    SELECT s.*, clock.now,
           coalesce(to_timestamp(s.run_at), clock.now + s.delay * interval '1 second') AS due
    FROM clock, conveyor_enqueue_stage AS s
),
new AS (
    INSERT INTO conveyor_jobs (
        queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout,
        idempotency_key, created_at
    )
    SELECT queue, task, args::json, kwargs::json,
           CASE WHEN due > now THEN 'scheduled' ELSE 'queued' END,
           priority, due, max_attempts, timeout, idempotency_key, now
    FROM rows
    ORDER BY ord

-- name: insert_jobs
-- The small-batch path: the same, rows passed as one array per column.
WITH clock AS (SELECT coalesce(to_timestamp(%(now)s::float8), now()) AS now),
rows AS (
    SELECT s.*, clock.now,
           coalesce(to_timestamp(s.run_at), clock.now + s.delay * interval '1 second') AS due
    FROM clock, unnest(
        %(queue)b::text[], %(task)b::text[], %(args)b::text[], %(kwargs)b::text[],
        %(priority)b::int4[], %(run_at)b::float8[], %(delay)b::float8[],
        %(max_attempts)b::int4[], %(timeout)b::float8[], %(idempotency_key)b::text[]
    ) WITH ORDINALITY AS s (
        queue, task, args, kwargs, priority, run_at, delay, max_attempts, timeout,
        idempotency_key, ord
    )
),
new AS (
    INSERT INTO conveyor_jobs (
        queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout,
        idempotency_key, created_at
    )
    SELECT queue, task, args::json, kwargs::json,
           CASE WHEN due > now THEN 'scheduled' ELSE 'queued' END,
           priority, due, max_attempts, timeout, idempotency_key, now
    FROM rows
    ORDER BY ord

-- name: insert_job
-- One job: the same, its values passed one by one, and the clock and due time worked out in
-- subqueries the planner folds into the INSERT. Completed by [skip_held_keys and]
-- new_job_notify. No arrays to build, send and unnest, no CTE scans, no aggregate: a third
-- of the client's time of a batch of one, and less of the server's.
WITH new AS (
    INSERT INTO conveyor_jobs (
        queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout,
        idempotency_key, created_at
    )
    SELECT %(queue)s::text, %(task)s::text, %(args)s::json, %(kwargs)s::json,
           CASE WHEN due > clock THEN 'scheduled' ELSE 'queued' END,
           %(priority)s::int4, due, %(max_attempts)s::int4, %(timeout)s::float8,
           %(idempotency_key)s::text, clock
    FROM (
        SELECT clock, coalesce(to_timestamp(%(run_at)s::float8),
                               clock + %(delay)s::float8 * interval '1 second') AS due
        FROM (SELECT coalesce(to_timestamp(%(now)s::float8), now()) AS clock) AS c
    ) AS d

-- name: skip_held_keys
-- A job whose key a live job holds is not inserted; the unique partial index decides, so
-- concurrent enqueues of one key, from any number of processes, make exactly one job. Costs
-- about a fifth of the insert rate, hence only used for batches that carry keys.
    ON CONFLICT (idempotency_key)
        WHERE idempotency_key IS NOT NULL
          AND state IN ('blocked', 'scheduled', 'queued', 'running', 'retrying')
        DO NOTHING

-- name: new_jobs_notify
-- The end of insert_jobs and insert_jobs_staged: one NOTIFY per queue that got
-- jobs (joining the one-row "woken" makes the server evaluate it), and the new jobs in id
-- order, which is the order given because the INSERT took its ids in ORDER BY ord.
    RETURNING id, state, idempotency_key, queue
),
woken AS (
    SELECT count(pg_notify(%(channel)s, queue)) FROM (SELECT DISTINCT queue FROM new) AS q
)
SELECT id, state, idempotency_key FROM new, woken ORDER BY id

-- name: new_job_notify
-- The end of insert_job: the NOTIFY of the job's queue (none when a held key skipped it),
-- sent by the statement that inserts, delivered when it commits.
    RETURNING id, state, idempotency_key, queue
)
SELECT id, state, idempotency_key, pg_notify(%(channel)s, queue) FROM new

-- name: new_job
-- The end of insert_job for a single enqueue, whose wake-up the notifier sends after the commit.
    RETURNING id, state
)
SELECT id, state FROM new

-- name: lock_queue
-- Serializes enqueues into one limited queue until commit, so two of them cannot both see room
-- for their jobs and overshoot the limit. A statement of its own: the depth count that follows
-- must take its snapshot after the lock is granted.
SELECT pg_advisory_xact_lock(hashtext('conveyor queue ' || current_schema()), hashtext(%(queue)s))

-- name: queue_depth
-- Waiting jobs of one queue: the queued ones from the ready index, the others from the small
-- index of jobs waiting for a time or a dependency, and the queued jobs of rate-limited tasks
-- from conveyor_jobs_rate_ready (not keyed by queue: a walk of the rate-limited backlog, paid
-- only by enqueues into queues with queue_limits).
SELECT (SELECT count(*) FROM conveyor_jobs
        WHERE queue = %(queue)s AND state = 'queued' AND rate_key IS NULL)
     + (SELECT count(*) FROM conveyor_jobs
        WHERE queue = %(queue)s AND state IN ('blocked', 'scheduled', 'retrying'))
     + (SELECT count(*) FROM conveyor_jobs
        WHERE queue = %(queue)s AND state = 'queued' AND rate_key IS NOT NULL)

-- name: promote_due
-- SKIP LOCKED: two workers promoting at once share the rows instead of queueing on row locks.
-- Suspects stay waiting for claim_suspect (migration 7); the predicate is the due index's.
WITH promoted AS (
    UPDATE conveyor_jobs SET state = 'queued'
    WHERE id = ANY(ARRAY(
        SELECT id FROM conveyor_jobs
        WHERE state IN ('scheduled', 'retrying') AND NOT suspect
          AND run_at <= coalesce(to_timestamp(%(now)s::float8), now())
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING queue
)
SELECT queue, count(*) FROM promoted GROUP BY queue

-- name: claim_plan
-- For the rest of the claim's transaction only: no bitmap scans. Until autovacuum first analyzes
-- a freshly filled table (up to a minute), the planner believes a handful of jobs are queued and
-- picks a bitmap scan of every queued job plus a sort over them, on every claim: a drain of
-- 10,000 jobs ran 3x slower. Without bitmap scans the claim walks its partial index in order and
-- stops at LIMIT, whatever the statistics say.
SELECT set_config('enable_bitmapscan', 'off', true)

-- name: claim_any
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
    WHERE state = 'queued' AND rate_key IS NULL
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, date_part('epoch', run_at)

-- name: claim_queue
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
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, date_part('epoch', run_at)

-- name: claim_any_except
-- claim_any for a worker serving every queue while some queues are capped but hold no ready
-- job: the capped queues stay out of it, should a job arrive in one meanwhile.
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
    WHERE state = 'queued' AND rate_key IS NULL AND queue <> ALL(%(capped)b::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, date_part('epoch', run_at)

-- name: pick_suspect
-- The suspect (migration 7) claim_suspect should take, locked: the best one that is due, in
-- one of the queues given (NULL for all) and in a queue that is neither paused nor waiting for
-- its rate limit's next start, nor in closed (in its quiet hours, which the backend works
-- out), and whose cap, if any, leaves room (the backend checks the queue's gates again under
-- its lock); of a task neither in held (behind a breaker that is not closed) nor waiting for
-- its rate limit bucket's next start (the backend takes the token under the bucket's lock).
SELECT j.id, j.queue, j.task, j.rate_key FROM conveyor_jobs AS j
WHERE j.state = 'retrying' AND j.suspect
  AND j.run_at <= coalesce(to_timestamp(%(now)s::float8), now())
  AND (%(queues)b::text[] IS NULL OR j.queue = ANY(%(queues)b::text[]))
  AND j.queue <> ALL(%(closed)s::text[])
  AND j.task <> ALL(%(held)s::text[])
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_queue_limits AS l
      WHERE l.queue = j.queue AND (
          l.paused_until > coalesce(to_timestamp(%(now)s::float8), now())
          OR l.rate_next > coalesce(to_timestamp(%(now)s::float8), now())
          OR l.max_running <= (
              SELECT count(*) FROM conveyor_jobs AS r
              WHERE r.queue = j.queue AND r.state = 'running')))
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_rate_buckets AS b
      WHERE j.rate_key IS NOT NULL AND b.task = j.task AND b.key = j.rate_key
        AND b.rate_next > coalesce(to_timestamp(%(now)s::float8), now()))
ORDER BY j.priority DESC, j.run_at, j.id
LIMIT 1
FOR UPDATE OF j SKIP LOCKED

-- name: peek_suspect
-- Whether pick_suspect would find a suspect, without locking it (a lock would hide it from a
-- claim_suspect under way): a busy worker asks about once a second whether to make room.
SELECT 1 FROM conveyor_jobs AS j
WHERE j.state = 'retrying' AND j.suspect
  AND j.run_at <= coalesce(to_timestamp(%(now)s::float8), now())
  AND (%(queues)b::text[] IS NULL OR j.queue = ANY(%(queues)b::text[]))
  AND j.queue <> ALL(%(closed)s::text[])
  AND j.task <> ALL(%(held)s::text[])
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_queue_limits AS l
      WHERE l.queue = j.queue AND (
          l.paused_until > coalesce(to_timestamp(%(now)s::float8), now())
          OR l.rate_next > coalesce(to_timestamp(%(now)s::float8), now())
          OR l.max_running <= (
              SELECT count(*) FROM conveyor_jobs AS r
              WHERE r.queue = j.queue AND r.state = 'running')))
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_rate_buckets AS b
      WHERE j.rate_key IS NOT NULL AND b.task = j.task AND b.key = j.rate_key
        AND b.rate_next > coalesce(to_timestamp(%(now)s::float8), now()))
LIMIT 1

-- name: lock_suspect_bucket
-- The rate limit bucket of a suspect being claimed, locked (skipped if another claim holds it:
-- that claim is spending its token now).
SELECT task, key, rate_count, rate_per, date_part('epoch', rate_next)
FROM conveyor_rate_buckets
WHERE task = %(task)s AND key = %(key)s
FOR UPDATE SKIP LOCKED

-- name: claim_suspect
-- retrying -> running for the suspect picked, alone: only for a worker that holds no running
-- job (prefetched ones included), which then claims nothing else until this run is settled.
UPDATE conveyor_jobs
SET state = 'running',
    attempts = attempts + 1,
    lease_token = gen_random_uuid()::text,
    lease_expires_at = coalesce(to_timestamp(%(now)s::float8), now())
                       + %(lease)s::float8 * interval '1 second',
    worker_id = %(worker_id)s,
    started_at = coalesce(to_timestamp(%(now)s::float8), now()),
    cancel_requested = false
WHERE id = %(id)s AND state = 'retrying' AND suspect
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_jobs WHERE state = 'running' AND worker_id = %(worker_id)s)
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, date_part('epoch', run_at)

-- name: capped_queues
-- Which queues have a gate -- a cap, a pause, quiet hours or a rate limit -- and so take the
-- claim's gated path (see backends/caps.py: read about once a second, not per claim).
SELECT queue FROM conveyor_queue_limits
WHERE max_running IS NOT NULL OR paused_until IS NOT NULL OR quiet IS NOT NULL
   OR rate_count IS NOT NULL

-- name: ready_queues
-- The queues holding ready jobs, in name order, for a claim from every queue while some queue
-- is capped, and for a burst worker that claimed nothing from capped queues: one probe of
-- conveyor_jobs_ready_by_queue per queue (a loose index scan), however many jobs wait.
WITH RECURSIVE ready (queue) AS (
    SELECT (SELECT queue FROM conveyor_jobs
            WHERE state = 'queued' AND rate_key IS NULL ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM conveyor_jobs AS j
            WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue > ready.queue
            ORDER BY j.queue LIMIT 1)
    FROM ready WHERE ready.queue IS NOT NULL
)
SELECT queue FROM ready WHERE queue IS NOT NULL

-- name: lock_queue_limits
-- A claim from capped queues first locks their rows until it commits, in name order (so two
-- claims never wait for each other crosswise): claims of one capped queue take turns. A
-- statement of its own: the count in queue_gates must take its snapshot after the locks are
-- granted, to see the jobs that the claim before this one started.
SELECT queue FROM conveyor_queue_limits
WHERE queue = ANY(%(queues)b::text[])
ORDER BY queue
FOR UPDATE

-- name: extend_leases
-- Once per heartbeat and worker: walks of conveyor_jobs_leases, which holds the running jobs
-- only. No index of tokens: every claim would pay an entry in it (migration 13).
-- SKIP LOCKED: a run whose row another transaction holds -- most often the worker writing its
-- outcome -- is left for the next beat, not waited for. A beat waiting for a finish while the
-- finish waited for the beat (the two lock their rows in different orders) was a deadlock,
-- which PostgreSQL breaks only after deadlock_timeout: the worker's outcomes stood still for a
-- second. A run skipped is still the worker's (the last rows, false, say so); a lease outlives
-- several beats.
WITH locked AS (
    SELECT id FROM conveyor_jobs
    WHERE lease_token = ANY(%(tokens)b::text[]) AND state = 'running'
    FOR UPDATE SKIP LOCKED
),
extended AS (
    UPDATE conveyor_jobs AS j
    SET lease_expires_at = coalesce(to_timestamp(%(now)s::float8), now())
                           + %(lease)s::float8 * interval '1 second'
    FROM locked
    WHERE j.id = locked.id
    RETURNING j.lease_token, j.cancel_requested
)
SELECT lease_token, cancel_requested, true FROM extended
UNION ALL
SELECT lease_token, cancel_requested, false FROM conveyor_jobs
WHERE lease_token = ANY(%(tokens)b::text[]) AND state = 'running'
  AND id NOT IN (SELECT id FROM locked)

-- name: cancel_requests
-- Served by conveyor_jobs_cancel_requested, whose predicate this repeats.
SELECT lease_token FROM conveyor_jobs
WHERE state = 'running' AND cancel_requested AND worker_id = %(worker_id)s

-- name: save_progress
UPDATE conveyor_jobs
SET progress = coalesce(%(progress)s::json, progress),
    checkpoint = coalesce(%(checkpoint)s::json, checkpoint)
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running'

-- name: owns_runs
-- Locks the runs whose retry budget is about to be spent, so they cannot change hands before
-- their outcome is written in this same transaction.
SELECT j.id, j.lease_token
FROM conveyor_jobs AS j
JOIN unnest(%(ids)b::int8[], %(tokens)b::text[]) AS o (id, token)
  ON j.id = o.id AND j.lease_token = o.token
WHERE j.state = 'running'
FOR UPDATE OF j

-- name: finish_succeeded
-- No NOTIFY for those waiting on results here nor in the other finishes: the notifier tells
-- them once the batch has committed (notifier.py).
WITH done AS (
    UPDATE conveyor_jobs AS j
    SET state = 'succeeded', result = o.result::json,
        finished_at = coalesce(to_timestamp(%(now)s::float8), now()),
        lease_token = NULL, lease_expires_at = NULL
    FROM unnest(%(ids)b::int8[], %(tokens)b::text[], %(results)b::text[]) AS o (id, token, result)
    WHERE j.id = o.id AND j.lease_token = o.token AND j.state = 'running'
    RETURNING j.id AS id, o.token AS token, j.queue AS queue, j.state AS state,
              j.has_children AS has_children, j.task AS task,
              date_part('epoch', j.finished_at - j.started_at) AS run,
              date_part('epoch', j.started_at - j.run_at) AS wait
),
tallied AS (
    -- The runs in the per-minute aggregates (migration 12), in this same statement.
    SELECT conveyor_tally(
        coalesce(to_timestamp(%(now)s::float8), now()), array_agg(queue), array_agg(task),
        array_agg('succeeded'::text), array_agg(run), array_agg(wait)) AS n
    FROM done HAVING count(*) > 0
),
released AS (
    -- Children of the jobs that succeeded, settled in this statement (see the function in
    -- migration 9); a batch without children never calls it.
    SELECT conveyor_release_children(
        array_agg(id), coalesce(to_timestamp(%(now)s::float8), now()), %(channel)s) AS n
    FROM done WHERE has_children HAVING count(*) > 0
)
SELECT id, token, queue, state, false FROM done LEFT JOIN released ON true
    LEFT JOIN tallied ON true

-- name: finish_retry
UPDATE conveyor_jobs AS j
SET state = 'retrying',
    run_at = coalesce(to_timestamp(%(now)s::float8), now()) + o.retry_in * interval '1 second',
    errors = CASE WHEN o.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(o.error::jsonb) END,
    checkpoint = coalesce(o.checkpoint::json, j.checkpoint),
    -- it returned, so it did not kill its worker: it may run beside others again
    suspect = false,
    lease_token = NULL, lease_expires_at = NULL
FROM unnest(
    %(ids)b::int8[], %(tokens)b::text[], %(errors)b::text[], %(retry_in)b::float8[],
    %(checkpoints)b::text[]
) AS o (id, token, error, retry_in, checkpoint)
WHERE j.id = o.id AND j.lease_token = o.token AND j.state = 'running'
RETURNING j.id, o.token, j.queue, j.state, j.has_children

-- name: finish_dead
UPDATE conveyor_jobs AS j
SET state = 'dead', dead_reason = o.reason,
    finished_at = coalesce(to_timestamp(%(now)s::float8), now()),
    errors = CASE WHEN o.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(o.error::jsonb) END,
    checkpoint = coalesce(o.checkpoint::json, j.checkpoint),
    lease_token = NULL, lease_expires_at = NULL
FROM unnest(
    %(ids)b::int8[], %(tokens)b::text[], %(errors)b::text[], %(reasons)b::text[],
    %(checkpoints)b::text[]
) AS o (id, token, error, reason, checkpoint)
WHERE j.id = o.id AND j.lease_token = o.token AND j.state = 'running'
RETURNING j.id, o.token, j.queue, j.state, j.has_children

-- name: finish_cancelled
UPDATE conveyor_jobs AS j
SET state = 'cancelled',
    finished_at = coalesce(to_timestamp(%(now)s::float8), now()),
    errors = CASE WHEN o.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(o.error::jsonb) END,
    checkpoint = coalesce(o.checkpoint::json, j.checkpoint),
    lease_token = NULL, lease_expires_at = NULL
FROM unnest(
    %(ids)b::int8[], %(tokens)b::text[], %(errors)b::text[], %(checkpoints)b::text[]
) AS o (id, token, error, checkpoint)
WHERE j.id = o.id AND j.lease_token = o.token AND j.state = 'running'
RETURNING j.id, o.token, j.queue, j.state, j.has_children

-- name: finish_released
-- Back in the queue without charging the attempt, unless someone asked to cancel the job
-- meanwhile: then it ends cancelled instead of running again. A suspect goes back to wait for
-- claim_suspect.
UPDATE conveyor_jobs AS j
SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                 WHEN j.suspect THEN 'retrying'
                 ELSE 'queued' END,
    finished_at = CASE WHEN j.cancel_requested
                       THEN coalesce(to_timestamp(%(now)s::float8), now()) END,
    attempts = j.attempts - 1,
    checkpoint = coalesce(o.checkpoint::json, j.checkpoint),
    lease_token = NULL, lease_expires_at = NULL
FROM unnest(%(ids)b::int8[], %(tokens)b::text[], %(checkpoints)b::text[])
    AS o (id, token, checkpoint)
WHERE j.id = o.id AND j.lease_token = o.token AND j.state = 'running'
RETURNING j.id, o.token, j.queue, j.state, j.has_children

-- name: budget_open_window
INSERT INTO conveyor_retry_budgets AS b (task, window_start, used)
VALUES (%(task)s, coalesce(to_timestamp(%(now)s::float8), now()), 0)
ON CONFLICT (task) DO UPDATE SET window_start = excluded.window_start, used = 0
WHERE b.window_start + %(window)s::float8 * interval '1 second' <= excluded.window_start

-- name: budget_take
-- Takes several retries from the task's window at once; returns how many were granted.
WITH before AS (
    SELECT used FROM conveyor_retry_budgets WHERE task = %(task)s FOR UPDATE
)
UPDATE conveyor_retry_budgets AS b
SET used = greatest(b.used, least(b.used + %(wanted)s, %(limit)s))
FROM before
WHERE b.task = %(task)s
RETURNING b.used - before.used

-- name: rescue_expired
-- Runs whose lease expired go back to wait, as suspects (migration 7). Only a run that was the
-- only one its worker held (alone) is charged: it keeps its attempt and, with none left, the
-- job ends dead. Any other run gets its attempt back: the death cannot be told apart from its
-- neighbours'. held counts the running jobs of every worker from the index of running jobs.
UPDATE conveyor_jobs AS j
SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                 WHEN held.alone AND j.attempts >= j.max_attempts THEN 'dead'
                 ELSE 'retrying' END,
    dead_reason = CASE WHEN j.cancel_requested THEN j.dead_reason
                       WHEN held.alone AND j.attempts >= j.max_attempts THEN
                           'lost: the lease expired on run ' || j.attempts
                           || ' while the job ran alone in its worker, ' || (j.lost_runs + 1)
                           || ' run(s) lost in all; the job may be killing or hanging its'
                           || ' worker'
                       ELSE j.dead_reason END,
    finished_at = CASE WHEN j.cancel_requested OR (held.alone AND j.attempts >= j.max_attempts)
                       THEN coalesce(to_timestamp(%(now)s::float8), now()) END,
    attempts = CASE WHEN held.alone OR j.cancel_requested THEN j.attempts
                    ELSE j.attempts - 1 END,
    suspect = NOT (j.cancel_requested OR (held.alone AND j.attempts >= j.max_attempts)),
    lost_runs = j.lost_runs + 1,
    run_at = coalesce(to_timestamp(%(now)s::float8), now()),
    lease_token = NULL,
    lease_expires_at = NULL
FROM (
    SELECT worker_id, count(*) = 1 AS alone FROM conveyor_jobs
    WHERE state = 'running'
    GROUP BY worker_id
) AS held
WHERE j.id = ANY(ARRAY(
    SELECT id FROM conveyor_jobs
    WHERE state = 'running'
      AND lease_expires_at < coalesce(to_timestamp(%(now)s::float8), now())
      AND (%(exclude)s::text IS NULL OR worker_id IS DISTINCT FROM %(exclude)s::text)
    FOR UPDATE SKIP LOCKED
))
  AND held.worker_id IS NOT DISTINCT FROM j.worker_id
RETURNING j.id, j.state, j.queue, j.has_children

-- name: job_state
SELECT state FROM conveyor_jobs WHERE id = %(id)s FOR UPDATE

-- name: cancel_waiting
UPDATE conveyor_jobs
SET state = 'cancelled', finished_at = coalesce(to_timestamp(%(now)s::float8), now())
WHERE id = %(id)s AND state IN ('blocked', 'scheduled', 'queued', 'retrying')
RETURNING has_children

-- name: request_cancel
UPDATE conveyor_jobs SET cancel_requested = true
WHERE id = %(id)s AND state = 'running'

-- name: requeue
UPDATE conveyor_jobs
SET state = 'queued', run_at = coalesce(to_timestamp(%(now)s::float8), now()),
    finished_at = NULL, dead_reason = NULL, cancel_requested = false, stopped_by = NULL,
    max_attempts = CASE WHEN %(reset)s::boolean THEN max_attempts
                        ELSE greatest(max_attempts, attempts + 1) END,
    attempts = CASE WHEN %(reset)s::boolean THEN 0 ELSE attempts END,
    lost_runs = CASE WHEN %(reset)s::boolean THEN 0 ELSE lost_runs END
WHERE id = %(id)s AND state IN ('dead', 'cancelled')
RETURNING queue

-- name: discard
DELETE FROM conveyor_jobs WHERE id = %(id)s AND state = 'dead'

-- name: get_job
SELECT id, task, queue, state, args, kwargs, priority, date_part('epoch', run_at) AS run_at,
       attempts, max_attempts, date_part('epoch', created_at) AS created_at, idempotency_key,
       lost_runs, result, errors, dead_reason, timeout, progress, checkpoint, cancel_requested,
       suspect, worker_id, lease_token, date_part('epoch', lease_expires_at) AS lease_expires_at,
       date_part('epoch', started_at) AS started_at,
       date_part('epoch', finished_at) AS finished_at, pending_parents, stopped_by, workflow_id,
       escalated_to, escalated_from
FROM conveyor_jobs WHERE id = %(id)s

-- name: get_jobs
-- The jobs holding the keys of a transactional enqueue, read inside that transaction.
SELECT id, task, queue, state, args, kwargs, priority, date_part('epoch', run_at) AS run_at,
       attempts, max_attempts, date_part('epoch', created_at) AS created_at, idempotency_key,
       lost_runs, result, errors, dead_reason, timeout, progress, checkpoint, cancel_requested,
       suspect, worker_id, lease_token, date_part('epoch', lease_expires_at) AS lease_expires_at,
       date_part('epoch', started_at) AS started_at,
       date_part('epoch', finished_at) AS finished_at, pending_parents, stopped_by, workflow_id,
       escalated_to, escalated_from
FROM conveyor_jobs WHERE id = ANY(%(ids)b::int8[])

-- name: list_jobs
SELECT id, task, queue, state, args, kwargs, priority, date_part('epoch', run_at) AS run_at,
       attempts, max_attempts, date_part('epoch', created_at) AS created_at, idempotency_key,
       lost_runs, result, errors, dead_reason, timeout, progress, checkpoint, cancel_requested,
       suspect, worker_id, lease_token, date_part('epoch', lease_expires_at) AS lease_expires_at,
       date_part('epoch', started_at) AS started_at,
       date_part('epoch', finished_at) AS finished_at, pending_parents, stopped_by, workflow_id,
       escalated_to, escalated_from
FROM conveyor_jobs
WHERE (%(states)b::text[] IS NULL OR state = ANY(%(states)b::text[]))
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(before_id)s::int8 IS NULL OR id < %(before_id)s::int8)
ORDER BY id DESC
LIMIT %(limit)s

-- name: list_jobs_by_key
-- The jobs holding one idempotency key: a lookup in conveyor_jobs_idempotency_any, whatever
-- the size of the table.
SELECT id, task, queue, state, args, kwargs, priority, date_part('epoch', run_at) AS run_at,
       attempts, max_attempts, date_part('epoch', created_at) AS created_at, idempotency_key,
       lost_runs, result, errors, dead_reason, timeout, progress, checkpoint, cancel_requested,
       suspect, worker_id, lease_token, date_part('epoch', lease_expires_at) AS lease_expires_at,
       date_part('epoch', started_at) AS started_at,
       date_part('epoch', finished_at) AS finished_at, pending_parents, stopped_by, workflow_id,
       escalated_to, escalated_from
FROM conveyor_jobs
WHERE idempotency_key = %(key)s::text
  AND (%(states)b::text[] IS NULL OR state = ANY(%(states)b::text[]))
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
  AND (%(before_id)s::int8 IS NULL OR id < %(before_id)s::int8)
ORDER BY id DESC
LIMIT %(limit)s

-- name: stats
SELECT queue, state, count(*) FROM conveyor_jobs GROUP BY queue, state

-- name: oldest_ready
-- The run_at of each queue's oldest ready job (conveyor top), without walking the ready rows:
-- a loose scan of conveyor_jobs_ready_by_queue takes the first row of each (queue, priority)
-- in a few probes each. Jobs held by a task's rate limit lie in another index, without their
-- queue: those are read whole.
WITH RECURSIVE heads(queue, priority, run_at) AS (
    (SELECT queue, priority, run_at FROM conveyor_jobs
     WHERE state = 'queued' AND rate_key IS NULL
     ORDER BY queue, priority DESC, run_at, id LIMIT 1)
  UNION ALL
    SELECT step.queue, step.priority, step.run_at
    FROM heads h, LATERAL (
        (SELECT j.queue, j.priority, j.run_at FROM conveyor_jobs j
         WHERE j.state = 'queued' AND j.rate_key IS NULL
           AND j.queue = h.queue AND j.priority < h.priority
         ORDER BY j.queue, j.priority DESC, j.run_at, j.id LIMIT 1)
        UNION ALL
        (SELECT j.queue, j.priority, j.run_at FROM conveyor_jobs j
         WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue > h.queue
         ORDER BY j.queue, j.priority DESC, j.run_at, j.id LIMIT 1)
        LIMIT 1
    ) step
)
SELECT queue, extract(epoch FROM min(run_at))::float8 FROM (
    SELECT queue, run_at FROM heads
    UNION ALL
    SELECT queue, run_at FROM conveyor_jobs WHERE state = 'queued' AND rate_key IS NOT NULL
) waiting
GROUP BY queue

-- name: running_by_worker
SELECT worker_id, count(*) FROM conveyor_jobs
WHERE state = 'running' AND worker_id IS NOT NULL
GROUP BY worker_id

-- name: prune
-- A parent stays while a child of its is live: the child may read its result. The edges of
-- pruned children go with them.
WITH gone AS (
    DELETE FROM conveyor_jobs
    WHERE id = ANY(ARRAY(
        SELECT j.id FROM conveyor_jobs AS j
        WHERE j.finished_at IS NOT NULL
          AND j.finished_at < coalesce(to_timestamp(%(now)s::float8), now())
                              - %(older_than)s::float8 * interval '1 second'
          AND j.state IN ('succeeded', 'cancelled')
          AND NOT (j.has_children AND EXISTS (
              SELECT 1 FROM conveyor_job_edges AS e JOIN conveyor_jobs AS c ON c.id = e.child_id
              WHERE e.parent_id = j.id
                AND c.state IN ('blocked', 'scheduled', 'queued', 'running', 'retrying')))
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING id
), edges AS (
    DELETE FROM conveyor_job_edges WHERE child_id IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone

-- name: next_due
SELECT date_part('epoch', min(run_at)) FROM conveyor_jobs
WHERE state IN ('scheduled', 'retrying') AND NOT suspect

-- name: mark_dead_workers
-- Workers that went dead_after seconds without a beat, counted from %(since)s at the earliest
-- (the sweeper's view of the database was broken before), and those the sweeper knows are dead
-- (named in known_dead). Whoever sweeps is alive: %(exclude)s. A beat racing this statement
-- either commits first (and the row no longer qualifies when it is re-checked) or waits for it
-- and then finds the worker dead.
UPDATE conveyor_workers SET state = 'dead'
WHERE state IN ('running', 'stopping')
  AND (greatest(last_beat_at, to_timestamp(%(since)s::float8))
       + dead_after * interval '1 second' < coalesce(to_timestamp(%(now)s::float8), now())
       OR id = ANY(%(known_dead)b::text[]))
  AND (%(exclude)s::text IS NULL OR id <> %(exclude)s::text)
RETURNING id

-- name: rescue_dead_workers
-- rescue_expired for the runs of the workers just declared dead, whatever their lease says:
-- the same outcomes, and their tokens are void from here on. Rows locked by another
-- transaction are waited for (not skipped): a skipped run would wait for its whole lease.
UPDATE conveyor_jobs AS j
SET state = CASE WHEN j.cancel_requested THEN 'cancelled'
                 WHEN held.alone AND j.attempts >= j.max_attempts THEN 'dead'
                 ELSE 'retrying' END,
    dead_reason = CASE WHEN j.cancel_requested THEN j.dead_reason
                       WHEN held.alone AND j.attempts >= j.max_attempts THEN
                           'lost: its worker died during run ' || j.attempts
                           || ' while the job ran alone in it, ' || (j.lost_runs + 1)
                           || ' run(s) lost in all; the job may be killing or hanging its'
                           || ' worker'
                       ELSE j.dead_reason END,
    finished_at = CASE WHEN j.cancel_requested OR (held.alone AND j.attempts >= j.max_attempts)
                       THEN coalesce(to_timestamp(%(now)s::float8), now()) END,
    attempts = CASE WHEN held.alone OR j.cancel_requested THEN j.attempts
                    ELSE j.attempts - 1 END,
    suspect = NOT (j.cancel_requested OR (held.alone AND j.attempts >= j.max_attempts)),
    lost_runs = j.lost_runs + 1,
    run_at = coalesce(to_timestamp(%(now)s::float8), now()),
    lease_token = NULL,
    lease_expires_at = NULL
FROM (
    SELECT worker_id, count(*) = 1 AS alone FROM conveyor_jobs
    WHERE state = 'running' AND worker_id = ANY(%(workers)b::text[])
    GROUP BY worker_id
) AS held
WHERE j.id = ANY(ARRAY(
    SELECT id FROM conveyor_jobs
    WHERE state = 'running' AND worker_id = ANY(%(workers)b::text[])
    FOR UPDATE
))
  AND held.worker_id = j.worker_id
RETURNING j.id, j.state, j.queue, j.has_children

-- name: forget_dead_workers
DELETE FROM conveyor_workers
WHERE state = 'dead'
  AND last_beat_at < coalesce(to_timestamp(%(now)s::float8), now())
                     - %(forget_after)s::float8 * interval '1 second'

-- name: register_worker
INSERT INTO conveyor_workers AS w (
    id, host, pid, machine, queues, concurrency, state, started_at, last_beat_at, beat_interval,
    dead_after
) VALUES (
    %(id)s, %(host)s, %(pid)s, %(machine)s, %(queues)s::text[], %(concurrency)s, 'running',
    coalesce(to_timestamp(%(now)s::float8), now()), coalesce(to_timestamp(%(now)s::float8), now()),
    %(beat_interval)s, %(dead_after)s
)
ON CONFLICT (id) DO UPDATE SET
    state = 'running', last_beat_at = excluded.last_beat_at,
    beat_interval = excluded.beat_interval, dead_after = excluded.dead_after

-- name: beat_worker
UPDATE conveyor_workers
SET last_beat_at = coalesce(to_timestamp(%(now)s::float8), now()), state = %(state)s
WHERE id = %(id)s AND state <> 'dead'
RETURNING stop_requested

-- name: worker_stop_requested
-- One probe of the primary key: workers ask about once a second.
SELECT stop_requested FROM conveyor_workers WHERE id = %(id)s

-- name: deregister_worker
DELETE FROM conveyor_workers WHERE id = %(id)s

-- name: release_leaderships
DELETE FROM conveyor_leaders WHERE holder = %(holder)s

-- name: release_dead_leaderships
DELETE FROM conveyor_leaders WHERE holder = ANY(%(workers)b::text[])

-- name: list_workers
SELECT id, host, pid, machine, queues, concurrency, state, stop_requested,
       date_part('epoch', started_at) AS started_at,
       date_part('epoch', last_beat_at) AS last_beat_at, beat_interval, dead_after
FROM conveyor_workers
ORDER BY started_at, id

-- name: request_worker_stop
UPDATE conveyor_workers SET stop_requested = true
WHERE id = ANY(%(ids)b::text[])
RETURNING id

-- name: request_every_worker_stop
UPDATE conveyor_workers SET stop_requested = true
WHERE state <> 'dead'
RETURNING id

-- name: acquire_leadership
-- Taken when free or lapsed, renewed by its holder; otherwise nothing changes and nothing is
-- returned. Two workers racing for a free lease: the unique key makes one insert and the other
-- find the new holder's row.
INSERT INTO conveyor_leaders AS l (name, holder, expires_at)
VALUES (
    %(name)s, %(holder)s,
    coalesce(to_timestamp(%(now)s::float8), now()) + %(ttl)s::float8 * interval '1 second'
)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE l.holder = excluded.holder
   OR l.expires_at < coalesce(to_timestamp(%(now)s::float8), now())
RETURNING holder

-- name: release_leadership
DELETE FROM conveyor_leaders WHERE name = %(name)s AND holder = %(holder)s

-- name: set_concurrency_limit
INSERT INTO conveyor_queue_limits (queue, max_running) VALUES (%(queue)s, %(max_running)s)
ON CONFLICT (queue) DO UPDATE SET max_running = excluded.max_running

-- name: remove_concurrency_limit
-- The row stays: it may hold the queue's other gates (see queue_gates).
UPDATE conveyor_queue_limits SET max_running = NULL WHERE queue = %(queue)s

-- name: queue_limits
SELECT queue, max_running FROM conveyor_queue_limits
WHERE max_running IS NOT NULL
ORDER BY queue

-- name: autovacuum_on
-- Whether autovacuum looks after the jobs table: on for the server and not off for the table.
SELECT current_setting('autovacuum')::boolean
       AND coalesce((SELECT option_value::boolean
                     FROM pg_options_to_table((SELECT reloptions FROM pg_class
                                               WHERE oid = 'conveyor_jobs'::regclass))
                     WHERE option_name = 'autovacuum_enabled'), true)

-- name: vacuum_gently
-- At autovacuum's own pace (a manual VACUUM is not throttled by default): a vacuum of a large
-- table at full speed took most of the I/O and a core, and the claims it was for slowed fivefold.
SET vacuum_cost_delay = '2ms'

-- name: vacuum_watch_client
-- A worker exiting mid-vacuum leaves it behind: the server stops it within a second of the
-- connection going away instead of running it to its end.
SET client_connection_check_interval = '1s'

-- name: vacuum_jobs
-- Plain VACUUM: it works beside the workers (it takes no lock they need); it cannot run inside
-- a transaction, so this runs on its own.
VACUUM (ANALYZE) conveyor_jobs

-- name: vacuum_done
RESET vacuum_cost_delay

-- name: vacuum_unwatch_client
RESET client_connection_check_interval

-- ===== Queue gates: pause, quiet hours, rate limits (conveyor/limits/) ======================

-- name: queue_gates
-- The gates of the given queues, as conveyor.limits.QueueGate reads them (the running jobs are
-- counted for capped queues only, from conveyor_jobs_leases), and the time of the claim. Read
-- after lock_queue_limits in the claim, so it sees the starts of the claims before it.
SELECT l.queue, l.max_running,
       CASE WHEN l.max_running IS NOT NULL THEN (
           SELECT count(*) FROM conveyor_jobs AS j WHERE j.queue = l.queue AND j.state = 'running')
       END,
       date_part('epoch', l.paused_until), l.quiet, l.rate_count, l.rate_per,
       date_part('epoch', l.rate_next),
       date_part('epoch', coalesce(to_timestamp(%(now)s::float8), now()))
FROM conveyor_queue_limits AS l
WHERE l.queue = ANY(%(queues)b::text[])

-- name: every_queue_gate
-- queue_gates for every queue that has a row, for people (queues list, jobs why).
SELECT l.queue, l.max_running,
       CASE WHEN l.max_running IS NOT NULL THEN (
           SELECT count(*) FROM conveyor_jobs AS j WHERE j.queue = l.queue AND j.state = 'running')
       END,
       date_part('epoch', l.paused_until), l.quiet, l.rate_count, l.rate_per,
       date_part('epoch', l.rate_next),
       date_part('epoch', coalesce(to_timestamp(%(now)s::float8), now()))
FROM conveyor_queue_limits AS l
ORDER BY l.queue

-- name: take_rate
-- Where a claim that started jobs of a rate-limited queue moves its next start (the row is
-- locked by lock_queue_limits since before it was read).
UPDATE conveyor_queue_limits SET rate_next = to_timestamp(%(rate_next)s::float8)
WHERE queue = %(queue)s

-- name: pause_queue
-- No :until: paused until resumed.
INSERT INTO conveyor_queue_limits (queue, paused_until)
VALUES (%(queue)s, coalesce(to_timestamp(%(until)s::float8), 'infinity'))
ON CONFLICT (queue) DO UPDATE SET paused_until = excluded.paused_until

-- name: resume_queue
UPDATE conveyor_queue_limits SET paused_until = NULL WHERE queue = %(queue)s

-- name: set_quiet_hours
INSERT INTO conveyor_queue_limits (queue, quiet) VALUES (%(queue)s, %(quiet)s)
ON CONFLICT (queue) DO UPDATE SET quiet = excluded.quiet

-- name: set_rate_limit
-- A changed limit keeps the next start already promised; a removed one forgets it.
INSERT INTO conveyor_queue_limits (queue, rate_count, rate_per)
VALUES (%(queue)s, %(count)s, %(per)s)
ON CONFLICT (queue) DO UPDATE
SET rate_count = excluded.rate_count, rate_per = excluded.rate_per,
    rate_next = CASE WHEN excluded.rate_count IS NULL THEN NULL
                     ELSE conveyor_queue_limits.rate_next END

-- ===== Rate limits of tasks, per key (conveyor/limits/rates.py) =============================

-- name: rate_buckets_exist
-- Whether any task has a rate limit bucket: claims look at rate-limited jobs only then (read
-- about once a second, see backends/caps.py).
SELECT 'buckets' FROM conveyor_rate_buckets LIMIT 1

-- name: upsert_rate_bucket
-- At enqueue: the buckets of rate-limited tasks and keys (each once), with the limits the tasks
-- declare now.
INSERT INTO conveyor_rate_buckets (task, key, rate_count, rate_per)
SELECT * FROM unnest(%(tasks)b::text[], %(keys)b::text[], %(counts)b::int4[], %(pers)b::float8[])
ON CONFLICT (task, key) DO UPDATE
SET rate_count = excluded.rate_count, rate_per = excluded.rate_per

-- name: mark_rate_key
-- At enqueue, in the same transaction: the new jobs take their bucket's key, which moves them
-- out of the ready indexes before any claim can see them.
UPDATE conveyor_jobs AS j SET rate_key = u.key
FROM unnest(%(ids)b::int8[], %(keys)b::text[]) AS u (id, key)
WHERE j.id = u.id

-- name: pick_rate_limited
-- For the claim: the buckets whose next start has come and that hold a queued job in the
-- given queues (any queue when any_queue), each with its first job, the bucket waiting longest
-- first; only buckets of the tasks in only (NULL: any) that are not in held (behind breakers
-- that are not closed). Locks the buckets it returns until commit and skips those another
-- claim holds, so two claims never spend one token. One probe of conveyor_jobs_rate_ready per
-- such bucket.
SELECT b.task, b.key, b.rate_count, b.rate_per, date_part('epoch', b.rate_next), j.id,
       date_part('epoch', coalesce(to_timestamp(%(now)s::float8), now()))
FROM conveyor_rate_buckets AS b
CROSS JOIN LATERAL (
    SELECT id FROM conveyor_jobs
    WHERE state = 'queued' AND rate_key IS NOT NULL AND task = b.task AND rate_key = b.key
      AND (%(any_queue)s OR queue = ANY(%(queues)b::text[]))
    ORDER BY priority DESC, run_at, id
    LIMIT 1
) AS j
WHERE (b.rate_next IS NULL OR b.rate_next <= coalesce(to_timestamp(%(now)s::float8), now()))
  AND b.task <> ALL(%(held)s::text[])
  AND (%(only)s::text[] IS NULL OR b.task = ANY(%(only)s::text[]))
ORDER BY b.rate_next NULLS FIRST, b.task, b.key
LIMIT %(limit)s
FOR UPDATE OF b SKIP LOCKED

-- name: claim_ids
-- claim_any for the given jobs that are still queued.
UPDATE conveyor_jobs
SET state = 'running',
    attempts = attempts + 1,
    lease_token = gen_random_uuid()::text,
    lease_expires_at = coalesce(to_timestamp(%(now)s::float8), now())
                       + %(lease)s::float8 * interval '1 second',
    worker_id = %(worker_id)s,
    started_at = coalesce(to_timestamp(%(now)s::float8), now()),
    cancel_requested = false
WHERE id = ANY(%(ids)b::int8[]) AND state = 'queued'
RETURNING id, task, queue, args, kwargs, priority, attempts, max_attempts, lease_token,
          timeout, checkpoint, date_part('epoch', run_at)

-- name: take_bucket
UPDATE conveyor_rate_buckets AS b SET rate_next = to_timestamp(u.rate_next)
FROM unnest(%(tasks)b::text[], %(keys)b::text[], %(nexts)b::float8[]) AS u (task, key, rate_next)
WHERE b.task = u.task AND b.key = u.key

-- name: next_rate_token
-- The earliest next start of a bucket that holds a queued job in the given queues (any queue
-- when any_queue): when a worker whose claim found no token should look again.
SELECT date_part('epoch', min(b.rate_next)) FROM conveyor_rate_buckets AS b
WHERE b.rate_next > coalesce(to_timestamp(%(now)s::float8), now()) AND EXISTS (
    SELECT 1 FROM conveyor_jobs AS j
    WHERE j.state = 'queued' AND j.rate_key IS NOT NULL
      AND j.task = b.task AND j.rate_key = b.key
      AND (%(any_queue)s OR j.queue = ANY(%(queues)b::text[])))

-- name: rate_bucket_of
-- The bucket of a job, for `jobs why`.
SELECT b.task, b.key, b.rate_count, b.rate_per, date_part('epoch', b.rate_next)
FROM conveyor_jobs AS j
JOIN conveyor_rate_buckets AS b ON b.task = j.task AND b.key = j.rate_key
WHERE j.id = %(id)s

-- name: queues_of
-- The queues of the given jobs (rate-limited jobs a claim picked, whose queues may have gates).
SELECT id, queue FROM conveyor_jobs WHERE id = ANY(%(ids)b::int8[])
-- Dependencies (conveyor/workflows/). Parallel arrays pair by position; the rows parameter is
-- a JSON array of rows.

-- name: lock_parents
-- Marks the parents of jobs being enqueued (their finish will look for children from now on)
-- and reads their states. The row locks order this enqueue with a concurrent finish of a
-- parent: that finish waits for this commit, then sees has_children and (through
-- conveyor_release_children's fresh snapshot) the edges.
UPDATE conveyor_jobs SET has_children = true
WHERE id = ANY(%(ids)b::int8[])
RETURNING id, state

-- name: insert_edges
-- %(rows)s holds [parent, child] pairs.
INSERT INTO conveyor_job_edges (parent_id, child_id)
SELECT (r->>0)::int8, (r->>1)::int8 FROM jsonb_array_elements(%(rows)s::jsonb) AS r
ON CONFLICT DO NOTHING

-- name: set_dependency_states
UPDATE conveyor_jobs AS j
SET state = coalesce(d.state, j.state),
    pending_parents = d.pending,
    on_parent_failure = d.policy,
    dead_reason = d.reason,
    stopped_by = d.stopped_by,
    finished_at = CASE WHEN d.state IN ('dead', 'cancelled')
                       THEN coalesce(to_timestamp(%(now)s::float8), now()) END
FROM (
    SELECT (r->>0)::int8 AS id, r->>1 AS state, (r->>2)::integer AS pending, r->>3 AS policy,
           r->>4 AS reason, (r->>5)::int8 AS stopped_by
    FROM jsonb_array_elements(%(rows)s::jsonb) AS r
) AS d
WHERE j.id = d.id

-- name: set_workflow
UPDATE conveyor_jobs SET workflow_id = %(workflow_id)s
WHERE id = ANY(%(ids)b::int8[])

-- name: release_children
UPDATE conveyor_jobs AS c
SET pending_parents = c.pending_parents - e.n,
    state = CASE WHEN c.pending_parents - e.n > 0 THEN 'blocked'
                 WHEN c.on_parent_failure = 'run_only' AND c.stopped_by IS NULL THEN 'cancelled'
                 WHEN c.run_at > coalesce(to_timestamp(%(now)s::float8), now()) THEN 'scheduled'
                 ELSE 'queued' END,
    finished_at = CASE WHEN c.pending_parents - e.n = 0 AND c.on_parent_failure = 'run_only'
                            AND c.stopped_by IS NULL
                       THEN coalesce(to_timestamp(%(now)s::float8), now()) END,
    dead_reason = CASE WHEN c.pending_parents - e.n = 0 AND c.on_parent_failure = 'run_only'
                            AND c.stopped_by IS NULL THEN 'not needed: every parent succeeded' END
FROM (SELECT child_id, count(*)::integer AS n FROM conveyor_job_edges
      WHERE parent_id = ANY(%(parents)b::int8[]) GROUP BY child_id) AS e
WHERE c.id = e.child_id AND c.state = 'blocked'
RETURNING c.id, c.queue, c.state

-- name: unblock
UPDATE conveyor_jobs AS c
SET pending_parents = c.pending_parents - e.n,
    stopped_by = coalesce(c.stopped_by, e.failed),
    state = CASE WHEN c.pending_parents - e.n > 0 THEN 'blocked'
                 WHEN c.run_at > coalesce(to_timestamp(%(now)s::float8), now()) THEN 'scheduled'
                 ELSE 'queued' END
FROM (SELECT (r->>0)::int8 AS id, (r->>1)::integer AS n, (r->>2)::int8 AS failed
      FROM jsonb_array_elements(%(rows)s::jsonb) AS r) AS e
WHERE c.id = e.id AND c.state = 'blocked'
RETURNING c.id, c.queue, c.state

-- name: blocked_children
-- Locked in id order (as every settlement locks them), so concurrent settlements queue up
-- instead of deadlocking. The edges of the parents drive (MATERIALIZED): with few blocked
-- jobs the planner would rather walk them all, a cost that grows with every blocked job.
WITH e AS MATERIALIZED (
    SELECT parent_id, child_id FROM conveyor_job_edges
    WHERE parent_id = ANY(%(parents)b::int8[])
)
SELECT c.id, e.parent_id, c.on_parent_failure
FROM e JOIN conveyor_jobs AS c ON c.id = e.child_id
WHERE c.state = 'blocked'
ORDER BY c.id, e.parent_id
FOR UPDATE OF c

-- name: stop_children
UPDATE conveyor_jobs AS j
SET state = d.state, dead_reason = d.reason, stopped_by = d.stopped_by,
    finished_at = coalesce(to_timestamp(%(now)s::float8), now())
FROM (
    SELECT (r->>0)::int8 AS id, r->>1 AS state, r->>2 AS reason, (r->>3)::int8 AS stopped_by
    FROM jsonb_array_elements(%(rows)s::jsonb) AS r
) AS d
WHERE j.id = d.id AND j.state = 'blocked'
RETURNING j.id, j.state, j.has_children

-- name: reblock_children
UPDATE conveyor_jobs
SET pending_parents = pending_parents + 1
WHERE state = 'blocked' AND id IN (
    SELECT child_id FROM conveyor_job_edges WHERE parent_id = %(id)s)

-- name: stopped_children
SELECT c.id FROM conveyor_job_edges AS e JOIN conveyor_jobs AS c ON c.id = e.child_id
WHERE e.parent_id = ANY(%(parents)b::int8[])
  AND c.stopped_by = e.parent_id AND c.state IN ('dead', 'cancelled')
  AND NOT EXISTS (
      SELECT 1 FROM conveyor_job_edges AS o JOIN conveyor_jobs AS p ON p.id = o.parent_id
      WHERE o.child_id = c.id AND o.parent_id <> e.parent_id
        AND p.state IN ('dead', 'cancelled'))
ORDER BY c.id

-- name: revive_children
UPDATE conveyor_jobs AS j
SET state = 'blocked', finished_at = NULL, dead_reason = NULL, stopped_by = NULL,
    cancel_requested = false,
    pending_parents = (
        SELECT count(*) FROM conveyor_job_edges AS e JOIN conveyor_jobs AS p
          ON p.id = e.parent_id
        WHERE e.child_id = j.id AND p.state <> 'succeeded')
WHERE j.id = ANY(%(ids)b::int8[]) AND j.state IN ('dead', 'cancelled')

-- name: job_parents
SELECT p.id, p.state, p.result FROM conveyor_job_edges AS e JOIN conveyor_jobs AS p
  ON p.id = e.parent_id
WHERE e.child_id = %(id)s
ORDER BY p.id

-- name: job_children
SELECT c.id, c.state FROM conveyor_job_edges AS e JOIN conveyor_jobs AS c ON c.id = e.child_id
WHERE e.parent_id = %(id)s
ORDER BY c.id

-- name: workflow_jobs
SELECT id, task, queue, state, args, kwargs, priority, date_part('epoch', run_at) AS run_at,
       attempts, max_attempts, date_part('epoch', created_at) AS created_at, idempotency_key,
       lost_runs, result, errors, dead_reason, timeout, progress, checkpoint, cancel_requested,
       suspect, worker_id, lease_token, date_part('epoch', lease_expires_at) AS lease_expires_at,
       date_part('epoch', started_at) AS started_at,
       date_part('epoch', finished_at) AS finished_at, pending_parents, stopped_by, workflow_id,
       escalated_to, escalated_from
FROM conveyor_jobs WHERE workflow_id = %(workflow_id)s
ORDER BY id

-- name: forget_edges
DELETE FROM conveyor_job_edges WHERE child_id = ANY(%(ids)b::int8[])

-- Escalation (conveyor/workflows/escalation.py), in the transaction that wrote the job dead.

-- name: escalate
-- A job of :task with the arguments of job :from; none when :from is itself an escalated copy
-- of that same task (a task escalates to itself once).
INSERT INTO conveyor_jobs (
    queue, task, args, kwargs, state, priority, run_at, max_attempts, timeout, created_at,
    escalated_from
)
SELECT %(queue)s, %(task)s, args, kwargs, 'queued', %(priority)s,
       coalesce(to_timestamp(%(now)s::float8), now()), %(max_attempts)s, %(timeout)s,
       coalesce(to_timestamp(%(now)s::float8), now()), id
FROM conveyor_jobs
WHERE id = %(from)s AND NOT (task = %(task)s AND escalated_from IS NOT NULL)
RETURNING id

-- name: link_escalation
UPDATE conveyor_jobs
SET escalated_to = %(to)s::int8,
    dead_reason = 'escalated to job ' || %(to)s::int8 || ' (' || %(task)s::text || ', on '
                  || %(why)s::text || '): ' || coalesce(dead_reason, '')
WHERE id = %(from)s::int8

-- name: set_trace_contexts
-- Jobs enqueued with tracing on (conveyor.tracing): their traceparent, in the enqueue's
-- transaction. rows: [id, traceparent] as JSON.
UPDATE conveyor_jobs AS j SET trace_context = r->>1
FROM jsonb_array_elements(%(rows)s::jsonb) AS r
WHERE j.id = (r->>0)::int8

-- name: trace_context
SELECT trace_context FROM conveyor_jobs WHERE id = %(id)s
