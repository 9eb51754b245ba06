-- count_enqueued: tally up to ARGV[3] jobs of ids above the watermark, in id order, under the
-- minute of their created_at, stopping at the first one younger than ARGV[2] seconds; the
-- watermark moves past the last one counted. Enqueue itself pays nothing. Jobs deleted before
-- they were counted are not. Returns how many were counted.
local settle, batch = tonumber(ARGV[2]), tonumber(ARGV[3])
local mark = redis.call('HGET', P .. ':stats_marks', 'enqueued') or '0'
local ids = redis.call('ZRANGEBYSCORE', P .. ':jobs', '(' .. mark, '+inf', 'LIMIT', 0, batch)
local cutoff = NOW - settle
-- "<minute>\n<queue>\31<task>\31" -> jobs; upto: the last id walked past.
local counts, upto = {}, nil
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', jkey(id), 'created_at', 'queue', 'task')
  local created = tonumber(f[1])
  if created and created >= cutoff then break end
  if created then
    local name = num(math.floor(created / 60) * 60) .. '\n' .. f[2] .. '\31' .. f[3] .. '\31'
    counts[name] = (counts[name] or 0) + 1
  end
  upto = id
end
if upto == nil then return 0 end
local counted = 0
for name, count in pairs(counts) do
  local minute, row = string.match(name, '^([^\n]*)\n(.*)$')
  redis.call('HINCRBY', P .. ':minute:' .. minute, row .. 'enqueued', count)
  redis.call('ZADD', P .. ':minutes', minute, minute)
  counted = counted + count
end
redis.call('HSET', P .. ':stats_marks', 'enqueued', upto)
return counted
