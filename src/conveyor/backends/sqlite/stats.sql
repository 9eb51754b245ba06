-- The per-minute aggregates of the SQLite engine (conveyor/backends/tally.py, migration 12).
-- Times are UNIX seconds; a minute is named by its start. The columns r0..r9 and w0..w9 are the
-- cumulative counts under tally.BOUNDS of run times and queue waits.

-- name: waits_of_retries
-- Before a finish batch's statements: the queue wait of the runs it will retry (:ids), which
-- their statement loses as it moves run_at.
SELECT id, started_at - run_at FROM conveyor_jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'running'

-- name: runs_ended
-- After a finish batch's statements, in its write transaction: the runs it ended with one
-- outcome (:ids, a JSON array), counted per queue, task and bucket (tally.BOUNDS; 10: past
-- the last) of run time (to :now) and of queue wait. :waits holds, position by position, the
-- waits of retries, read before their statement moved run_at (null: the row still knows it).
-- SQLite does the per-run work; the caller adds up a few rows.
SELECT queue, task,
       CASE
           WHEN run <= 0.005 THEN 0 WHEN run <= 0.025 THEN 1 WHEN run <= 0.1 THEN 2
           WHEN run <= 0.25 THEN 3 WHEN run <= 1 THEN 4 WHEN run <= 2.5 THEN 5
           WHEN run <= 10 THEN 6 WHEN run <= 30 THEN 7 WHEN run <= 120 THEN 8
           WHEN run <= 600 THEN 9
           ELSE 10 END AS run_bucket,
       CASE
           WHEN wait <= 0.005 THEN 0 WHEN wait <= 0.025 THEN 1 WHEN wait <= 0.1 THEN 2
           WHEN wait <= 0.25 THEN 3 WHEN wait <= 1 THEN 4 WHEN wait <= 2.5 THEN 5
           WHEN wait <= 10 THEN 6 WHEN wait <= 30 THEN 7 WHEN wait <= 120 THEN 8
           WHEN wait <= 600 THEN 9
           ELSE 10 END AS wait_bucket,
       count(*), sum(run), sum(wait)
FROM (
    SELECT j.queue AS queue, j.task AS task, :now - j.started_at AS run,
           coalesce(json_extract(:waits, '$[' || r.key || ']'), j.started_at - j.run_at) AS wait
    FROM json_each(:ids) AS r JOIN conveyor_jobs AS j ON j.id = r.value
)
GROUP BY 1, 2, 3, 4

-- name: tasks_of
-- The queue and task of the jobs a rescue just took back (:ids, a JSON array).
SELECT id, queue, task FROM conveyor_jobs WHERE id IN (SELECT value FROM json_each(:ids))

-- name: tally_add
INSERT INTO conveyor_minute_stats (
    minute, queue, task,
    enqueued, succeeded, retried, dead, cancelled, rescued, run_count, run_sum, r0, r1, r2, r3,
    r4, r5, r6, r7, r8, r9, wait_count, wait_sum, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9)
VALUES (
    :minute, :queue, :task,
    :enqueued, :succeeded, :retried, :dead, :cancelled, :rescued, :run_count, :run_sum, :r0,
    :r1, :r2, :r3, :r4, :r5, :r6, :r7, :r8, :r9, :wait_count, :wait_sum, :w0, :w1, :w2, :w3,
    :w4, :w5, :w6, :w7, :w8, :w9)
ON CONFLICT (minute, queue, task) DO UPDATE SET
    enqueued = enqueued + excluded.enqueued, succeeded = succeeded + excluded.succeeded,
    retried = retried + excluded.retried, dead = dead + excluded.dead,
    cancelled = cancelled + excluded.cancelled, rescued = rescued + excluded.rescued,
    run_count = run_count + excluded.run_count, run_sum = run_sum + excluded.run_sum,
    r0 = r0 + excluded.r0, r1 = r1 + excluded.r1, r2 = r2 + excluded.r2, r3 = r3 + excluded.r3,
    r4 = r4 + excluded.r4, r5 = r5 + excluded.r5, r6 = r6 + excluded.r6, r7 = r7 + excluded.r7,
    r8 = r8 + excluded.r8, r9 = r9 + excluded.r9,
    wait_count = wait_count + excluded.wait_count, wait_sum = wait_sum + excluded.wait_sum,
    w0 = w0 + excluded.w0, w1 = w1 + excluded.w1, w2 = w2 + excluded.w2, w3 = w3 + excluded.w3,
    w4 = w4 + excluded.w4, w5 = w5 + excluded.w5, w6 = w6 + excluded.w6, w7 = w7 + excluded.w7,
    w8 = w8 + excluded.w8, w9 = w9 + excluded.w9

-- name: minute_stats
SELECT minute, queue, task,
    enqueued, succeeded, retried, dead, cancelled, rescued, run_count, run_sum, r0, r1, r2, r3,
    r4, r5, r6, r7, r8, r9, wait_count, wait_sum, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9
FROM conveyor_minute_stats WHERE minute >= :since ORDER BY minute, queue, task

-- name: stats_totals
-- The totals, and the minutes not folded into them yet, in one snapshot.
SELECT queue, task,
    enqueued, succeeded, retried, dead, cancelled, rescued, run_count, run_sum, r0, r1, r2, r3,
    r4, r5, r6, r7, r8, r9, wait_count, wait_sum, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9
FROM conveyor_stats_totals
UNION ALL
SELECT queue, task,
    enqueued, succeeded, retried, dead, cancelled, rescued, run_count, run_sum, r0, r1, r2, r3,
    r4, r5, r6, r7, r8, r9, wait_count, wait_sum, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9
FROM conveyor_minute_stats
WHERE minute >= (SELECT value FROM conveyor_stats_marks WHERE name = 'folded')

-- name: stats_mark
SELECT value FROM conveyor_stats_marks WHERE name = :name

-- name: set_stats_mark
UPDATE conveyor_stats_marks SET value = :value WHERE name = :name

-- name: first_unsettled_job
-- The first job above the watermark too young to count: its transaction may have company.
SELECT min(id) FROM conveyor_jobs WHERE id > :mark AND created_at >= :cutoff

-- name: last_job
SELECT coalesce(max(id), 0) FROM conveyor_jobs

-- name: new_jobs
-- Jobs enqueued between the watermark and :upto, per minute of their creation, queue and task:
-- a walk of the primary key from the watermark.
SELECT CAST(created_at / 60 AS INTEGER) * 60 AS minute, queue, task, count(*)
FROM conveyor_jobs WHERE id > :mark AND id <= :upto
GROUP BY 1, 2, 3

-- name: fold_minutes
-- Minutes [:from, :upto) into the totals.
INSERT INTO conveyor_stats_totals (
    queue, task,
    enqueued, succeeded, retried, dead, cancelled, rescued, run_count, run_sum, r0, r1, r2, r3,
    r4, r5, r6, r7, r8, r9, wait_count, wait_sum, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9)
SELECT queue, task,
    sum(enqueued), sum(succeeded), sum(retried), sum(dead), sum(cancelled), sum(rescued),
    sum(run_count), sum(run_sum), sum(r0), sum(r1), sum(r2), sum(r3), sum(r4), sum(r5),
    sum(r6), sum(r7), sum(r8), sum(r9), sum(wait_count), sum(wait_sum), sum(w0), sum(w1),
    sum(w2), sum(w3), sum(w4), sum(w5), sum(w6), sum(w7), sum(w8), sum(w9)
FROM conveyor_minute_stats WHERE minute >= :from AND minute < :upto
GROUP BY queue, task
ON CONFLICT (queue, task) DO UPDATE SET
    enqueued = enqueued + excluded.enqueued, succeeded = succeeded + excluded.succeeded,
    retried = retried + excluded.retried, dead = dead + excluded.dead,
    cancelled = cancelled + excluded.cancelled, rescued = rescued + excluded.rescued,
    run_count = run_count + excluded.run_count, run_sum = run_sum + excluded.run_sum,
    r0 = r0 + excluded.r0, r1 = r1 + excluded.r1, r2 = r2 + excluded.r2, r3 = r3 + excluded.r3,
    r4 = r4 + excluded.r4, r5 = r5 + excluded.r5, r6 = r6 + excluded.r6, r7 = r7 + excluded.r7,
    r8 = r8 + excluded.r8, r9 = r9 + excluded.r9,
    wait_count = wait_count + excluded.wait_count, wait_sum = wait_sum + excluded.wait_sum,
    w0 = w0 + excluded.w0, w1 = w1 + excluded.w1, w2 = w2 + excluded.w2, w3 = w3 + excluded.w3,
    w4 = w4 + excluded.w4, w5 = w5 + excluded.w5, w6 = w6 + excluded.w6, w7 = w7 + excluded.w7,
    w8 = w8 + excluded.w8, w9 = w9 + excluded.w9

-- name: prune_minutes
-- Folded minutes older than :cutoff.
DELETE FROM conveyor_minute_stats
WHERE minute < :cutoff
  AND minute < (SELECT value FROM conveyor_stats_marks WHERE name = 'folded')
