-- Caps on the jobs of a queue running at once, across every worker. A queue without a row, or
-- with max_running NULL, has no cap. A claim from a capped queue locks the queue's row
-- (FOR UPDATE) before it counts the queue's running jobs, so concurrent claims of that queue
-- take turns and never overshoot; claims from uncapped queues never touch this table.
CREATE TABLE conveyor_queue_limits (
    queue       text COLLATE "C" PRIMARY KEY CHECK (length(queue) BETWEEN 1 AND 200),
    max_running integer CHECK (max_running IS NULL OR max_running >= 1)
);

-- Such a claim counts the running jobs of its queue, which no index could find without walking
-- every running job. A separate index of running jobs by queue would cost every claim one more
-- index entry (7% more server time per job, measured with bench/claim_cost.py), capped or not;
-- so the index of running jobs that rescue already kept is keyed by queue first instead. Rescue
-- now walks all of it, as heartbeats do, to find the expired leases: one sweep a second over
-- the running jobs alone, against a cost on every claim.
DROP INDEX conveyor_jobs_leases;
CREATE INDEX conveyor_jobs_leases
    ON conveyor_jobs (queue, lease_expires_at) WHERE state = 'running';
