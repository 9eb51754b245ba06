-- Periodic jobs (conveyor/limits/schedules.py): one row per schedule, written when a worker
-- first sees it, and advanced to each tick in the same transaction that enqueues the tick's
-- job, only forward (last_tick < the new tick): however many workers run the scheduler, each
-- tick gets one job. Times are UNIX seconds; since is when the schedule was first seen or last
-- resumed, the floor of its missed ticks. paused is set by operators and stops new ticks, not running jobs.
CREATE TABLE conveyor_schedules (
    name             TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    paused           INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    since            REAL    NOT NULL,
    last_tick        REAL,
    last_job_id      INTEGER,
    last_enqueued_at REAL,
    CHECK ((last_tick IS NULL) = (last_enqueued_at IS NULL))
);
