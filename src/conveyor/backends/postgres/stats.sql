-- The per-minute aggregates of the PostgreSQL engine (conveyor/backends/tally.py, migration 12)
-- and the cheap reads of the HTTP server's figures, apart from the hot path's queries.sql.
-- Same names as the SQLite engine's stats.sql. A minute is named by its start, in UNIX seconds.

-- name: tally_ends
-- Ahead of the statements of a batch's retries, deaths and cancels, in its transaction: the runs
-- it will end, locked so that they cannot change hands before those statements, tallied under
-- the transaction's minute. outcomes: 'retried', 'dead' or 'cancelled', one per run.
WITH runs AS (
    SELECT j.queue, j.task, o.outcome,
           date_part('epoch', coalesce(to_timestamp(%(now)s::float8), now()) - j.started_at)
               AS run,
           date_part('epoch', j.started_at - j.run_at) AS wait
    FROM unnest(%(ids)b::int8[], %(tokens)b::text[], %(outcomes)b::text[])
        AS o (id, token, outcome)
    JOIN conveyor_jobs AS j ON j.id = o.id
    WHERE j.lease_token = o.token AND j.state = 'running'
    ORDER BY j.id
    FOR UPDATE OF j
)
SELECT conveyor_tally(
    coalesce(to_timestamp(%(now)s::float8), now()),
    array_agg(queue), array_agg(task), array_agg(outcome), array_agg(run), array_agg(wait))
FROM runs HAVING count(*) > 0

-- name: tally_rescued
-- In a rescue's transaction: the runs it took back (outcomes, one per id: 'rescued',
-- 'rescued_dead', 'rescued_cancelled'), whose length nobody knows.
WITH lost AS (
    SELECT j.queue, j.task, o.outcome
    FROM unnest(%(ids)b::int8[], %(outcomes)b::text[]) AS o (id, outcome)
    JOIN conveyor_jobs AS j ON j.id = o.id
)
SELECT conveyor_tally(
    coalesce(to_timestamp(%(now)s::float8), now()),
    array_agg(queue), array_agg(task), array_agg(outcome),
    array_agg(NULL::float8), array_agg(NULL::float8))
FROM lost HAVING count(*) > 0

-- name: minute_stats
SELECT minute, queue, task,
       sum(enqueued), sum(succeeded), sum(retried), sum(dead), sum(cancelled), sum(rescued),
       sum(run_count), sum(run_sum), conveyor_sum_arrays(array_agg(run_le)),
       sum(wait_count), sum(wait_sum), conveyor_sum_arrays(array_agg(wait_le))
FROM conveyor_minute_stats WHERE minute >= %(since)s
GROUP BY minute, queue, task ORDER BY minute, queue, task

-- name: stats_totals
-- The totals, and the minutes not folded into them yet, in one snapshot.
WITH every AS (
    SELECT queue, task, enqueued, succeeded, retried, dead, cancelled, rescued,
           run_count, run_sum, run_le, wait_count, wait_sum, wait_le
    FROM conveyor_stats_totals
    UNION ALL
    SELECT queue, task, enqueued, succeeded, retried, dead, cancelled, rescued,
           run_count, run_sum, run_le, wait_count, wait_sum, wait_le
    FROM conveyor_minute_stats
    WHERE minute >= (SELECT value FROM conveyor_stats_marks WHERE name = 'folded')
)
SELECT queue, task,
       sum(enqueued), sum(succeeded), sum(retried), sum(dead), sum(cancelled), sum(rescued),
       sum(run_count), sum(run_sum), conveyor_sum_arrays(array_agg(run_le)),
       sum(wait_count), sum(wait_sum), conveyor_sum_arrays(array_agg(wait_le))
FROM every GROUP BY queue, task ORDER BY queue, task

-- name: lock_stats_mark
SELECT value FROM conveyor_stats_marks WHERE name = %(name)s FOR UPDATE

-- name: set_stats_mark
UPDATE conveyor_stats_marks SET value = %(value)s WHERE name = %(name)s

-- name: count_enqueued
-- Jobs enqueued past the watermark, up to the first one younger than settle seconds (its
-- transaction may have company still open) and at most batch ids on: a walk of the primary
-- key from the watermark. Returns the new watermark and how many jobs it counted.
WITH bounds AS (
    SELECT least(
        coalesce((SELECT min(id) - 1 FROM conveyor_jobs
                  WHERE id > %(mark)s
                    AND created_at >= coalesce(to_timestamp(%(now)s::float8), now())
                                      - %(settle)s * interval '1 second'),
                 (SELECT coalesce(max(id), 0) FROM conveyor_jobs)),
        %(mark)s + %(batch)s) AS upto
),
counted AS (
    SELECT floor(date_part('epoch', created_at) / 60)::bigint * 60 AS minute, queue, task,
           count(*) AS n
    FROM conveyor_jobs, bounds WHERE id > %(mark)s AND id <= bounds.upto
    GROUP BY 1, 2, 3
),
added AS (
    INSERT INTO conveyor_minute_stats AS s (minute, queue, task, shard, enqueued)
    SELECT minute, queue, task, pg_backend_pid(), n FROM counted ORDER BY 1, 2, 3
    ON CONFLICT (minute, queue, task, shard) DO UPDATE SET enqueued = s.enqueued + excluded.enqueued
)
SELECT greatest(upto, %(mark)s), (SELECT coalesce(sum(n), 0) FROM counted) FROM bounds

-- name: fold_minutes
-- Minutes [from, upto) into the totals.
INSERT INTO conveyor_stats_totals AS t (
    queue, task, enqueued, succeeded, retried, dead, cancelled, rescued,
    run_count, run_sum, run_le, wait_count, wait_sum, wait_le)
SELECT queue, task,
       sum(enqueued), sum(succeeded), sum(retried), sum(dead), sum(cancelled), sum(rescued),
       sum(run_count), sum(run_sum), conveyor_sum_arrays(array_agg(run_le)),
       sum(wait_count), sum(wait_sum), conveyor_sum_arrays(array_agg(wait_le))
FROM conveyor_minute_stats WHERE minute >= %(from)s AND minute < %(upto)s
GROUP BY queue, task
ON CONFLICT (queue, task) DO UPDATE SET
    enqueued = t.enqueued + excluded.enqueued,
    succeeded = t.succeeded + excluded.succeeded,
    retried = t.retried + excluded.retried,
    dead = t.dead + excluded.dead,
    cancelled = t.cancelled + excluded.cancelled,
    rescued = t.rescued + excluded.rescued,
    run_count = t.run_count + excluded.run_count,
    run_sum = t.run_sum + excluded.run_sum,
    run_le = conveyor_sum_arrays(ARRAY[t.run_le, excluded.run_le]),
    wait_count = t.wait_count + excluded.wait_count,
    wait_sum = t.wait_sum + excluded.wait_sum,
    wait_le = conveyor_sum_arrays(ARRAY[t.wait_le, excluded.wait_le])

-- name: prune_minutes
-- Folded minutes older than the cutoff.
DELETE FROM conveyor_minute_stats
WHERE minute < %(cutoff)s
  AND minute < (SELECT value FROM conveyor_stats_marks WHERE name = 'folded')

-- name: table_size
-- The planner's idea of the jobs table's rows, scaled to its current size as the planner
-- does (reltuples is as of the last VACUUM or ANALYZE); -1 when it never looked.
SELECT CASE WHEN c.relpages > 0
            THEN c.reltuples / c.relpages
                 * (pg_relation_size(c.oid) / current_setting('block_size')::float8)
            ELSE c.reltuples END
FROM pg_class AS c
WHERE c.oid = to_regclass('conveyor_jobs')

-- name: capped_counts
-- Jobs per (queue, state) but succeeded, each counted up to the cap through an index keyed by
-- queue: skip scans find the queues (or pairs) present, one index probe each, then at most cap
-- entries are counted for each. Queued jobs of rate-limited tasks (outside the ready index) are
-- counted apart, up to the cap, by queue. Returns (queue, state, count).
WITH RECURSIVE ready (queue) AS (
    (SELECT queue FROM conveyor_jobs WHERE state = 'queued' AND rate_key IS NULL
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM conveyor_jobs AS j
            WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue > r.queue
            ORDER BY j.queue LIMIT 1)
    FROM ready AS r WHERE r.queue IS NOT NULL
),
running (queue) AS (
    (SELECT queue FROM conveyor_jobs WHERE state = 'running' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM conveyor_jobs AS j
            WHERE j.state = 'running' AND j.queue > r.queue ORDER BY j.queue LIMIT 1)
    FROM running AS r WHERE r.queue IS NOT NULL
),
waiting (queue, state) AS (
    (SELECT queue, state FROM conveyor_jobs
     WHERE state IN ('blocked', 'scheduled', 'retrying') ORDER BY queue, state LIMIT 1)
    UNION ALL
    SELECT n.queue, n.state FROM waiting AS w, LATERAL (
        SELECT j.queue, j.state FROM conveyor_jobs AS j
        WHERE j.state IN ('blocked', 'scheduled', 'retrying')
          AND (j.queue, j.state) > (w.queue, w.state)
        ORDER BY j.queue, j.state LIMIT 1) AS n
),
failed (queue, state) AS (
    (SELECT queue, state FROM conveyor_jobs
     WHERE state IN ('dead', 'cancelled') ORDER BY queue, state LIMIT 1)
    UNION ALL
    SELECT n.queue, n.state FROM failed AS f, LATERAL (
        SELECT j.queue, j.state FROM conveyor_jobs AS j
        WHERE j.state IN ('dead', 'cancelled') AND (j.queue, j.state) > (f.queue, f.state)
        ORDER BY j.queue, j.state LIMIT 1) AS n
)
SELECT r.queue, 'queued', (
    SELECT count(*) FROM (
        SELECT 1 FROM conveyor_jobs AS j
        WHERE j.state = 'queued' AND j.rate_key IS NULL AND j.queue = r.queue
        LIMIT %(cap)s) AS c)
FROM ready AS r WHERE r.queue IS NOT NULL
UNION ALL
SELECT queue, 'queued', count(*) FROM (
    SELECT j.queue FROM conveyor_jobs AS j
    WHERE j.state = 'queued' AND j.rate_key IS NOT NULL LIMIT %(cap)s) AS limited
GROUP BY queue
UNION ALL
SELECT r.queue, 'running', (
    SELECT count(*) FROM (
        SELECT 1 FROM conveyor_jobs AS j WHERE j.state = 'running' AND j.queue = r.queue
        LIMIT %(cap)s) AS c)
FROM running AS r WHERE r.queue IS NOT NULL
UNION ALL
SELECT w.queue, w.state, (
    SELECT count(*) FROM (
        SELECT 1 FROM conveyor_jobs AS j
        WHERE j.state IN ('blocked', 'scheduled', 'retrying')
          AND j.queue = w.queue AND j.state = w.state
        LIMIT %(cap)s) AS c)
FROM waiting AS w
UNION ALL
SELECT f.queue, f.state, (
    SELECT count(*) FROM (
        SELECT 1 FROM conveyor_jobs AS j
        WHERE j.state IN ('dead', 'cancelled') AND j.queue = f.queue AND j.state = f.state
        LIMIT %(cap)s) AS c)
FROM failed AS f

-- name: queue_state_frequencies
-- The joint frequencies of (queue, state) that ANALYZE keeps (migration 12's statistics).
SELECT most_common_vals, most_common_freqs FROM pg_stats_ext
WHERE schemaname = current_schema() AND statistics_name = 'conveyor_jobs_queue_state'
