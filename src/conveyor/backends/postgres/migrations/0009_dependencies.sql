-- Job dependencies (see conveyor/workflows/): a job enqueued with parents waits in 'blocked'
-- until every parent succeeded. The edges are a table of their own, keyed by parent, so that a
-- parent's end finds its children by one index range; each child counts its parents not yet
-- ended (pending_parents), so the last parent's end unblocks it without looking at the others.
-- has_children is the cheap check of the hot path: a finish looks for edges only when it is set.
-- on_parent_failure is the child's policy when a parent ends dead or cancelled (NULL: cancel);
-- stopped_by names the parent whose failure ended the job (to revive it on requeue), or, for
-- a failure callback ('run_only': it runs only if a parent failed), the parent that failed.
ALTER TABLE conveyor_jobs
    ADD COLUMN pending_parents integer NOT NULL DEFAULT 0 CHECK (pending_parents >= 0),
    ADD COLUMN has_children boolean NOT NULL DEFAULT false,
    ADD COLUMN on_parent_failure text COLLATE "C" CHECK (on_parent_failure IN ('run', 'dead', 'run_only')),
    ADD COLUMN stopped_by bigint,
    ADD COLUMN workflow_id text COLLATE "C",
    -- Escalation (conveyor/workflows/escalation.py): the job a failure was escalated to, and
    -- back.
    ADD COLUMN escalated_to bigint,
    ADD COLUMN escalated_from bigint;
CREATE TABLE conveyor_job_edges (
    parent_id bigint NOT NULL,
    child_id  bigint NOT NULL,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX conveyor_job_edges_by_child ON conveyor_job_edges (child_id, parent_id);
CREATE INDEX conveyor_jobs_workflow ON conveyor_jobs (workflow_id) WHERE workflow_id IS NOT NULL;

-- The successes of a batch unblock their children in the statement that writes them (the
-- all-success batch commits alone, without a transaction block), through this function: a
-- VOLATILE function reads with a fresh snapshot, so it sees the edges of a child enqueued by a
-- transaction that committed while the finish waited on the parent's row (the enqueue locks
-- the parent to set has_children). The statement's own snapshot, older, would miss them.
-- Returns how many children became ready; NOTIFYs their queues on p_channel.
CREATE FUNCTION conveyor_release_children(p_parents bigint[], p_now timestamptz, p_channel text)
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    released bigint;
BEGIN
    WITH r AS (
        UPDATE conveyor_jobs AS c
        SET pending_parents = c.pending_parents - e.n,
            state = CASE WHEN c.pending_parents - e.n > 0 THEN 'blocked'
                         WHEN c.on_parent_failure = 'run_only' AND c.stopped_by IS NULL
                             THEN 'cancelled'
                         WHEN c.run_at > p_now THEN 'scheduled'
                         ELSE 'queued' END,
            finished_at = CASE WHEN c.pending_parents - e.n = 0
                                    AND c.on_parent_failure = 'run_only'
                                    AND c.stopped_by IS NULL THEN p_now END,
            dead_reason = CASE WHEN c.pending_parents - e.n = 0
                                    AND c.on_parent_failure = 'run_only'
                                    AND c.stopped_by IS NULL
                               THEN 'not needed: every parent succeeded' END
        FROM (SELECT child_id, count(*)::integer AS n FROM conveyor_job_edges
              WHERE parent_id = ANY(p_parents) GROUP BY child_id) AS e
        WHERE c.id = e.child_id AND c.state = 'blocked'
        RETURNING c.queue, c.state
    ), q AS (
        SELECT DISTINCT queue FROM r WHERE state = 'queued'
    )
    SELECT count(pg_notify(p_channel, queue)) INTO released FROM q;
    RETURN released;
END
$$;
