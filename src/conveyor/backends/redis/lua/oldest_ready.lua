-- oldest_ready: per queue with queued jobs, the run_at of its oldest one, as [queue, run_at,
-- ...]. The ready index is ordered by priority first: a loose scan takes the head of each
-- priority (one seek each); rate-limited jobs have an index by run_at of their own. A read.
local out = {}
for _, queue in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  local oldest = nil
  local key = P .. ':ready:' .. queue
  local from = '-'
  while true do
    local head = redis.call('ZRANGEBYLEX', key, from, '+', 'LIMIT', 0, 1)[1]
    if not head then break end
    local run_at = tonumber(string.sub(head, 12, 31))
    if oldest == nil or run_at < oldest then oldest = run_at end
    -- Past every member of this priority: ';' sorts right after ':'.
    from = '[' .. string.sub(head, 1, 10) .. ';'
  end
  local rated = redis.call('ZRANGE', P .. ':rated:' .. queue, 0, 0, 'WITHSCORES')
  if rated[2] and (oldest == nil or tonumber(rated[2]) < oldest) then oldest = tonumber(rated[2]) end
  if oldest then
    out[#out + 1] = queue
    out[#out + 1] = num(oldest)
  end
end
return out
