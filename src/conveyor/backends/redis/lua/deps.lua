-- Dependencies (conveyor/workflows/rules.py), carried out in the script that ends a parent:
-- scripts.py puts this file after common.lua in front of every script. A parent's children
-- are the set P:children:<id>, a child's parents P:parents:<id>; has_children marks a job
-- whose end must look at its children.

local NOT_NEEDED = 'not needed: every parent succeeded'
local ended_ok, ended_failed = {}, {}

-- Job ``id`` (fields ``h``, as just written) ended: its children follow in settle_all.
local function ended(id, h)
  if h.has_children ~= '1' then return end
  if h.state == 'succeeded' then
    ended_ok[#ended_ok + 1] = tonumber(id)
  elseif h.state == 'dead' or h.state == 'cancelled' then
    ended_failed[tonumber(id)] = h.state
  end
end

local function due_state(h)
  if tn(h.run_at) > NOW then return 'scheduled' end
  return 'queued'
end

local function ints(members)
  local out = {}
  for _, m in ipairs(members) do out[#out + 1] = tonumber(m) end
  table.sort(out)
  return out
end

-- ``n`` parents of blocked job ``cid`` ended in a way that lets it run (``failed``: a parent
-- that failed, which makes a failure callback run).
local function unblock(cid, h, n, failed)
  local pending = tonumber(h.pending_parents) - n
  local c = {pending_parents = tostring(pending)}
  if failed and not h.stopped_by then c.stopped_by = tostring(failed) end
  local stopped_by = c.stopped_by or h.stopped_by
  if pending > 0 then
    c.state = 'blocked'
  elseif h.on_parent_failure == 'run_only' and not stopped_by then
    c.state = 'cancelled'
    c.finished_at = num(NOW)
    c.dead_reason = NOT_NEEDED
  else
    c.state = due_state(h)
  end
  update(cid, h, c)
  if c.state == 'queued' then wake(h.queue) end
  if c.state == 'cancelled' then finished() end
end

local function settle_all()
  for _, pid in ipairs(ended_ok) do
    for _, cid in ipairs(ints(redis.call('SMEMBERS', P .. ':children:' .. pid))) do
      local h = load(cid)
      if h and h.state == 'blocked' then unblock(cid, h, 1, nil) end
    end
  end
  ended_ok = {}
  local frontier = ended_failed
  ended_failed = {}
  while next(frontier) ~= nil do
    local parents = {}
    for pid, _ in pairs(frontier) do parents[#parents + 1] = pid end
    table.sort(parents)
    local stops, runs, order = {}, {}, {}
    for _, pid in ipairs(parents) do
      for _, cid in ipairs(ints(redis.call('SMEMBERS', P .. ':children:' .. pid))) do
        local state = redis.call('HGET', jkey(cid), 'state')
        if state == 'blocked' then
          local policy = redis.call('HGET', jkey(cid), 'on_parent_failure')
          if policy == 'run' or policy == 'run_only' then
            if not runs[cid] then runs[cid] = {n = 0}; order[#order + 1] = cid end
            runs[cid].n = runs[cid].n + 1
            if policy == 'run_only' and not runs[cid].failed then runs[cid].failed = pid end
          elseif not stops[cid] then
            stops[cid] = {pid = pid, state = (policy == 'dead') and 'dead' or 'cancelled'}
          end
        end
      end
    end
    local next_frontier = {}
    local stopped = {}
    for cid, _ in pairs(stops) do stopped[#stopped + 1] = cid end
    table.sort(stopped)
    for _, cid in ipairs(stopped) do
      local s = stops[cid]
      local h = load(cid)
      update(cid, h, {
        state = s.state, stopped_by = tostring(s.pid), finished_at = num(NOW),
        dead_reason = string.format('parent job %d ended %s', s.pid, frontier[s.pid]),
      })
      finished()
      if h.has_children == '1' then next_frontier[cid] = s.state end
    end
    table.sort(order)
    for _, cid in ipairs(order) do
      local h = load(cid)
      if h.state == 'blocked' then unblock(cid, h, runs[cid].n, runs[cid].failed) end
    end
    frontier = next_frontier
  end
end
