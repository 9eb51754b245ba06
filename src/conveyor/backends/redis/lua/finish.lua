-- uses: deps, breakers, tally
-- finish_many: the ends of runs, each fenced by its token. ARGV[2]: a JSON array of
-- [id, token, kind, result|null, error|null, retry_in, dead_reason|null, checkpoint|null,
-- retry budget [task, limit, window]|null, escalate [task, queue, priority, max_attempts,
-- timeout|null, why]|null, breaker [declared breaker, failed]|null]. Returns the state each
-- outcome left its job in, false for a run no longer owned (nothing written). Every run it
-- ends (not a release) is tallied under the minute of now (tally.lua).
local outcomes = cjson.decode(ARGV[2])
local null = cjson.null
local out = {}
local ended_any = false
local reports, names = {}, {}

local function opt(v) if v == null then return nil end return v end

-- The hot path of a busy worker: a success of a job without children and without a breaker
-- reads only the fields it needs and drops its rank as the slow path below does, and the
-- index writes of all of them go in a few variadic commands at the end.
local running, held, runq, tokens, done = {}, {}, {}, {}, {}
local function succeed_fast(i, o)
  local id, token = o[1], o[2]
  local f = redis.call('HMGET', jkey(id), 'state', 'lease_token', 'queue', 'worker_id',
    'cancel_requested', 'has_children', 'task', 'started_at', 'run_at')
  if f[1] ~= 'running' or f[2] ~= token then
    out[i] = false
    return
  end
  local queue, worker = f[3], f[4]
  if f[6] == '1' then
    ended_ok[#ended_ok + 1] = tonumber(id)
  end
  local result = o[4]
  if result == null then
    redis.call('HDEL', jkey(id), 'lease_token', 'lease_expires_at', 'rk', 'result')
  else
    redis.call('HDEL', jkey(id), 'lease_token', 'lease_expires_at', 'rk')
  end
  if result == null then
    redis.call('HSET', jkey(id), 'state', 'succeeded', 'finished_at', num(NOW))
  else
    redis.call('HSET', jkey(id), 'state', 'succeeded', 'finished_at', num(NOW), 'result', result)
  end
  if f[5] == '1' then redis.call('SREM', P .. ':cancels:' .. worker, token) end
  tally_run(queue, f[7], 'succeeded', f[8], f[9])
  stat({queue = queue, state = 'running'}, -1)
  stat({queue = queue, state = 'succeeded'}, 1)
  running[#running + 1] = id
  held[worker] = held[worker] or {}
  table.insert(held[worker], id)
  runq[queue] = runq[queue] or {}
  table.insert(runq[queue], id)
  tokens[#tokens + 1] = token
  done[#done + 1] = ended_entry(id, num(NOW))
  ended_any = true
  out[i] = 'succeeded'
end

for i, o in ipairs(outcomes) do
  local id, token, kind = o[1], o[2], o[3]
  local h = nil
  if kind == 'succeeded' and o[11] == null then
    succeed_fast(i, o)
  else
    h = load(id)
  end
  if h == nil then
    if out[i] == nil then out[i] = false end
  elseif h.state ~= 'running' or h.lease_token ~= token then
    out[i] = false
  else
    local err, checkpoint = opt(o[5]), opt(o[8])
    local reason = opt(o[7])
    if kind == 'retry' and o[9] ~= null then
      local task, limit, window = o[9][1], o[9][2], o[9][3]
      local key = P .. ':budget:' .. task
      local start = tn(redis.call('HGET', key, 'window_start'))
      if start == nil or start + window <= NOW then
        redis.call('HSET', key, 'window_start', num(NOW), 'used', 0)
      end
      if tonumber(redis.call('HGET', key, 'used')) < limit then
        redis.call('HINCRBY', key, 'used', 1)
      else
        kind = 'dead'
        reason = string.format('retry budget exhausted: more than %d retries of %s within %ss',
          limit, task, num(window))
      end
    end
    local c = {lease_token = false, lease_expires_at = false}
    if kind ~= 'retry' and kind ~= 'released' then
      -- A job that ends keeps no rank (the order of the ready jobs; index() makes it again if
      -- it is requeued): 64 of a finished job's 472 bytes, and finished jobs pile up.
      c.rk = false
    end
    if checkpoint then c.checkpoint = checkpoint end
    if kind == 'succeeded' then
      c.state = 'succeeded'
      c.result = opt(o[4]) or false
      c.finished_at = num(NOW)
    elseif kind == 'retry' then
      c.state = 'retrying'
      c.run_at = num(NOW + o[6])
      c.errors = append_error(h.errors, err)
      c.suspect = '0'
    elseif kind == 'dead' then
      c.state = 'dead'
      c.dead_reason = reason or false
      c.finished_at = num(NOW)
      c.errors = append_error(h.errors, err)
    elseif kind == 'cancelled' then
      c.state = 'cancelled'
      c.finished_at = num(NOW)
      c.errors = append_error(h.errors, err)
    else -- released: back without charging the attempt
      if h.cancel_requested == '1' then
        c.state = 'cancelled'
        c.finished_at = num(NOW)
      elseif h.suspect == '1' then
        c.state = 'retrying'
      else
        c.state = 'queued'
        wake(h.queue)
      end
      c.attempts = tostring(tonumber(h.attempts) - 1)
    end
    -- Read before update moves run_at (a retry's) and clears the run's fields.
    local queue, task, started, due = h.queue, h.task, h.started_at, h.run_at
    update(id, h, c)
    if o[3] ~= 'released' then
      tally_run(queue, task, c.state == 'retrying' and 'retried' or c.state, started, due)
    end
    local target = o[10]
    if c.state == 'dead' and target ~= null
        and not (h.task == target[1] and h.escalated_from) then
      -- Escalation (conveyor/workflows/escalation.py): a job of another task with the
      -- arguments of this one; a task escalates to itself once.
      local e = {
        task = target[1], queue = target[2], args = h.args, kwargs = h.kwargs,
        state = 'queued', priority = tostring(target[3]), run_at = num(NOW),
        max_attempts = tostring(target[4]), created_at = num(NOW), escalated_from = tostring(id),
      }
      if target[5] ~= null then e.timeout = num(target[5]) end
      local new = insert_job(e)
      update(id, h, {escalated_to = tostring(new), dead_reason = string.format(
        'escalated to job %d (%s, on %s): %s', new, target[1], target[6], h.dead_reason or '')})
    end
    if c.state == 'succeeded' or c.state == 'dead' or c.state == 'cancelled' then
      ended_any = true
      ended(id, h)
    end
    out[i] = c.state
    local hit = o[11]
    if hit ~= null then
      local name = hit[1].name
      if not reports[name] then
        reports[name] = {b = hit[1], events = {}}
        names[#names + 1] = name
      end
      table.insert(reports[name].events, {token, hit[2]})
    end
  end
end
variadic('ZREM', P .. ':running', running, 1)
for worker, ids in pairs(held) do variadic('SREM', P .. ':held:' .. worker, ids, 1) end
for queue, ids in pairs(runq) do variadic('SREM', P .. ':runq:' .. queue, ids, 1) end
variadic('HDEL', P .. ':tokens', tokens, 1)
variadic('RPUSH', P .. ':ended', done, 1)
-- The breakers count the ends reported to them (conveyor/backends/breakers.py record_outcomes).
table.sort(names)
for _, name in ipairs(names) do
  local r = reports[name]
  local after = breaker_record(breaker_load(name), r.b, r.events)
  if after then breaker_save(after) end
end
settle_all()
tally_flush()
if ended_any then finished() end
publish()
return out
