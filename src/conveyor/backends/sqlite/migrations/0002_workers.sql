-- The worker registry: one row per worker process, written at its start, beaten on its
-- heartbeat schedule, deleted at its clean exit. Times are UNIX seconds (REAL) of the database's
-- clock. beat_interval and dead_after are the worker's own, so every sweeper judges it alike.
-- A worker that went dead_after seconds without a beat, or whose process a worker of the same
-- machine finds gone, is declared dead by maintenance (which releases its running jobs and its
-- leases at once), and forgotten an hour later.
CREATE TABLE conveyor_workers (
    id             TEXT    PRIMARY KEY,
    host           TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    -- the kernel boot and PID namespace that pid belongs to: workers of the same machine tell a
    -- dead one by its pid being gone. NULL where the worker could not tell.
    machine        TEXT,
    -- a JSON array of queue names; NULL for every queue
    queues         TEXT,
    concurrency    INTEGER NOT NULL CHECK (concurrency >= 1),
    state          TEXT    NOT NULL CHECK (
                       state = 'running' OR state = 'stopping' OR state = 'dead'),
    stop_requested INTEGER NOT NULL DEFAULT 0 CHECK (stop_requested = 0 OR stop_requested = 1),
    started_at     REAL    NOT NULL,
    last_beat_at   REAL    NOT NULL,
    beat_interval  REAL    NOT NULL CHECK (beat_interval > 0),
    dead_after     REAL    NOT NULL CHECK (dead_after > 0)
);

-- Leases on maintenance duties: the holder (a worker id) runs the duty named until expires_at,
-- renewing as it goes; once the lease lapses, or its holder gives it up, another takes it.
CREATE TABLE conveyor_leaders (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);
