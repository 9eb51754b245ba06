-- The gates of queue ARGV[2] (conveyor/limits/gates.py): ARGV[4..] are pairs of field and
-- value, "" to remove the field; ARGV[3] "0" changes a queue's row only if it has one. A queue keeps its row (P:gate_rows) once it had one; it is
-- gated (P:gated, the claim's gated path) while any gate is set. Removing a rate limit forgets
-- its next start.
local queue = ARGV[2]
local key = P .. ':gate:' .. queue
if ARGV[3] == '0' and redis.call('SISMEMBER', P .. ':gate_rows', queue) == 0 then return 0 end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', key, ARGV[i])
  else
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  end
end
redis.call('SADD', P .. ':gate_rows', queue)
local g = redis.call('HMGET', key, 'max_running', 'paused_until', 'quiet', 'rate_count')
if g[1] or g[2] or g[3] or g[4] then
  redis.call('SADD', P .. ':gated', queue)
else
  redis.call('SREM', P .. ':gated', queue)
end
wake(queue)
publish()
return 1
