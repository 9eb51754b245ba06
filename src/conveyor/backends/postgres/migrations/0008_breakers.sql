-- Circuit breakers (conveyor/limits/breakers.py): one row per breaker that ever counted a
-- failure or was opened or closed by hand; a declared breaker without a row is closed. Claims
-- read the rows that are not closed and skip the tasks they list, so a claim with every breaker
-- closed never looks here. Times are timestamptz, as in conveyor_jobs.
CREATE TABLE conveyor_breakers (
    name           text COLLATE "C" PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    state          text COLLATE "C" NOT NULL CHECK (
                       state = 'closed' OR state = 'open' OR state = 'half_open'),
    -- JSON array of the task names behind the breaker: what a claim skips while it is not closed
    tasks          jsonb NOT NULL DEFAULT '[]',
    -- JSON: the times of the last failures (count mode) or [start, runs, failures] buckets
    recent         jsonb NOT NULL DEFAULT '[]',
    window_seconds double precision NOT NULL CHECK (window_seconds > 0),
    opened_at      timestamptz,
    -- while open, when a probe may start; NULL while open: opened by hand until closed by hand
    probe_at       timestamptz,
    cooldown       double precision CHECK (cooldown IS NULL OR cooldown > 0),
    -- the run of the probe job while half-open
    probe_job      bigint,
    probe_token    text COLLATE "C",
    updated_at     timestamptz NOT NULL,
    CHECK ((state = 'closed') = (opened_at IS NULL)),
    CHECK (state = 'half_open' OR probe_token IS NULL)
);
