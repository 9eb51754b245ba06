-- Caps on the jobs of a queue running at once, across every worker. A queue without a row, or
-- with max_running NULL, has no cap. A claim counts the running jobs of a capped queue inside
-- its write transaction, which no other writer shares, so the count is exact.
CREATE TABLE conveyor_queue_limits (
    queue       TEXT    PRIMARY KEY CHECK (length(queue) BETWEEN 1 AND 200),
    max_running INTEGER CHECK (max_running IS NULL OR max_running >= 1)
);

-- That count needs the running jobs of one queue, which no index held since migration 3
-- dropped (queue, state). Rather than a new index, which every claim would write to, the index
-- of running jobs that rescue and heartbeats already walk is keyed by queue first: rescue now
-- walks all of it, as heartbeats do, instead of the expired part alone (running jobs only,
-- the concurrency of all workers, once a sweep).
DROP INDEX conveyor_jobs_leases;
CREATE INDEX conveyor_jobs_leases
    ON conveyor_jobs (queue, lease_expires_at) WHERE state = 'running';
