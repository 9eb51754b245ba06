-- Poison isolation. A job whose worker died (or whose lease expired) while the worker held
-- other jobs too cannot be blamed for the death, nor can its neighbours: the rescue gives each
-- of them its run back and marks it a suspect. A suspect waits in state 'retrying' and is
-- claimed only by claim_suspect, alone, by a worker holding nothing else, so its next death is
-- its own and costs it an attempt (see rescue_expired and rescue_dead_workers in queries.sql).
-- Promotion must leave suspects where they are: the index of due jobs holds non-suspects only,
-- and promote_due and next_due repeat its predicate verbatim. Suspects get a small index of
-- their own, almost always empty, in claim order.
ALTER TABLE conveyor_jobs
    ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0 CHECK (suspect = 0 OR suspect = 1);
DROP INDEX conveyor_jobs_due;
CREATE INDEX conveyor_jobs_due
    ON conveyor_jobs (run_at) WHERE (state = 'scheduled' OR state = 'retrying') AND suspect = 0;
CREATE INDEX conveyor_jobs_suspects
    ON conveyor_jobs (priority DESC, run_at, id) WHERE state = 'retrying' AND suspect = 1;
