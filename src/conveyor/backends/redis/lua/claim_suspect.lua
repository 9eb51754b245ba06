-- claim_suspect: retrying -> running for the best due suspect of the queues ARGV[5] (JSON
-- array, "" for any) whose gates leave room, for worker ARGV[2] only if it holds no running
-- job. ARGV[3] lease seconds, ARGV[4] "1" to only look (suspect_waiting: returns 1 or 0),
-- ARGV[6] the queues in their quiet hours now (JSON array), ARGV[7] a fresh lease token.
local worker, lease, only_look = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local wanted = nil
if ARGV[5] ~= '' then
  wanted = {}
  for _, q in ipairs(cjson.decode(ARGV[5])) do wanted[q] = true end
end
local quiet = {}
for _, q in ipairs(cjson.decode(ARGV[6])) do quiet[q] = true end

local best, best_h = nil, nil
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':suspects', '-inf', num(NOW))) do
  local h = load(id)
  if wanted == nil or wanted[h.queue] then
    local room = nil
    if redis.call('SISMEMBER', P .. ':gated', h.queue) == 1 then room = gate_room(h.queue, quiet) end
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
local row = start_run(best, best_h, worker, lease, ARGV[7])
take_rate(best_h.queue, 1)
publish()
return row
