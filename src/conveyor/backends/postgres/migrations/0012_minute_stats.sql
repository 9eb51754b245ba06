-- Per-minute aggregates of what the fleet did (conveyor/backends/tally.py): per minute, queue and
-- task, the runs that ended and how, their run times and queue waits (a sum and cumulative
-- counts under fixed bounds, for averages, p95 and Prometheus histograms) and the jobs
-- enqueued. They outlive the jobs they count (retention prunes those), and every worker writes
-- them, so they describe the fleet, not the process that reads them.
--
-- Written by the transactions that end runs (finish_succeeded's statement itself, tally_ends
-- in a mixed batch's transaction, tally_rescued in a rescue's), never by enqueue: the
-- maintenance leader counts enqueued jobs afterwards, past an id watermark (count_enqueued).
--
-- shard is the writing session's backend pid: no two transactions in flight ever write the
-- same row, so finishing workers never wait on each other's aggregates (nor deadlock on
-- them); reads sum the shards.
CREATE TABLE conveyor_minute_stats (
    minute     bigint           NOT NULL,  -- UNIX seconds at the minute's start
    queue      text COLLATE "C" NOT NULL,
    task       text COLLATE "C" NOT NULL,
    shard      integer          NOT NULL,
    enqueued   bigint           NOT NULL DEFAULT 0,
    succeeded  bigint           NOT NULL DEFAULT 0,
    retried    bigint           NOT NULL DEFAULT 0,
    dead       bigint           NOT NULL DEFAULT 0,
    cancelled  bigint           NOT NULL DEFAULT 0,
    rescued    bigint           NOT NULL DEFAULT 0,
    run_count  bigint           NOT NULL DEFAULT 0,
    run_sum    float8           NOT NULL DEFAULT 0,
    -- cumulative: run_le[i] runs took at most tally.BOUNDS[i] seconds
    run_le     bigint[]         NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0}',
    wait_count bigint           NOT NULL DEFAULT 0,
    wait_sum   float8           NOT NULL DEFAULT 0,
    wait_le    bigint[]         NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0}',
    PRIMARY KEY (minute, queue, task, shard)
);

-- Everything folded out of closed minutes (fold_stats), per queue and task: Prometheus counters
-- are these plus the minutes not folded yet, so they never go down when old minutes are pruned.
CREATE TABLE conveyor_stats_totals (
    queue      text COLLATE "C" NOT NULL,
    task       text COLLATE "C" NOT NULL,
    enqueued   bigint           NOT NULL DEFAULT 0,
    succeeded  bigint           NOT NULL DEFAULT 0,
    retried    bigint           NOT NULL DEFAULT 0,
    dead       bigint           NOT NULL DEFAULT 0,
    cancelled  bigint           NOT NULL DEFAULT 0,
    rescued    bigint           NOT NULL DEFAULT 0,
    run_count  bigint           NOT NULL DEFAULT 0,
    run_sum    float8           NOT NULL DEFAULT 0,
    run_le     bigint[]         NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0}',
    wait_count bigint           NOT NULL DEFAULT 0,
    wait_sum   float8           NOT NULL DEFAULT 0,
    wait_le    bigint[]         NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0}',
    PRIMARY KEY (queue, task)
);

-- Watermarks: 'enqueued', the highest job id counted as enqueued; 'folded', the first minute
-- not folded into the totals yet.
CREATE TABLE conveyor_stats_marks (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO conveyor_stats_marks (name, value)
SELECT 'enqueued', coalesce(max(id), 0) FROM conveyor_jobs;
INSERT INTO conveyor_stats_marks (name, value) VALUES ('folded', 0);

-- Element-wise sums of a two-dimensional array's rows: histograms added up.
CREATE FUNCTION conveyor_sum_arrays(arrays bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(total ORDER BY i) FROM (
        SELECT i, sum(arrays[r][i])::bigint AS total
        FROM generate_subscripts(arrays, 1) AS r, generate_subscripts(arrays, 2) AS i
        GROUP BY i) AS s
$$;

-- Adds the ends of runs to the minute of ``at``. One row per run: its outcome ('succeeded',
-- 'retried', 'dead', 'cancelled'; a rescue's 'rescued', 'rescued_dead', 'rescued_cancelled'),
-- its run time and queue wait in seconds (NULL for a lost run). The bounds are tally.BOUNDS.
CREATE FUNCTION conveyor_tally(
    at timestamptz, queues text[], tasks text[], outcomes text[], runs float8[], waits float8[]
) RETURNS bigint LANGUAGE sql AS $$
    WITH ends AS (
        SELECT * FROM unnest(queues, tasks, outcomes, runs, waits)
            AS e (queue, task, outcome, run, wait)
    ),
    added AS (
        INSERT INTO conveyor_minute_stats AS s (
            minute, queue, task, shard, succeeded, retried, dead, cancelled, rescued,
            run_count, run_sum, run_le, wait_count, wait_sum, wait_le)
        SELECT floor(date_part('epoch', at) / 60)::bigint * 60, queue, task, pg_backend_pid(),
               count(*) FILTER (WHERE outcome = 'succeeded'),
               count(*) FILTER (WHERE outcome = 'retried'),
               count(*) FILTER (WHERE outcome IN ('dead', 'rescued_dead')),
               count(*) FILTER (WHERE outcome IN ('cancelled', 'rescued_cancelled')),
               count(*) FILTER (WHERE outcome IN ('rescued', 'rescued_dead', 'rescued_cancelled')),
               count(run), coalesce(sum(run), 0),
               ARRAY[count(*) FILTER (WHERE run <= 0.005), count(*) FILTER (WHERE run <= 0.025),
                     count(*) FILTER (WHERE run <= 0.1), count(*) FILTER (WHERE run <= 0.25),
                     count(*) FILTER (WHERE run <= 1), count(*) FILTER (WHERE run <= 2.5),
                     count(*) FILTER (WHERE run <= 10), count(*) FILTER (WHERE run <= 30),
                     count(*) FILTER (WHERE run <= 120), count(*) FILTER (WHERE run <= 600)],
               count(wait), coalesce(sum(wait), 0),
               ARRAY[count(*) FILTER (WHERE wait <= 0.005), count(*) FILTER (WHERE wait <= 0.025),
                     count(*) FILTER (WHERE wait <= 0.1), count(*) FILTER (WHERE wait <= 0.25),
                     count(*) FILTER (WHERE wait <= 1), count(*) FILTER (WHERE wait <= 2.5),
                     count(*) FILTER (WHERE wait <= 10), count(*) FILTER (WHERE wait <= 30),
                     count(*) FILTER (WHERE wait <= 120), count(*) FILTER (WHERE wait <= 600)]
        FROM ends GROUP BY queue, task ORDER BY queue, task
        ON CONFLICT (minute, queue, task, shard) DO UPDATE SET
            succeeded = s.succeeded + excluded.succeeded,
            retried = s.retried + excluded.retried,
            dead = s.dead + excluded.dead,
            cancelled = s.cancelled + excluded.cancelled,
            rescued = s.rescued + excluded.rescued,
            run_count = s.run_count + excluded.run_count,
            run_sum = s.run_sum + excluded.run_sum,
            run_le = conveyor_sum_arrays(ARRAY[s.run_le, excluded.run_le]),
            wait_count = s.wait_count + excluded.wait_count,
            wait_sum = s.wait_sum + excluded.wait_sum,
            wait_le = conveyor_sum_arrays(ARRAY[s.wait_le, excluded.wait_le])
        RETURNING 1
    )
    SELECT count(*) FROM added
$$;

-- Job counts on a big table (postgres/stats.py, job_counts): live jobs are counted, up to a cap,
-- through the partial indexes keyed by queue that the hot path keeps anyway; the dead letters
-- and cancelled jobs through this one, which only jobs ending that way enter (a successful
-- finish pays nothing for it); succeeded jobs, and the counts past the cap, are estimated from
-- the planner's joint frequencies of (queue, state) that ANALYZE keeps.
CREATE INDEX conveyor_jobs_failed_by_queue
    ON conveyor_jobs (queue, state) WHERE state IN ('dead', 'cancelled');
CREATE STATISTICS conveyor_jobs_queue_state (mcv) ON queue, state FROM conveyor_jobs;

-- The W3C traceparent of the span that enqueued a job (conveyor.tracing, the otel extra), so
-- that its runs continue the trace. Written only for jobs enqueued with tracing on.
ALTER TABLE conveyor_jobs ADD COLUMN trace_context text;
