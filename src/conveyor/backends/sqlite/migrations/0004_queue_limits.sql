-- Caps on the jobs of a queue running at once, across every worker. A queue without a row, or
-- with max_running NULL, has no cap. Claims count the running jobs of a capped queue inside
-- their write transaction, from conveyor_jobs_queue_state (queue, state).
CREATE TABLE conveyor_queue_limits (
    queue       TEXT    PRIMARY KEY CHECK (length(queue) BETWEEN 1 AND 200),
    max_running INTEGER CHECK (max_running IS NULL OR max_running >= 1)
);
