-- The first step of an export (snapshot.py): one moment of the store, frozen. Every job hash
-- and every parent's set of children is copied under P:snap:<ARGV[2]> (in the prefix's slot,
-- with an expiry of ARGV[3] seconds in case the exporter dies), as is the id index; the export
-- then reads the copy at its own pace while workers go on, and deletes it. The small kinds
-- (queue gates, breakers, schedules, rate limit buckets, retry budgets) are returned at once.
-- The copy is one script, so the server serves nobody else while it runs (about a microsecond
-- or two per job). Returns {seq, now, layout, jobs, edges, gates, breakers, schedules, buckets,
-- budgets}, each of the last five a list of {name, HGETALL}.
local S = P .. ':snap:' .. ARGV[2]
local ttl = tonumber(ARGV[3])

local function frozen(from, to)
  redis.call('COPY', from, to)
  redis.call('EXPIRE', to, ttl)
end

local function hashes(set, prefix)
  local out = {}
  for _, name in ipairs(redis.call('SMEMBERS', P .. ':' .. set)) do
    local flat = redis.call('HGETALL', P .. ':' .. prefix .. ':' .. name)
    if #flat > 0 then out[#out + 1] = {name, flat} end
  end
  return out
end

local jobs = redis.call('ZCARD', P .. ':jobs')
local edges = 0
-- Retry budgets have no index of their own: those of the tasks that have jobs.
local tasks = {}
for start = 0, jobs - 1, 10000 do
  for _, id in ipairs(redis.call('ZRANGE', P .. ':jobs', start, start + 9999)) do
    frozen(jkey(id), S .. ':job:' .. id)
    tasks[redis.call('HGET', jkey(id), 'task')] = true
    local children = P .. ':children:' .. id
    local n = redis.call('SCARD', children)
    if n > 0 then
      frozen(children, S .. ':children:' .. id)
      edges = edges + n
    end
  end
end
if jobs > 0 then frozen(P .. ':jobs', S .. ':jobs') end

local budgets = {}
for task, _ in pairs(tasks) do
  local flat = redis.call('HGETALL', P .. ':budget:' .. task)
  if #flat > 0 then budgets[#budgets + 1] = {task, flat} end
end

return {redis.call('GET', P .. ':seq') or '0', num(NOW), redis.call('GET', P .. ':layout') or '0',
  jobs, edges, hashes('gate_rows', 'gate'), hashes('breakers', 'breaker'),
  hashes('schedules', 'schedule'), hashes('buckets', 'bucket'), budgets}
