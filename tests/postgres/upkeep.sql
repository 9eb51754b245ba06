-- Looking at autovacuum and vacuums of the jobs table, for the upkeep tests.

-- name: table_autovacuum_off
ALTER TABLE conveyor_jobs SET (autovacuum_enabled = false)

-- name: vacuum_count
SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'conveyor_jobs'::regclass

-- name: clear_stats_snapshot
SELECT pg_stat_clear_snapshot()
