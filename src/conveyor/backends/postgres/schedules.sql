-- The transitions of periodic jobs' schedules (conveyor/limits/schedules.py), apart from the
-- hot path's queries.sql. Same names in every dialect.

-- name: register_schedule
INSERT INTO conveyor_schedules (name, since)
VALUES (%(name)s, coalesce(to_timestamp(%(now)s::float8), now()))
ON CONFLICT (name) DO NOTHING

-- name: schedule_states
SELECT name, paused, date_part('epoch', since) AS since,
       date_part('epoch', last_tick) AS last_tick, last_job_id,
       date_part('epoch', last_enqueued_at) AS last_enqueued_at
FROM conveyor_schedules
ORDER BY name

-- name: take_tick
-- Only forward, and not while paused: a tick another scheduler took already (or a later one)
-- changes nothing and returns no row, and no job is written. A scheduler racing for the same
-- tick waits for this row's lock, then re-checks the condition against the committed row.
UPDATE conveyor_schedules
SET last_tick = to_timestamp(%(tick)s::float8),
    last_enqueued_at = coalesce(to_timestamp(%(now)s::float8), now())
WHERE name = %(name)s AND NOT paused
  AND (last_tick IS NULL OR last_tick < to_timestamp(%(tick)s::float8))
RETURNING name

-- name: record_tick_job
UPDATE conveyor_schedules SET last_job_id = %(job_id)s WHERE name = %(name)s

-- name: set_schedule_paused
INSERT INTO conveyor_schedules AS s (name, since, paused)
VALUES (%(name)s, coalesce(to_timestamp(%(now)s::float8), now()), %(paused)s)
-- Resuming moves since to now: the ticks that passed while paused are not due, nor missed.
ON CONFLICT (name) DO UPDATE SET
    paused = excluded.paused,
    since = CASE WHEN s.paused AND NOT excluded.paused THEN excluded.since ELSE s.since END
RETURNING name, paused, date_part('epoch', since) AS since,
          date_part('epoch', last_tick) AS last_tick, last_job_id,
          date_part('epoch', last_enqueued_at) AS last_enqueued_at
