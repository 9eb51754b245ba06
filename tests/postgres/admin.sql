-- Test-only administration of the PostgreSQL test server: a database per test session, a schema
-- per test. Templates marked "composed" hold {identifiers} filled with psycopg.sql.Identifier.

-- name: create_database
-- composed; template0: template1 may be in use by someone else's session, which blocks a copy.
CREATE DATABASE {database} TEMPLATE template0

-- name: drop_database
-- composed
DROP DATABASE IF EXISTS {database} WITH (FORCE)

-- name: drop_schema
-- composed
DROP SCHEMA IF EXISTS {schema} CASCADE

-- name: short_lock_timeout
SET lock_timeout = '5s'
