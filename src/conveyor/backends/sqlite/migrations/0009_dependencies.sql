-- Job dependencies (see conveyor/workflows/): a job enqueued with parents waits in 'blocked'
-- until every parent succeeded. The edges are a table of their own, keyed by parent, so that a
-- parent's end finds its children by one index range; each child counts its parents not yet
-- ended (pending_parents), so the last parent's end unblocks it without looking at the others.
-- has_children is the cheap check of the hot path: a finish looks for edges only when it is set.
-- on_parent_failure is the child's policy when a parent ends dead or cancelled (NULL: cancel);
-- stopped_by names the parent whose failure ended the job (to revive it on requeue), or, for
-- a failure callback ('run_only': it runs only if a parent failed), the parent that failed.
ALTER TABLE conveyor_jobs ADD COLUMN pending_parents INTEGER NOT NULL DEFAULT 0
    CHECK (pending_parents >= 0);
ALTER TABLE conveyor_jobs ADD COLUMN has_children INTEGER NOT NULL DEFAULT 0
    CHECK (has_children = 0 OR has_children = 1);
ALTER TABLE conveyor_jobs ADD COLUMN on_parent_failure TEXT
    CHECK (on_parent_failure IS NULL OR on_parent_failure = 'run' OR on_parent_failure = 'dead'
           OR on_parent_failure = 'run_only');
ALTER TABLE conveyor_jobs ADD COLUMN stopped_by INTEGER;
ALTER TABLE conveyor_jobs ADD COLUMN workflow_id TEXT;
-- Escalation (conveyor/workflows/escalation.py): the job a failure was escalated to, and back.
ALTER TABLE conveyor_jobs ADD COLUMN escalated_to INTEGER;
ALTER TABLE conveyor_jobs ADD COLUMN escalated_from INTEGER;
CREATE TABLE conveyor_job_edges (
    parent_id INTEGER NOT NULL,
    child_id  INTEGER NOT NULL,
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
CREATE INDEX conveyor_job_edges_by_child ON conveyor_job_edges (child_id, parent_id);
CREATE INDEX conveyor_jobs_workflow ON conveyor_jobs (workflow_id) WHERE workflow_id IS NOT NULL;
