-- The first step of an export (snapshot.py): one moment of the store, frozen. Every job hash
-- and every parent's set of children is copied under P:snap:<ARGV[2]> (in the prefix's slot),
-- as is the id index, and the copy is listed in P:snaps by time (a copy whose exporter died is
-- deleted by a later export); the export then reads the copy at its own pace while workers go
-- on, and deletes it. The small kinds (queue gates, breakers, schedules, rate limit buckets)
-- are returned at once. The copy is one script, so the server serves nobody else while it
-- runs: two commands per job, nothing more. Returns {seq, now, layout, jobs, gates, breakers,
-- schedules, buckets, stale}, gates to buckets each a list of {name, HGETALL}, stale the copies
-- listed more than ARGV[3] seconds ago.
local S = P .. ':snap:' .. ARGV[2]

local function hashes(set, prefix)
  local out = {}
  for _, name in ipairs(redis.call('SMEMBERS', P .. ':' .. set)) do
    local flat = redis.call('HGETALL', P .. ':' .. prefix .. ':' .. name)
    if #flat > 0 then out[#out + 1] = {name, flat} end
  end
  return out
end

local jobs = redis.call('ZCARD', P .. ':jobs')
for start = 0, jobs - 1, 10000 do
  for _, id in ipairs(redis.call('ZRANGE', P .. ':jobs', start, start + 9999)) do
    redis.call('COPY', jkey(id), S .. ':job:' .. id)
    -- Nothing to copy (a job without children) costs as little as asking.
    redis.call('COPY', P .. ':children:' .. id, S .. ':children:' .. id)
  end
end
if jobs > 0 then redis.call('COPY', P .. ':jobs', S .. ':jobs') end
-- By the server's clock (an injected one may stand still); those of a day ago are stale.
local clock = server_time()
local stale = redis.call('ZRANGEBYSCORE', P .. ':snaps', '-inf', clock - tonumber(ARGV[3]))
redis.call('ZADD', P .. ':snaps', clock, ARGV[2])

return {redis.call('GET', P .. ':seq') or '0', num(NOW), redis.call('GET', P .. ':layout') or '0',
  jobs, hashes('gate_rows', 'gate'), hashes('breakers', 'breaker'),
  hashes('schedules', 'schedule'), hashes('buckets', 'bucket'), stale}
