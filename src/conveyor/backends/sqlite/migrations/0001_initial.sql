-- The jobs table. One row per job; a run of a job is identified by its lease_token.
-- Times are UNIX seconds (REAL). The CHECK constraints make impossible rows impossible.
-- State tests are written as OR chains, not IN lists: SQLite evaluates a constant IN list in a
-- CHECK or a partial-index predicate through a temporary table on every row written, which
-- halved the insert rate. Queries that rely on a partial index repeat its predicate verbatim.
CREATE TABLE conveyor_jobs (
    -- AUTOINCREMENT: ids of pruned or discarded jobs are never handed out again.
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue            TEXT    NOT NULL CHECK (length(queue) BETWEEN 1 AND 200),
    task             TEXT    NOT NULL CHECK (length(task) BETWEEN 1 AND 500),
    args             TEXT    NOT NULL,
    kwargs           TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (
                         state = 'blocked' OR state = 'scheduled' OR state = 'queued'
                         OR state = 'running' OR state = 'retrying' OR state = 'succeeded'
                         OR state = 'dead' OR state = 'cancelled'),
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           REAL    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    lost_runs        INTEGER NOT NULL DEFAULT 0 CHECK (lost_runs >= 0),
    timeout          REAL    CHECK (timeout IS NULL OR timeout > 0),
    idempotency_key  TEXT,
    lease_token      TEXT,
    lease_expires_at REAL,
    worker_id        TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested = 0 OR cancel_requested = 1),
    result           TEXT,
    errors           TEXT    NOT NULL DEFAULT '[]',
    dead_reason      TEXT,
    progress         TEXT,
    checkpoint       TEXT,
    created_at       REAL    NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    -- a run holds a lease exactly while the job is running
    CHECK ((state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
    -- finished exactly when terminal
    CHECK ((state = 'succeeded' OR state = 'dead' OR state = 'cancelled')
           = (finished_at IS NOT NULL))
);

-- The claim queries walk these in order and stop after LIMIT rows: finished jobs are not in them.
CREATE INDEX conveyor_jobs_ready_by_queue
    ON conveyor_jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX conveyor_jobs_ready
    ON conveyor_jobs (priority DESC, run_at, id) WHERE state = 'queued';

-- Promotion of delayed and retrying jobs whose time has come.
CREATE INDEX conveyor_jobs_due
    ON conveyor_jobs (run_at) WHERE state = 'scheduled' OR state = 'retrying';

-- Rescue of expired leases, and heartbeats (which look among running jobs for their tokens).
-- There is deliberately no index on lease_token: fenced writes find the row by id, and an
-- index on a random token cost a third of the claim time.
CREATE INDEX conveyor_jobs_leases
    ON conveyor_jobs (lease_expires_at) WHERE state = 'running';

-- One live job per idempotency key; the second index serves the "any" scope.
CREATE UNIQUE INDEX conveyor_jobs_idempotency_live
    ON conveyor_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL
      AND (state = 'blocked' OR state = 'scheduled' OR state = 'queued' OR state = 'running'
           OR state = 'retrying');
CREATE INDEX conveyor_jobs_idempotency_any
    ON conveyor_jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Retention pruning.
CREATE INDEX conveyor_jobs_finished
    ON conveyor_jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Queue depth (backpressure) and stats, answered from the index alone.
CREATE INDEX conveyor_jobs_queue_state ON conveyor_jobs (queue, state);

-- Retry budgets: a fixed window per task, shared by every worker.
CREATE TABLE conveyor_retry_budgets (
    task         TEXT    PRIMARY KEY,
    window_start REAL    NOT NULL,
    used         INTEGER NOT NULL CHECK (used >= 0)
);
