-- The other gates of a queue beside its cap (see conveyor/limits/): a pause (paused_until: a
-- time, 9e999 -- infinity -- until resumed, NULL when not paused), quiet hours (quiet: JSON,
-- conveyor.limits.quiet.QuietHours) and a rate limit (at most rate_count starts per rate_per
-- seconds; rate_next is the earliest moment the next start may happen). A claim reads a gated
-- queue's row inside its write transaction, so the rate limit's starts are exact across
-- processes. Queues without a row keep claims on their one-statement path.
ALTER TABLE conveyor_queue_limits ADD COLUMN paused_until REAL;
ALTER TABLE conveyor_queue_limits ADD COLUMN quiet TEXT;
ALTER TABLE conveyor_queue_limits ADD COLUMN rate_count INTEGER
    CHECK (rate_count IS NULL OR rate_count >= 1);
ALTER TABLE conveyor_queue_limits ADD COLUMN rate_per REAL
    CHECK (rate_per IS NULL OR rate_per > 0);
ALTER TABLE conveyor_queue_limits ADD COLUMN rate_next REAL;
