-- Workers look for cancel requests among their running jobs several times a second (see
-- cancel_requests in queries.sql). Only running jobs someone asked to cancel are in this index:
-- almost always none, so each look is one probe of an empty tree, however many jobs are
-- running or finished, and claims and finishes (which leave cancel_requested at 0) never write
-- to it.
CREATE INDEX conveyor_jobs_cancel_requested
    ON conveyor_jobs (worker_id) WHERE state = 'running' AND cancel_requested = 1;
