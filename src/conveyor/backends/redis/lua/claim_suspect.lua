-- uses: breakers
-- claim_suspect: retrying -> running for the best due suspect of the queues ARGV[5] (JSON
-- array, "" for any) that every gate lets start -- its queue's pause, quiet hours, cap and rate
-- limit, its task's rate limit bucket and its task's breaker (closed: a suspect is never a
-- probe) --, for worker ARGV[2] only if it holds no running job; the start spends a token of
-- its queue's and its bucket's rate limits. ARGV[3] lease seconds, ARGV[4] "1" to only look
-- (suspect_waiting: returns 1 or 0), ARGV[6] the queues in their quiet hours now (JSON array),
-- ARGV[7] a fresh lease token.
local worker, lease, only_look = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local wanted = nil
if ARGV[5] ~= '' then
  wanted = {}
  for _, q in ipairs(cjson.decode(ARGV[5])) do wanted[q] = true end
end
local quiet = {}
for _, q in ipairs(cjson.decode(ARGV[6])) do quiet[q] = true end

-- The tasks behind breakers that are not closed.
local held = {}
for _, name in ipairs(redis.call('SMEMBERS', P .. ':unsettled')) do
  local row = breaker_load(name)
  if row and row.state ~= 'closed' then
    for _, task in ipairs(row.tasks) do held[task] = true end
  end
end

local function bucket_of(h)
  if h.rate_key then return h.task .. '\n' .. h.rate_key end
  return nil
end

local best, best_h = nil, nil
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':suspects', '-inf', num(NOW))) do
  local h = load(id)
  if (wanted == nil or wanted[h.queue]) and not held[h.task] then
    local room = nil
    if redis.call('SISMEMBER', P .. ':gated', h.queue) == 1 then room = gate_room(h.queue, quiet) end
    local b = bucket_of(h)
    if b then
      local next_start = tn(redis.call('HGET', P .. ':bucket:' .. b, 'rate_next'))
      if next_start and next_start > NOW then room = 0 end
    end
    if room == nil or room > 0 then
      local better = best == nil
      if not better then
        local p, bp = tonumber(h.priority), tonumber(best_h.priority)
        local r, br = tn(h.run_at), tn(best_h.run_at)
        better = p > bp or (p == bp and (r < br or (r == br and tonumber(id) < tonumber(best))))
      end
      if better then best, best_h = id, h end
    end
  end
end
if only_look then return best and 1 or 0 end
-- A replay of a claim that ran (see replayed_run in common.lua): the same run again.
local again = replayed_run(ARGV[7])
if again then return again end
if best == nil or redis.call('SCARD', P .. ':held:' .. worker) > 0 then return false end
local b = bucket_of(best_h)
local row = start_run(best, best_h, worker, lease, ARGV[7])
take_rate(best_h.queue, 1)
if b then take_bucket(b) end
publish()
return row
