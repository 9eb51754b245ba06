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

-- name: schema_fingerprint
-- Everything in one schema that a test could change besides the rows of its tables -- its
-- relations and their storage options, columns, constraints, indexes, sequences, functions,
-- triggers, types and planner statistics -- as one digest. A schema goes back to the pool of
-- migrated schemas (factory.py) only if its digest is the one it had when it was migrated.
SELECT md5(coalesce(string_agg(item, E'\n' ORDER BY item), ''))
FROM (
    SELECT concat_ws(' ', 'relation', c.relname, c.relkind, c.relpersistence, c.relrowsecurity,
                     c.relreplident, array_to_string(c.reloptions, ',')) AS item
    FROM pg_class c
    WHERE c.relnamespace = to_regnamespace(%(schema)s)
    UNION ALL
    SELECT concat_ws(' ', 'column', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                     a.attnotnull, a.attidentity, a.attgenerated, a.attstattarget,
                     array_to_string(a.attoptions, ','), pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = to_regnamespace(%(schema)s) AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT concat_ws(' ', 'constraint', k.conrelid::regclass, k.conname, pg_get_constraintdef(k.oid))
    FROM pg_constraint k
    WHERE k.connamespace = to_regnamespace(%(schema)s)
    UNION ALL
    SELECT concat_ws(' ', 'index', pg_get_indexdef(i.indexrelid))
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relnamespace = to_regnamespace(%(schema)s)
    UNION ALL
    SELECT concat_ws(' ', 'sequence', s.seqrelid::regclass, s.seqtypid, s.seqstart, s.seqincrement,
                     s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
    FROM pg_sequence s
    JOIN pg_class c ON c.oid = s.seqrelid
    WHERE c.relnamespace = to_regnamespace(%(schema)s)
    UNION ALL
    SELECT concat_ws(' ', 'function', p.oid::regprocedure, md5(pg_get_functiondef(p.oid)))
    FROM pg_proc p
    WHERE p.pronamespace = to_regnamespace(%(schema)s) AND p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT concat_ws(' ', 'aggregate', p.oid::regprocedure)
    FROM pg_proc p
    WHERE p.pronamespace = to_regnamespace(%(schema)s) AND p.prokind = 'a'
    UNION ALL
    SELECT concat_ws(' ', 'trigger', pg_get_triggerdef(t.oid))
    FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = to_regnamespace(%(schema)s) AND NOT t.tgisinternal
    UNION ALL
    SELECT concat_ws(' ', 'rule', r.rulename, pg_get_ruledef(r.oid))
    FROM pg_rewrite r
    JOIN pg_class c ON c.oid = r.ev_class
    WHERE c.relnamespace = to_regnamespace(%(schema)s)
    UNION ALL
    SELECT concat_ws(' ', 'policy', p.polname, p.polrelid::regclass)
    FROM pg_policy p
    JOIN pg_class c ON c.oid = p.polrelid
    WHERE c.relnamespace = to_regnamespace(%(schema)s)
    UNION ALL
    SELECT concat_ws(' ', 'type', t.typname, t.typtype)
    FROM pg_type t
    WHERE t.typnamespace = to_regnamespace(%(schema)s)
    UNION ALL
    SELECT concat_ws(' ', 'statistics', c.relname, count(*))
    FROM pg_statistic s
    JOIN pg_class c ON c.oid = s.starelid
    WHERE c.relnamespace = to_regnamespace(%(schema)s)
    GROUP BY c.relname
) AS items

-- name: migrations_applied
-- composed
SELECT coalesce(string_agg(version || ' ' || name, ', ' ORDER BY version), '')
FROM {schema}.conveyor_migrations

-- name: tables_of
SELECT c.relname
FROM pg_class c
WHERE c.relnamespace = to_regnamespace(%(schema)s) AND c.relkind IN ('r', 'p')
  AND c.relname <> 'conveyor_migrations'
ORDER BY c.relname

-- name: empty_table
-- composed. DELETE, not TRUNCATE: on tables of a few rows it costs a tenth as much (TRUNCATE makes
-- new files for the table and each of its indexes).
DELETE FROM {table}

-- name: table_rows
-- composed. The rows a migration wrote (factory.py puts them back into an emptied schema).
SELECT * FROM {table}

-- name: refill_table
-- composed
COPY {table} FROM STDIN

-- name: restart_sequences
-- Job ids start at 1 again, as in a freshly migrated schema.
SELECT setval(s.seqrelid, s.seqstart, false)
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
WHERE c.relnamespace = to_regnamespace(%(schema)s)

-- name: pool_lock_timeout
-- A session still holding a lock on a table (a process the test left behind) makes the schema
-- unfit for the pool: wait briefly, then drop it instead.
SET lock_timeout = '2s'

-- name: schema_bytes
-- The size of a schema's tables with their indexes (factory.py drops a big one rather than
-- empty it).
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c
WHERE c.relnamespace = to_regnamespace(%(schema)s) AND c.relkind IN ('r', 'p')
