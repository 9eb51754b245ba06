-- fold_stats: add the minutes not folded yet that ended more than ARGV[2] seconds ago to the
-- totals, and move the fold mark past them (the minutes stay, for minute_stats). Returns how
-- many minute x queue x task rows were folded.
local start = tonumber(redis.call('HGET', P .. ':stats_marks', 'folded') or '0')
local upto = math.floor((NOW - tonumber(ARGV[2])) / 60) * 60
if upto <= start then return 0 end
local rows = 0
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', P .. ':minutes', num(start),
    '(' .. num(upto))) do
  local flat = redis.call('HGETALL', P .. ':minute:' .. minute)
  local seen = {}
  for i = 1, #flat, 2 do
    local field, value = flat[i], flat[i + 1]
    local row, counter = string.match(field, '^(.*\31)([^\31]*)$')
    if not seen[row] then
      seen[row] = true
      rows = rows + 1
    end
    if counter == 'run_sum' or counter == 'wait_sum' then
      redis.call('HINCRBYFLOAT', P .. ':totals', field, value)
    else
      redis.call('HINCRBY', P .. ':totals', field, value)
    end
  end
end
redis.call('HSET', P .. ':stats_marks', 'folded', num(upto))
return rows
