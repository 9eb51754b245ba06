-- Poison isolation. A job whose worker died (or whose lease expired) while the worker held
-- other jobs too cannot be blamed for the death, nor can its neighbours: the rescue gives each
-- of them its run back and marks it a suspect. A suspect waits in state 'retrying' and is
-- claimed only by claim_suspect, alone, by a worker holding nothing else, so its next death is
-- its own and costs it an attempt (see rescue_expired and rescue_dead_workers in queries.sql).
-- Promotion must leave suspects where they are: the index of due jobs holds non-suspects only.
-- Suspects get a small index of their own, almost always empty, in claim order. Adding a
-- column with a constant default rewrites no row.
ALTER TABLE conveyor_jobs ADD COLUMN suspect boolean NOT NULL DEFAULT false;
DROP INDEX conveyor_jobs_due;
CREATE INDEX conveyor_jobs_due
    ON conveyor_jobs (run_at) WHERE state IN ('scheduled', 'retrying') AND NOT suspect;
CREATE INDEX conveyor_jobs_suspects
    ON conveyor_jobs (priority DESC, run_at, id) WHERE state = 'retrying' AND suspect;
