-- Test-only queries of test_transactional.py: the application's own schema and table, which
-- live beside Conveyor's schema in the same database.

-- name: create_app_schema
-- composed
CREATE SCHEMA {schema}

-- name: create_orders
CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL CHECK (item <> ''))

-- name: insert_order
INSERT INTO orders (id, item) VALUES (%(id)s, %(item)s)

-- name: count_orders
SELECT count(*) FROM orders

-- name: search_path
SELECT current_setting('search_path')

-- name: set_local_search_path
SELECT set_config('search_path', %(path)s, true)

-- name: listen
-- composed
LISTEN {channel}

-- name: count_jobs_with_key
-- composed
SELECT count(*) FROM {schema}.conveyor_jobs WHERE idempotency_key = %(key)s

-- name: count_jobs
-- composed
SELECT count(*) FROM {schema}.conveyor_jobs

-- name: broken_statement
SELECT * FROM no_such_table
