-- Per-minute aggregates of what the workers did (conveyor/backends/tally.py): per minute, queue
-- and task, the runs that ended and how, their run times and queue waits (a sum and cumulative
-- counts under fixed bounds: rI runs took at most tally.BOUNDS[I] seconds, wI likewise waited),
-- and the jobs enqueued. They outlive the jobs they count (retention prunes those).
--
-- Written in the write transactions that end runs (finish_many, the rescues), never by
-- enqueue: the maintenance leader counts enqueued jobs afterwards, past an id watermark.
-- minute: UNIX seconds at the minute's start.
CREATE TABLE conveyor_minute_stats (
    minute     INTEGER NOT NULL,
    queue      TEXT    NOT NULL,
    task       TEXT    NOT NULL,
    enqueued   INTEGER NOT NULL DEFAULT 0,
    succeeded  INTEGER NOT NULL DEFAULT 0,
    retried    INTEGER NOT NULL DEFAULT 0,
    dead       INTEGER NOT NULL DEFAULT 0,
    cancelled  INTEGER NOT NULL DEFAULT 0,
    rescued    INTEGER NOT NULL DEFAULT 0,
    run_count  INTEGER NOT NULL DEFAULT 0,
    run_sum    REAL    NOT NULL DEFAULT 0,
    r0 INTEGER NOT NULL DEFAULT 0,
    r1 INTEGER NOT NULL DEFAULT 0,
    r2 INTEGER NOT NULL DEFAULT 0,
    r3 INTEGER NOT NULL DEFAULT 0,
    r4 INTEGER NOT NULL DEFAULT 0,
    r5 INTEGER NOT NULL DEFAULT 0,
    r6 INTEGER NOT NULL DEFAULT 0,
    r7 INTEGER NOT NULL DEFAULT 0,
    r8 INTEGER NOT NULL DEFAULT 0,
    r9 INTEGER NOT NULL DEFAULT 0,
    wait_count INTEGER NOT NULL DEFAULT 0,
    wait_sum   REAL    NOT NULL DEFAULT 0,
    w0 INTEGER NOT NULL DEFAULT 0,
    w1 INTEGER NOT NULL DEFAULT 0,
    w2 INTEGER NOT NULL DEFAULT 0,
    w3 INTEGER NOT NULL DEFAULT 0,
    w4 INTEGER NOT NULL DEFAULT 0,
    w5 INTEGER NOT NULL DEFAULT 0,
    w6 INTEGER NOT NULL DEFAULT 0,
    w7 INTEGER NOT NULL DEFAULT 0,
    w8 INTEGER NOT NULL DEFAULT 0,
    w9 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue, task)
) WITHOUT ROWID;

-- Everything folded out of closed minutes, per queue and task: counters are these plus the
-- minutes not folded yet, so they never go down when old minutes are pruned.
CREATE TABLE conveyor_stats_totals (
    queue      TEXT    NOT NULL,
    task       TEXT    NOT NULL,
    enqueued   INTEGER NOT NULL DEFAULT 0,
    succeeded  INTEGER NOT NULL DEFAULT 0,
    retried    INTEGER NOT NULL DEFAULT 0,
    dead       INTEGER NOT NULL DEFAULT 0,
    cancelled  INTEGER NOT NULL DEFAULT 0,
    rescued    INTEGER NOT NULL DEFAULT 0,
    run_count  INTEGER NOT NULL DEFAULT 0,
    run_sum    REAL    NOT NULL DEFAULT 0,
    r0 INTEGER NOT NULL DEFAULT 0,
    r1 INTEGER NOT NULL DEFAULT 0,
    r2 INTEGER NOT NULL DEFAULT 0,
    r3 INTEGER NOT NULL DEFAULT 0,
    r4 INTEGER NOT NULL DEFAULT 0,
    r5 INTEGER NOT NULL DEFAULT 0,
    r6 INTEGER NOT NULL DEFAULT 0,
    r7 INTEGER NOT NULL DEFAULT 0,
    r8 INTEGER NOT NULL DEFAULT 0,
    r9 INTEGER NOT NULL DEFAULT 0,
    wait_count INTEGER NOT NULL DEFAULT 0,
    wait_sum   REAL    NOT NULL DEFAULT 0,
    w0 INTEGER NOT NULL DEFAULT 0,
    w1 INTEGER NOT NULL DEFAULT 0,
    w2 INTEGER NOT NULL DEFAULT 0,
    w3 INTEGER NOT NULL DEFAULT 0,
    w4 INTEGER NOT NULL DEFAULT 0,
    w5 INTEGER NOT NULL DEFAULT 0,
    w6 INTEGER NOT NULL DEFAULT 0,
    w7 INTEGER NOT NULL DEFAULT 0,
    w8 INTEGER NOT NULL DEFAULT 0,
    w9 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, task)
) WITHOUT ROWID;

-- Watermarks: 'enqueued', the highest job id counted as enqueued; 'folded', the first minute
-- not folded into the totals yet.
CREATE TABLE conveyor_stats_marks (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO conveyor_stats_marks (name, value)
SELECT 'enqueued', coalesce(max(id), 0) FROM conveyor_jobs;
INSERT INTO conveyor_stats_marks (name, value) VALUES ('folded', 0);

-- The W3C traceparent of the span that enqueued a job (conveyor.tracing, the otel extra), so
-- that its runs continue the trace. Written only for jobs enqueued with tracing on.
ALTER TABLE conveyor_jobs ADD COLUMN trace_context TEXT;
