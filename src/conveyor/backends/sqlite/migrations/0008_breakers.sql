-- Circuit breakers (conveyor/limits/breakers.py): one row per breaker that ever counted a
-- failure or was opened or closed by hand; a declared breaker without a row is closed. Claims
-- read the rows that are not closed and skip the tasks they list, so a claim with every breaker
-- closed never looks here. Times are UNIX seconds, as in conveyor_jobs.
CREATE TABLE conveyor_breakers (
    name           TEXT    PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    state          TEXT    NOT NULL CHECK (
                       state = 'closed' OR state = 'open' OR state = 'half_open'),
    -- JSON array of the task names behind the breaker: what a claim skips while it is not closed
    tasks          TEXT    NOT NULL DEFAULT '[]',
    -- JSON: the times of the last failures (count mode) or [start, runs, failures] buckets
    recent         TEXT    NOT NULL DEFAULT '[]',
    window_seconds REAL    NOT NULL CHECK (window_seconds > 0),
    opened_at      REAL,
    -- while open, when a probe may start; NULL while open: opened by hand until closed by hand
    probe_at       REAL,
    cooldown       REAL    CHECK (cooldown IS NULL OR cooldown > 0),
    -- the run of the probe job while half-open
    probe_job      INTEGER,
    probe_token    TEXT,
    updated_at     REAL    NOT NULL,
    CHECK ((state = 'closed') = (opened_at IS NULL)),
    CHECK (state = 'half_open' OR probe_token IS NULL)
);
