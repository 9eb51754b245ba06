-- stats_totals: the totals folded out of closed minutes, then the minutes not folded yet
-- (tally.lua), in one snapshot. Returns [[field, value, ...], ...].
local folded = redis.call('HGET', P .. ':stats_marks', 'folded') or '0'
local out = {redis.call('HGETALL', P .. ':totals')}
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', P .. ':minutes', folded, '+inf')) do
  out[#out + 1] = redis.call('HGETALL', P .. ':minute:' .. minute)
end
return out
