-- Per-minute aggregates (conveyor/backends/tally.py, redis/stats.py), tallied by the script
-- that ends the runs and written once at its end (tally_flush), under the minute of NOW.
--
-- A minute is the hash P:minute:<start>, listed in the sorted set P:minutes (score: start);
-- P:totals holds what fold_stats folded out of closed minutes. Their fields are
-- "<queue>\31<task>\31<counter>": the counters of tally.COUNTERS, run_sum and wait_sum
-- (HINCRBYFLOAT), and r<i> / w<i>, how many run times / queue waits fell in bucket i of
-- tally.BOUNDS (not cumulative; 10: past the last), whose sum is the count.

local TALLY_BOUNDS = {0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 120, 600}

-- queue .. "\31" .. task .. "\31" -> {counter -> increment}
local tallies = {}

local function tally_of(queue, task)
  local name = queue .. '\31' .. task .. '\31'
  local t = tallies[name]
  if t == nil then
    t = {}
    tallies[name] = t
  end
  return t
end

local function tally_bucket(x)
  for i = 1, 10 do
    if x <= TALLY_BOUNDS[i] then return i - 1 end
  end
  return 10
end

-- A run that ended with ``outcome`` (succeeded, retried, dead or cancelled), started at
-- ``started`` and due at ``due`` (texts of the job's fields).
local function tally_run(queue, task, outcome, started, due)
  local t = tally_of(queue, task)
  t[outcome] = (t[outcome] or 0) + 1
  started = tonumber(started)
  if started == nil then return end
  local run, wait = NOW - started, started - tonumber(due)
  local r, w = 'r' .. tally_bucket(run), 'w' .. tally_bucket(wait)
  t[r] = (t[r] or 0) + 1
  t.run_sum = (t.run_sum or 0) + run
  t[w] = (t[w] or 0) + 1
  t.wait_sum = (t.wait_sum or 0) + wait
end

-- A lost run that a rescue left in ``state``: rescued, and dead or cancelled when it ended so.
-- Nobody knows how long it ran.
local function tally_rescued(h, state)
  local t = tally_of(h.queue, h.task)
  t.rescued = (t.rescued or 0) + 1
  if state == 'dead' or state == 'cancelled' then t[state] = (t[state] or 0) + 1 end
end

local function tally_flush()
  if next(tallies) == nil then return end
  local minute = num(math.floor(NOW / 60) * 60)
  local key = P .. ':minute:' .. minute
  for name, t in pairs(tallies) do
    for counter, by in pairs(t) do
      if counter == 'run_sum' or counter == 'wait_sum' then
        redis.call('HINCRBYFLOAT', key, name .. counter, num(by))
      else
        redis.call('HINCRBY', key, name .. counter, by)
      end
    end
  end
  redis.call('ZADD', P .. ':minutes', minute, minute)
  tallies = {}
end
