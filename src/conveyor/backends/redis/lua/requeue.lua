-- requeue: the dead or cancelled jobs ARGV[2] (JSON array) -> queued, all or none. ARGV[3]
-- "1": their attempts start over (else each gets one more); ARGV[4] "1": the descendants their
-- failure ended are blocked again on their parents. Their blocked children wait for them
-- again. Returns 1, or ["missing", id] / ["invalid", id, state] / ["conflict", id] (another
-- live job holds its idempotency key).
local ids = cjson.decode(ARGV[2])
local reset, revive = ARGV[3] == '1', ARGV[4] == '1'
local jobs, keys = {}, {}
for i, id in ipairs(ids) do
  local h = load(id)
  if h == nil then return {'missing', id} end
  if h.state ~= 'dead' and h.state ~= 'cancelled' then return {'invalid', id, h.state} end
  local key = h.idempotency_key
  if key then
    local holder = redis.call('HGET', P .. ':idem', key)
    local taken = holder and holder ~= tostring(id)
      and LIVE[redis.call('HGET', jkey(holder), 'state') or '']
    if taken or (keys[key] and keys[key] ~= tostring(id)) then return {'conflict', id} end
    keys[key] = tostring(id)
  end
  jobs[i] = h
end

local function revive_children(frontier)
  while #frontier > 0 do
    local found = {}
    for _, pid in ipairs(frontier) do
      for _, cid in ipairs(redis.call('SMEMBERS', P .. ':children:' .. pid)) do
        local c = load(cid)
        if c and c.stopped_by == tostring(pid) and (c.state == 'dead' or c.state == 'cancelled') then
          local other_failed = false
          for _, o in ipairs(redis.call('SMEMBERS', P .. ':parents:' .. cid)) do
            local s = redis.call('HGET', jkey(o), 'state')
            if o ~= tostring(pid) and (s == 'dead' or s == 'cancelled') then other_failed = true end
          end
          if not other_failed then found[#found + 1] = {cid, c} end
        end
      end
    end
    frontier = {}
    for _, f in ipairs(found) do
      local cid, c = f[1], f[2]
      local pending = 0
      for _, o in ipairs(redis.call('SMEMBERS', P .. ':parents:' .. cid)) do
        local s = redis.call('HGET', jkey(o), 'state')
        if s and s ~= 'succeeded' then pending = pending + 1 end
      end
      update(cid, c, {state = 'blocked', finished_at = false, dead_reason = false,
        stopped_by = false, cancel_requested = '0', pending_parents = tostring(pending)})
      frontier[#frontier + 1] = cid
    end
  end
end

for i, id in ipairs(ids) do
  local h = jobs[i]
  local attempts, max_attempts = tonumber(h.attempts) or 0, tonumber(h.max_attempts)
  local c = {state = 'queued', run_at = num(NOW), finished_at = false, dead_reason = false,
    cancel_requested = '0', stopped_by = false}
  if reset then
    c.attempts, c.lost_runs = '0', '0'
  else
    c.max_attempts = tostring(math.max(max_attempts, attempts + 1))
  end
  update(id, h, c)
  if h.idempotency_key then redis.call('HSET', P .. ':idem', h.idempotency_key, id) end
  wake(h.queue)
  for _, cid in ipairs(redis.call('SMEMBERS', P .. ':children:' .. id)) do
    local child = load(cid)
    if child and child.state == 'blocked' then
      update(cid, child, {pending_parents = tostring(tonumber(child.pending_parents) + 1)})
    end
  end
  if revive then revive_children({id}) end
end
publish()
return 1
