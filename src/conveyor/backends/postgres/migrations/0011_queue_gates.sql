-- The other gates of a queue beside its cap (see conveyor/limits/): a pause (paused_until: a
-- time, 'infinity' until resumed, NULL when not paused), quiet hours (quiet: JSON,
-- conveyor.limits.quiet.QuietHours) and a rate limit (at most rate_count starts per rate_per
-- seconds; rate_next is the earliest moment the next start may happen). A claim from a gated
-- queue locks its row (lock_queue_limits) before it reads it, so claims of one rate-limited
-- queue take turns and never start more than the limit. Queues without a row keep claims on
-- their one-statement path.
ALTER TABLE conveyor_queue_limits
    ADD COLUMN paused_until timestamptz,
    ADD COLUMN quiet        text,
    ADD COLUMN rate_count   integer CHECK (rate_count IS NULL OR rate_count >= 1),
    ADD COLUMN rate_per     float8 CHECK (rate_per IS NULL OR rate_per > 0),
    ADD COLUMN rate_next    timestamptz,
    ADD CONSTRAINT conveyor_queue_limits_rate CHECK ((rate_count IS NULL) = (rate_per IS NULL));

-- Rate limits of tasks, per key (conveyor/limits/rates.py): a job of a task declared with
-- rate_limit= carries its bucket's key in rate_key ('' when enqueued without rate_key=), and
-- conveyor_rate_buckets holds each bucket's limit and next allowed start. Such jobs leave the
-- ready indexes, so a backlog held by a rate limit is never walked by the claims of other jobs;
-- a claim takes them through conveyor_jobs_rate_ready, one bucket at a time, locking the
-- buckets it takes tokens from (SKIP LOCKED: claims side by side take different buckets).
ALTER TABLE conveyor_jobs ADD COLUMN rate_key text COLLATE "C";
DROP INDEX conveyor_jobs_ready_by_queue;
DROP INDEX conveyor_jobs_ready;
CREATE INDEX conveyor_jobs_ready_by_queue
    ON conveyor_jobs (queue, priority DESC, run_at, id) WHERE state = 'queued' AND rate_key IS NULL;
CREATE INDEX conveyor_jobs_ready
    ON conveyor_jobs (priority DESC, run_at, id) WHERE state = 'queued' AND rate_key IS NULL;
CREATE INDEX conveyor_jobs_rate_ready
    ON conveyor_jobs (task, rate_key, priority DESC, run_at, id)
    WHERE state = 'queued' AND rate_key IS NOT NULL;
CREATE TABLE conveyor_rate_buckets (
    task       text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    rate_count integer NOT NULL CHECK (rate_count >= 1),
    rate_per   float8  NOT NULL CHECK (rate_per > 0),
    rate_next  timestamptz,
    PRIMARY KEY (task, key)
);
