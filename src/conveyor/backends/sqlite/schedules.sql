-- The transitions of periodic jobs' schedules (conveyor/limits/schedules.py), apart from the
-- hot path's queries.sql. Same names in every dialect.

-- name: register_schedule
INSERT INTO conveyor_schedules (name, since) VALUES (:name, :now)
ON CONFLICT (name) DO NOTHING

-- name: schedule_states
SELECT name, paused, since, last_tick, last_job_id, last_enqueued_at
FROM conveyor_schedules
ORDER BY name

-- name: take_tick
-- Only forward, and not while paused: a tick another scheduler took already (or a later one)
-- changes nothing and returns no row, and no job is written.
UPDATE conveyor_schedules SET last_tick = :tick, last_enqueued_at = :now
WHERE name = :name AND paused = 0 AND (last_tick IS NULL OR last_tick < :tick)
RETURNING name

-- name: record_tick_job
UPDATE conveyor_schedules SET last_job_id = :job_id WHERE name = :name

-- name: set_schedule_paused
INSERT INTO conveyor_schedules (name, since, paused) VALUES (:name, :now, :paused)
-- Resuming moves since to now: the ticks that passed while paused are not due, nor missed.
ON CONFLICT (name) DO UPDATE SET
    paused = excluded.paused,
    since = CASE WHEN conveyor_schedules.paused AND NOT excluded.paused
                 THEN excluded.since ELSE conveyor_schedules.since END
RETURNING name, paused, since, last_tick, last_job_id, last_enqueued_at
