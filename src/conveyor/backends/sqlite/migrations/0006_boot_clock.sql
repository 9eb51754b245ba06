-- Leases and beats on the machine's boot clock (see conveyor/boottime.py): a step of the wall
-- clock (NTP, a VM resume) no longer expires healthy leases or declares live workers dead.
-- Each lease, beat and leadership now also records the boot id and the deadline (or beat) in
-- seconds since that boot. The wall-clock columns stay as they were: what people read
-- (`jobs show`, `workers`) and what a row without a boot id -- written before this migration,
-- or by a process that has no boot clock -- is still judged by. Running rows migrated here have
-- no boot id, so their leases run out on the wall clock as before, until a heartbeat of this
-- version writes both. The boot columns mean something only while the row holds the lease (a
-- running job, a live worker, a held leadership), like worker_id: nothing clears them
-- afterwards, and the next claim, beat or acquisition overwrites them -- which is why workers of
-- an older version, which would not, must be stopped before this migration.
ALTER TABLE conveyor_jobs ADD COLUMN lease_boot TEXT;
ALTER TABLE conveyor_jobs ADD COLUMN lease_expires_uptime REAL;
ALTER TABLE conveyor_workers ADD COLUMN beat_boot TEXT;
ALTER TABLE conveyor_workers ADD COLUMN last_beat_uptime REAL;
ALTER TABLE conveyor_leaders ADD COLUMN boot TEXT;
ALTER TABLE conveyor_leaders ADD COLUMN expires_uptime REAL;
