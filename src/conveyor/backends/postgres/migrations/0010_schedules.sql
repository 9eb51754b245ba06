-- Periodic jobs (conveyor/limits/schedules.py): one row per schedule, written when a worker
-- first sees it, and advanced to each tick in the same transaction that enqueues the tick's
-- job, only forward (last_tick < the new tick): the UPDATE locks the row, and a concurrent
-- scheduler's UPDATE of the same tick waits for it, re-reads the advanced row and changes
-- nothing, so each tick gets one job however many workers run the scheduler. since is when the
-- schedule was first seen or last resumed, the floor of its missed ticks. paused is set by operators and stops
-- new ticks, not running jobs.
CREATE TABLE conveyor_schedules (
    name             text COLLATE "C" PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    paused           boolean     NOT NULL DEFAULT false,
    since            timestamptz NOT NULL,
    last_tick        timestamptz,
    last_job_id      bigint,
    last_enqueued_at timestamptz,
    CHECK ((last_tick IS NULL) = (last_enqueued_at IS NULL))
);
