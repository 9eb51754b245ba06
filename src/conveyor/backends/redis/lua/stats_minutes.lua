-- minute_stats: the minutes (tally.lua) from the one starting at ARGV[2] on. Returns
-- [[minute, field, value, ...], ...] by minute.
local out = {}
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', P .. ':minutes', ARGV[2], '+inf')) do
  local row = redis.call('HGETALL', P .. ':minute:' .. minute)
  table.insert(row, 1, minute)
  out[#out + 1] = row
end
return out
