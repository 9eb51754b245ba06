-- Templates of `conveyor schema sql` (backends/script.py): every migration, wrapped in what
-- `conveyor schema migrate` does around it, as one script a DBA can read and apply by hand.
-- {placeholders} are filled with checked values only: migration versions (integers) and names
-- ([a-z0-9_]+).

-- name: head
-- Conveyor's SQLite schema: {what}, printed by `conveyor schema sql`.
-- It is one transaction for the sqlite3 shell, which stops at the first error (.bail on)
-- and so commits nothing of a failed run:
--     sqlite3 jobs.db < conveyor.sql
-- and check the result with `conveyor schema verify`.
.bail on
BEGIN IMMEDIATE;
{create_migrations_table};
-- A database at another version would fail halfway through: stop here, before any change.
CREATE TEMP TABLE conveyor_script_expects (
    version INTEGER CONSTRAINT "the database must be at schema version {from_version} for this script: print the one for its version with conveyor schema sql --from VERSION"
        CHECK (version = {from_version})
);
INSERT INTO temp.conveyor_script_expects
SELECT coalesce(max(version), 0) FROM main.conveyor_migrations;

-- name: migration
-- Migration {version}: {name}
{script}
INSERT INTO conveyor_migrations (version, name, applied_at)
VALUES ({version}, '{name}', (julianday('now') - 2440587.5) * 86400.0);

-- name: tail
DROP TABLE temp.conveyor_script_expects;
COMMIT;
