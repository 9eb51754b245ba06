-- The worker registry: one row per worker process, written at its start, beaten on its
-- heartbeat schedule, deleted at its clean exit. beat_interval and dead_after (seconds) are the
-- worker's own, so every sweeper judges it alike. A worker that went dead_after seconds without
-- a beat, or whose process a worker of the same machine finds gone, is declared dead by
-- maintenance (which releases its running jobs and its leases at once), and forgotten an hour
-- later. The table holds a row per worker process: a few hundred at most.
CREATE TABLE conveyor_workers (
    id             text COLLATE "C" PRIMARY KEY,
    host           text             NOT NULL,
    pid            integer          NOT NULL,
    -- the kernel boot and PID namespace that pid belongs to: workers of the same machine tell a
    -- dead one by its pid being gone. NULL where the worker could not tell.
    machine        text,
    -- NULL for every queue
    queues         text[],
    concurrency    integer          NOT NULL CHECK (concurrency >= 1),
    state          text COLLATE "C" NOT NULL CHECK (state IN ('running', 'stopping', 'dead')),
    stop_requested boolean          NOT NULL DEFAULT false,
    started_at     timestamptz      NOT NULL,
    last_beat_at   timestamptz      NOT NULL,
    beat_interval  double precision NOT NULL CHECK (beat_interval > 0),
    dead_after     double precision NOT NULL CHECK (dead_after > 0)
);

-- Leases on maintenance duties: the holder (a worker id) runs the duty named until expires_at,
-- renewing as it goes; once the lease lapses, or its holder gives it up, another takes it.
CREATE TABLE conveyor_leaders (
    name       text COLLATE "C" PRIMARY KEY,
    holder     text COLLATE "C" NOT NULL,
    expires_at timestamptz      NOT NULL
);
