-- Every claim wrote an entry into the unique index of lease tokens: one index insert per run,
-- and about 125 of the roughly 1,000 bytes of WAL a claimed and finished job costs (EXPLAIN
-- (ANALYZE, WAL) of a claim of 500, bench/pg_drain_ceiling.py). Its one reader was
-- extend_leases, once per heartbeat (10 s by default) per worker; every other statement that
-- names a run finds it by id and token through the primary key. extend_leases now reads
-- conveyor_jobs_leases, which holds the running jobs only: one walk of them per beat instead of
-- one index entry per claim. Nothing relied on the index's uniqueness: a run is fenced by its
-- job's id and its token together, and a token is a random UUID (122 random bits).
DROP INDEX conveyor_jobs_lease_token;
