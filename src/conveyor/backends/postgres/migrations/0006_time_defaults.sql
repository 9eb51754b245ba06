-- A job's times default to the transaction's clock, now(). Bulk enqueue (copy_jobs_due_now)
-- leaves both out of the COPY when every job of the batch is due at once and the clock is the
-- server's, which it is unless a test injects one: the server then reads no timestamp text.
-- Parsing two timestamps per row was a sixth of a COPY's server time, as much as one index.
ALTER TABLE conveyor_jobs
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN run_at SET DEFAULT now();
