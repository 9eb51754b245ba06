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
