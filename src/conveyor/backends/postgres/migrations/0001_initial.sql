-- The jobs table. One row per job; a run of a job is identified by its lease_token.
-- Every object is created unqualified: the backend sets search_path to its own schema
-- (settings.postgres_schema), so the same script builds the real schema and the scratch schema
-- that verify_schema() compares it with.
--
-- Payloads (args, kwargs, result, progress, checkpoint) are `json`, not `jsonb`: `json` keeps
-- the text exactly as given (it is only syntax-checked), so what a task was called with comes
-- back byte for byte. jsonb would turn 1e20 into the integer 100000000000000000000, -0.0 into 0,
-- reorder object keys, and pay for building its binary tree on every insert of the hot path
-- while nothing ever queries inside a payload. `errors` is ours, appended to on every failure
-- and read by operators: jsonb, whose || appends without reparsing the whole array.
--
-- Names, states, keys and tokens are compared byte-wise (COLLATE "C"): every index on the hot
-- path has one of them as a key, and a linguistic collation (en_US.UTF-8 and friends) would
-- make each comparison a strcoll() call while buying nothing for identifiers.
CREATE TABLE conveyor_jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text COLLATE "C" NOT NULL CHECK (length(queue) BETWEEN 1 AND 200),
    task             text COLLATE "C" NOT NULL CHECK (length(task) BETWEEN 1 AND 500),
    state            text COLLATE "C" NOT NULL CHECK (state IN (
                         'blocked', 'scheduled', 'queued', 'running', 'retrying',
                         'succeeded', 'dead', 'cancelled')),
    priority         integer          NOT NULL DEFAULT 0,
    attempts         integer          NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer          NOT NULL CHECK (max_attempts >= 1),
    lost_runs        integer          NOT NULL DEFAULT 0 CHECK (lost_runs >= 0),
    cancel_requested boolean          NOT NULL DEFAULT false,
    run_at           timestamptz      NOT NULL,
    created_at       timestamptz      NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_expires_at timestamptz,
    -- seconds; a duration the worker enforces, never compared in SQL
    timeout          double precision CHECK (timeout IS NULL OR timeout > 0),
    lease_token      text COLLATE "C",
    worker_id        text,
    idempotency_key  text COLLATE "C",
    dead_reason      text,
    args             json             NOT NULL,
    kwargs           json             NOT NULL,
    result           json,
    progress         json,
    checkpoint       json,
    errors           jsonb            NOT NULL DEFAULT '[]'::jsonb,
    -- a run holds a lease exactly while the job is running
    CONSTRAINT conveyor_jobs_lease_iff_running CHECK (
        (state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
    -- finished exactly when terminal
    CONSTRAINT conveyor_jobs_finished_iff_terminal CHECK (
        (state IN ('succeeded', 'dead', 'cancelled')) = (finished_at IS NOT NULL))
);

-- Every job row is inserted, updated two or three times (claim, finish, maybe retries) and
-- deleted by retention: a queue table churns through dead tuples far faster than the default
-- thresholds (20% of the table) assume. On a table holding millions of finished jobs, 20% means
-- hundreds of thousands of dead entries piling up at the head of the small "ready" index that
-- every claim walks. Vacuum at 1% instead, and re-analyze at 2% so the planner's picture of
-- the (skewed) state distribution stays current and it keeps choosing the partial indexes.
ALTER TABLE conveyor_jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- The claim queries walk these in order and stop after LIMIT rows: only queued jobs are in them,
-- so finished (and running, scheduled) jobs are never scanned.
CREATE INDEX conveyor_jobs_ready_by_queue
    ON conveyor_jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX conveyor_jobs_ready
    ON conveyor_jobs (priority DESC, run_at, id) WHERE state = 'queued';

-- Promotion of delayed and retrying jobs whose time has come, and next_due().
CREATE INDEX conveyor_jobs_due
    ON conveyor_jobs (run_at) WHERE state IN ('scheduled', 'retrying');

-- Rescue of expired leases.
CREATE INDEX conveyor_jobs_leases
    ON conveyor_jobs (lease_expires_at) WHERE state = 'running';

-- Heartbeats find runs by token; unique because a token names exactly one run.
CREATE UNIQUE INDEX conveyor_jobs_lease_token
    ON conveyor_jobs (lease_token) WHERE lease_token IS NOT NULL;

-- One live job per idempotency key (the arbiter of INSERT ... ON CONFLICT); the second index
-- serves the "any" scope, which also looks at finished jobs.
CREATE UNIQUE INDEX conveyor_jobs_idempotency_live
    ON conveyor_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL
      AND state IN ('blocked', 'scheduled', 'queued', 'running', 'retrying');
CREATE INDEX conveyor_jobs_idempotency_any
    ON conveyor_jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Retention pruning.
CREATE INDEX conveyor_jobs_finished
    ON conveyor_jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Queue depth (backpressure) and stats.
CREATE INDEX conveyor_jobs_queue_state ON conveyor_jobs (queue, state);

-- Retry budgets: a fixed window per task, shared by every worker.
CREATE TABLE conveyor_retry_budgets (
    task         text        PRIMARY KEY,
    window_start timestamptz NOT NULL,
    used         integer     NOT NULL CHECK (used >= 0)
);
