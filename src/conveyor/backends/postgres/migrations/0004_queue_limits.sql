-- Caps on the jobs of a queue running at once, across every worker. A queue without a row, or
-- with max_running NULL, has no cap. A claim from a capped queue locks the queue's row
-- (FOR UPDATE) before it counts the queue's running jobs, so concurrent claims of that queue
-- take turns and never overshoot; claims from uncapped queues never touch this table.
CREATE TABLE conveyor_queue_limits (
    queue       text COLLATE "C" PRIMARY KEY CHECK (length(queue) BETWEEN 1 AND 200),
    max_running integer CHECK (max_running IS NULL OR max_running >= 1)
);

-- The running jobs of one queue, counted by every claim from a capped queue while it holds the
-- queue's lock: without it, each count walked every running job of every queue.
CREATE INDEX conveyor_jobs_running_by_queue
    ON conveyor_jobs (queue) WHERE state = 'running';
