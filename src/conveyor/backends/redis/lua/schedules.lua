-- Schedules of periodic jobs: ARGV[2] is the action.
--   register name ...: record the schedules not yet known, as first seen now;
--   pause name / resume name: (recorded now if not yet); returns the schedule's hash.
-- enqueue.lua takes a schedule's ticks.
local action = ARGV[2]
local function register(name)
  local key = P .. ':schedule:' .. name
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'name', name, 'paused', '0', 'since', num(NOW))
    redis.call('SADD', P .. ':schedules', name)
  end
  return key
end
if action == 'register' then
  for i = 3, #ARGV do register(ARGV[i]) end
  return 1
end
local key = register(ARGV[3])
if action == 'pause' then
  redis.call('HSET', key, 'paused', '1')
elseif redis.call('HGET', key, 'paused') == '1' then
  -- Resumed: no tick before now is due.
  redis.call('HSET', key, 'paused', '0', 'since', num(NOW))
end
return redis.call('HGETALL', key)
