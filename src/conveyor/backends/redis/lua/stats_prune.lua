-- prune_stats: delete the minutes that ended more than ARGV[2] seconds ago, folded ones only.
-- Returns how many minute x queue x task rows were deleted.
local folded = tonumber(redis.call('HGET', P .. ':stats_marks', 'folded') or '0')
local cutoff = math.min(math.floor((NOW - tonumber(ARGV[2])) / 60) * 60, folded)
local rows = 0
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', P .. ':minutes', '-inf',
    '(' .. num(cutoff))) do
  local key = P .. ':minute:' .. minute
  local seen = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local row = string.match(field, '^(.*\31)')
    if not seen[row] then
      seen[row] = true
      rows = rows + 1
    end
  end
  redis.call('DEL', key)
  redis.call('ZREM', P .. ':minutes', minute)
end
return rows
