-- claim: queued -> running for up to ARGV[4] ready jobs, due ones promoted first.
-- ARGV[2] worker id, ARGV[3] lease seconds, ARGV[5] the queues to serve (JSON array, "" for
-- every queue), ARGV[6] this claim's turn (which queue is served first), ARGV[7] the queues in
-- their quiet hours now (JSON array), ARGV[8] one fresh lease token per job (JSON array).
-- Returns one row per job: id, task, queue, args, kwargs, priority, attempts, max_attempts,
-- token, timeout, checkpoint, run_at (false for NULL).
local worker, lease, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local turn = tonumber(ARGV[6])
local quiet = {}
for _, q in ipairs(cjson.decode(ARGV[7])) do quiet[q] = true end
local tokens = cjson.decode(ARGV[8])
local rows = {}

promote_due()

local function take(key, count)
  if count <= 0 then return end
  local ranks = redis.call('ZRANGE', key, 0, count - 1)
  for _, r in ipairs(ranks) do
    local id = tonumber(string.sub(r, -12))
    local h = load(id)
    rows[#rows + 1] = start_run(id, h, worker, lease, tokens[#rows + 1])
  end
end

local gated = redis.call('SMEMBERS', P .. ':gated')
local queues = nil
if ARGV[5] ~= '' then queues = cjson.decode(ARGV[5]) end
if queues == nil and #gated > 0 then
  -- A gated queue with ready jobs: every ready queue takes its turn, as a list of queues does
  -- (the global order would walk the gated queue's whole backlog to skip it).
  local any_gated = false
  for _, q in ipairs(gated) do
    if redis.call('ZCARD', P .. ':ready:' .. q) > 0 then any_gated = true end
  end
  if any_gated then
    queues = {}
    for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
      if redis.call('ZCARD', P .. ':ready:' .. q) > 0 then queues[#queues + 1] = q end
    end
    table.sort(queues)
  end
end

if queues == nil then
  take(P .. ':ready', limit)
else
  local is_gated = {}
  for _, q in ipairs(gated) do is_gated[q] = true end
  local n = #queues
  local start = (n > 0) and (turn % n) or 0
  for k = 0, n - 1 do
    local remaining = limit - #rows
    if remaining <= 0 then break end
    local q = queues[(start + k) % n + 1]
    local count = remaining
    local room = nil
    if is_gated[q] then room = gate_room(q, quiet) end
    if room ~= nil then count = math.min(count, room) end
    local before = #rows
    take(P .. ':ready:' .. q, count)
    if is_gated[q] then take_rate(q, #rows - before) end
  end
end

publish()
return rows
