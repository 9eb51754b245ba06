-- Queries of the benchmark scripts against PostgreSQL. Templates marked "composed" hold
-- {identifiers} filled with psycopg.sql.Identifier.

-- name: synchronous_commit
SELECT current_setting('synchronous_commit')

-- name: drop_schema
-- composed
DROP SCHEMA IF EXISTS {schema} CASCADE

-- name: waiting
-- composed; W4's backlog: jobs not finished yet. Both counts walk small partial indexes, so
-- the query stays cheap while millions of finished jobs pile up.
SELECT (SELECT count(*) FROM {schema}.conveyor_jobs WHERE state = 'queued')
     + (SELECT count(*) FROM {schema}.conveyor_jobs WHERE state = 'running')

-- name: autovacuum
SELECT current_setting('autovacuum')

-- name: use_schema
-- composed
SET search_path TO {schema}

-- name: sessions
-- The server processes of one application's connections (claim_cost.py reads their CPU time).
SELECT pid FROM pg_stat_activity WHERE application_name = %(name)s
