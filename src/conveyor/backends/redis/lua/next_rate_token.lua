-- next_rate_token: the earliest next start still ahead of a task's rate limit bucket that
-- holds a queued job of the queues ARGV[2] (JSON array, "" for any), or false. A read.
local wanted = nil
if ARGV[2] ~= '' then
  wanted = {}
  for _, q in ipairs(cjson.decode(ARGV[2])) do wanted[q] = true end
end
local best = nil
for _, b in ipairs(redis.call('SMEMBERS', P .. ':buckets')) do
  local at = tn(redis.call('HGET', P .. ':bucket:' .. b, 'rate_next'))
  if at and at > NOW and (best == nil or at < best) and bucket_first(b, wanted) then best = at end
end
return best and num(best) or false
