-- Templates of `conveyor schema sql` (backends/script.py): every migration, wrapped in what
-- `conveyor schema migrate` does around it, as one script a DBA can read and apply by hand.
-- {placeholders} are filled with checked values only: the schema name (a plain lowercase
-- identifier, see settings.py), migration versions (integers) and names ([a-z0-9_]+).

-- name: head
-- Conveyor's PostgreSQL schema "{schema}": {what}, printed by `conveyor schema sql`.
-- It is one transaction; apply it with
--     psql -v ON_ERROR_STOP=1 -f conveyor.sql postgresql://user@host/db
-- and check the result with `conveyor schema verify`.
BEGIN;
-- The lock `conveyor schema migrate` and starting workers take: they never run alongside.
DO $lock$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('conveyor migrate'), hashtext('{schema}')); END $lock$;
CREATE SCHEMA IF NOT EXISTS "{schema}";
SET LOCAL search_path TO "{schema}";
{create_migrations_table};
-- A schema at another version would fail halfway through: stop here, before any change.
DO $guard$
DECLARE
    found integer := (SELECT coalesce(max(version), 0) FROM conveyor_migrations);
BEGIN
    IF found <> {from_version} THEN
        RAISE EXCEPTION 'schema "{schema}" is at version %, this script upgrades version {from_version}', found
            USING HINT = format('print the script for it with: conveyor schema sql --from %s', found);
    END IF;
END
$guard$;

-- name: migration
-- Migration {version}: {name}
{script}
INSERT INTO conveyor_migrations (version, name, applied_at) VALUES ({version}, '{name}', now());

-- name: tail
COMMIT;
