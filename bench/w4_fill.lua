-- Bench only (w4_cost.py): ARGV[1] jobs finished long ago, written as the engine leaves a
-- job of a real run: the fields of the finished job ARGV[2] (its id, and its rank when it has
-- one, made the new job's), its entries in P:jobs and P:ended (common.lua), and its count in
-- P:stats.
-- KEYS[1] is the app's prefix. Returns the next free id.
local P = KEYS[1]
local count, model = tonumber(ARGV[1]), ARGV[2]
local flat = redis.call('HGETALL', P .. ':job:' .. model)
local f = {}
for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
local first = redis.call('INCRBY', P .. ':seq', count) - count + 1
local finished = f.finished_at
local jobs, done = {}, {}
local function flush()
  if #jobs > 0 then
    redis.call('ZADD', P .. ':jobs', unpack(jobs))
    redis.call('RPUSH', P .. ':ended', unpack(done))
  end
  jobs, done = {}, {}
end
for id = first, first + count - 1 do
  local fields = {}
  for k, v in pairs(f) do
    if k == 'id' then
      v = tostring(id)
    elseif k == 'rk' then
      v = string.sub(v, 1, -13) .. string.format('%012d', id)
    end
    fields[#fields + 1] = k
    fields[#fields + 1] = v
  end
  redis.call('HSET', P .. ':job:' .. id, unpack(fields))
  if f.state == 'succeeded' or f.state == 'cancelled' then
    done[#done + 1] = id .. ' ' .. finished
  end
  jobs[#jobs + 1] = id
  jobs[#jobs + 1] = id
  if #jobs >= 2000 then flush() end
end
flush()
redis.call('HINCRBY', P .. ':stats', f.queue .. '\n' .. f.state, count)
-- Counted as enqueued, as they would have been when they were (stats_enqueued.lua).
redis.call('HSET', P .. ':stats_marks', 'enqueued', first + count - 1)
return first + count
