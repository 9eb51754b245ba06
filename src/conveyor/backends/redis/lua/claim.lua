-- uses: breakers
-- claim: queued -> running for up to ARGV[4] ready jobs, due ones promoted first.
-- ARGV[2] worker id, ARGV[3] lease seconds, ARGV[5] the queues to serve (JSON array, "" for
-- every queue), ARGV[6] this claim's turn (which queue is served first), ARGV[7] the queues in
-- their quiet hours now (JSON array), ARGV[8] one fresh lease token per job (JSON array),
-- ARGV[9] "1" to claim nothing while a due suspect waits in any queue (then returns
-- [{}, "suspects"]).
-- Returns [rows, when the next breaker probe may start or false]; one row per job: id, task, queue, args, kwargs, priority, attempts, max_attempts,
-- token, timeout, checkpoint, run_at (false for NULL).
local worker, lease, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local turn = tonumber(ARGV[6])
local quiet = {}
for _, q in ipairs(cjson.decode(ARGV[7])) do quiet[q] = true end
local tokens = cjson.decode(ARGV[8])
local rows = {}

-- A replay of a claim that ran (see replayed_run): the same runs again, nothing new.
if #tokens > 0 and redis.call('HEXISTS', P .. ':tokens', tokens[1]) == 1 then
  for _, token in ipairs(tokens) do
    local row = replayed_run(token)
    if row then rows[#rows + 1] = row end
  end
  return {rows, false}
end

if ARGV[9] == '1'
    and #redis.call('ZRANGEBYSCORE', P .. ':suspects', '-inf', num(NOW), 'LIMIT', 0, 1) > 0 then
  return {rows, 'suspects'}
end

promote_due()

local take = function(key, count)
  if count <= 0 then return end
  local batch = {}
  for i, r in ipairs(redis.call('ZRANGE', key, 0, count - 1)) do
    local id = tonumber(string.sub(r, -12))
    batch[i] = {id, load(id), tokens[#rows + i]}
  end
  for _, row in ipairs(start_runs(batch, worker, lease)) do rows[#rows + 1] = row end
end

local gated = redis.call('SMEMBERS', P .. ':gated')
local is_gated = {}
for _, q in ipairs(gated) do is_gated[q] = true end
local queues, wanted = nil, nil
if ARGV[5] ~= '' then
  queues, wanted = cjson.decode(ARGV[5]), {}
  for _, q in ipairs(queues) do wanted[q] = true end
end
local rated = redis.call('SCARD', P .. ':buckets') > 0

-- Rate limits of tasks: one job from each bucket whose next start has come, the bucket
-- waiting longest first, as far as the gates of their queues let them start, up to ``most``;
-- only of the tasks in the set ``only`` (nil: any) that are not in the set ``held`` (behind a
-- breaker that is not closed). Returns how many started.
local claim_rated = function(most, only, held)
  local picks = {}
  for _, b in ipairs(redis.call('SMEMBERS', P .. ':buckets')) do
    local f = redis.call('HMGET', P .. ':bucket:' .. b, 'task', 'key', 'rate_next')
    local next_start = tn(f[3])
    if (only == nil or only[f[1]]) and not (held and held[f[1]])
        and (next_start == nil or next_start <= NOW) then
      local id = bucket_first(b, wanted)
      if id then picks[#picks + 1] = {b = b, task = f[1], key = f[2], at = next_start or 0, id = id} end
    end
  end
  table.sort(picks, function(x, y)
    if x.at ~= y.at then return x.at < y.at end
    if x.task ~= y.task then return x.task < y.task end
    return x.key < y.key
  end)
  local rooms, started, count = {}, {}, 0
  for _, pick in ipairs(picks) do
    if count >= most then break end
    local h = load(pick.id)
    local q = h.queue
    if is_gated[q] and rooms[q] == nil then rooms[q] = gate_room(q, quiet) or false end
    if not rooms[q] or rooms[q] > 0 then
      if rooms[q] then rooms[q] = rooms[q] - 1 end
      rows[#rows + 1] = start_run(pick.id, h, worker, lease, tokens[#rows + 1])
      started[q] = (started[q] or 0) + 1
      count = count + 1
      take_bucket(pick.b)
    end
  end
  for q, n in pairs(started) do
    if is_gated[q] then take_rate(q, n) end
  end
  return count
end

-- Circuit breakers: skip the tasks behind those not closed, take the probes due (one per
-- breaker, fleet-wide: the script is the only writer while it runs). A probe is an ordinary
-- job of a queue without gates, else one of its tasks' rate limit buckets under their tokens
-- and their queues' gates.
local held, next_probe_at = nil, nil
local unsettled = redis.call('SMEMBERS', P .. ':unsettled')
if #unsettled > 0 then
  table.sort(unsettled)
  held = {}
  local probing = {}
  for _, name in ipairs(unsettled) do
    local row = breaker_load(name)
    if row and row.state ~= 'closed' then
      for _, task in ipairs(row.tasks) do held[task] = true end
      if row.state == 'half_open' or (row.probe_at and row.probe_at <= NOW) then
        probing[#probing + 1] = row
      elseif row.probe_at and (next_probe_at == nil or row.probe_at < next_probe_at) then
        next_probe_at = row.probe_at
      end
    end
  end
  for _, row in ipairs(probing) do
    if #rows >= limit then break end
    local go = true
    if row.state == 'half_open' then
      if row.probe_job and row.probe_token then
        local j = redis.call('HMGET', jkey(row.probe_job), 'state', 'lease_token')
        if j[1] == 'running' and j[2] == row.probe_token then go = false end
      end
    elseif row.state ~= 'open' or row.probe_at == nil or row.probe_at > NOW then
      go = false
    end
    if go then
      local tasks = {}
      for _, task in ipairs(row.tasks) do tasks[task] = true end
      local offset, found = 0, nil
      while not found do
        local ranks = redis.call('ZRANGE', P .. ':ready', offset, offset + 199)
        if #ranks == 0 then break end
        for _, r in ipairs(ranks) do
          local id = tonumber(string.sub(r, -12))
          local f = redis.call('HMGET', jkey(id), 'task', 'queue')
          if tasks[f[1]] and (wanted == nil or wanted[f[2]]) and not is_gated[f[2]] then
            found = id
            break
          end
        end
        offset = offset + 200
      end
      local probe = nil
      if found then
        probe = start_run(found, load(found), worker, lease, tokens[#rows + 1])
        rows[#rows + 1] = probe
      elseif rated and claim_rated(1, tasks, nil) > 0 then
        probe = rows[#rows]
      end
      if probe then
        row.state, row.probe_job, row.probe_token = 'half_open', probe[1], probe[9]
        breaker_save(row)
      end
    end
  end
  if next(held) == nil then held = nil end
end

if rated and #rows < limit then claim_rated(limit - #rows, nil, held) end

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

if held then
  -- The ready jobs in order, walking past those of held tasks.
  take = function(key, count)
    local offset = 0
    while count > 0 do
      local ranks = redis.call('ZRANGE', key, offset, offset + count + 99)
      if #ranks == 0 then return end
      local skipped = 0
      for _, r in ipairs(ranks) do
        if count <= 0 then break end
        local id = tonumber(string.sub(r, -12))
        local h = load(id)
        if held[h.task] then
          skipped = skipped + 1
        else
          rows[#rows + 1] = start_run(id, h, worker, lease, tokens[#rows + 1])
          count = count - 1
        end
      end
      offset = offset + skipped
    end
  end
end

if queues == nil then
  take(P .. ':ready', limit - #rows)
else
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
return {rows, next_probe_at and num(next_probe_at) or false}
