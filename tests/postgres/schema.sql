-- Test-only queries of test_schema.py and test_schema_script.py.

-- name: tables_named_conveyor
SELECT schemaname, tablename FROM pg_tables WHERE tablename LIKE 'conveyor\_%%'
  AND schemaname = current_schema()

-- name: drift
-- Someone "tuned" the schema by hand: one index gone, one added, a column changed and one added.
DROP INDEX conveyor_jobs_ready;
CREATE INDEX conveyor_jobs_extra ON conveyor_jobs (task);
ALTER TABLE conveyor_jobs ALTER COLUMN priority SET DEFAULT 5;
ALTER TABLE conveyor_jobs ADD COLUMN extra text

-- name: pretend_newer
INSERT INTO conveyor_migrations (version, name, applied_at) VALUES (%(version)s, 'future', now())

-- name: migration_versions
SELECT version FROM conveyor_migrations ORDER BY version

-- name: migrations_of
-- composed
SELECT version, name FROM {schema}.conveyor_migrations ORDER BY version

-- name: schema_exists
SELECT to_regnamespace(%(schema)s) IS NOT NULL
