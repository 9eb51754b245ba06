-- uses: deps
-- enqueue_many (and enqueue_tick): write every job of the batch, or none.
-- ARGV[2]: queue limits, a JSON object {queue: most waiting jobs}; ARGV[3]: the jobs, a JSON
-- array of [task, queue, args, kwargs, priority, run_at|null, delay, max_attempts,
-- timeout|null, idempotency_key|null, scope, rate_key|null, workflow_id|null, depends_on,
-- depends_on_batch, on_parent_failure|null, rate limit [count, per]|null, and only when
-- set, trace_context]; ARGV[4], ARGV[5]: a schedule's name and tick, or
-- "" (see enqueue_tick); ARGV[6]: the positions (from 1) of the batch, parents before children.
-- Returns ["ok", now, id, state, created, ...], ["full", queue, depth, limit], ["parents",
-- id ...] naming parents that do not exist, or ["tick"] when the schedule's tick is not this
-- call's to take.
local limits = cjson.decode(ARGV[2])
local jobs = cjson.decode(ARGV[3])
local schedule, tick = ARGV[4], tonumber(ARGV[5])
local null = cjson.null

if schedule ~= '' then
  local s = redis.call('HMGET', P .. ':schedule:' .. schedule, 'since', 'paused', 'last_tick')
  if not s[1] or s[2] == '1' or (s[3] and tonumber(s[3]) >= tick) then return {'tick'} end
end

-- First decide, writing nothing: which jobs an idempotency key resolves to an existing one,
-- and whether the new ones fit their queues' limits.
local found = {}     -- position -> {id, state} of the job holding its key
local batch_keys = {} -- key -> position of the new job of this batch holding it
local created = {}   -- queue -> jobs this batch adds to it
for i, j in ipairs(jobs) do
  -- The checks of the SQL engines' table constraints: a job no worker could run is refused.
  if j[8] < 1 or j[5] ~= math.floor(j[5]) then
    return redis.error_reply('invalid job at position ' .. i .. ': max_attempts must be >= 1')
  end
  local key = j[10]
  if key ~= null then
    if batch_keys[key] then
      found[i] = {batch = batch_keys[key]}
    else
      local id = redis.call('HGET', P .. ':idem', key)
      local state = id and redis.call('HGET', jkey(id), 'state')
      if state and (j[11] == 'any' or LIVE[state]) then
        found[i] = {id = id, state = state}
      else
        batch_keys[key] = i
      end
    end
  end
  if not found[i] then created[j[2]] = (created[j[2]] or 0) + 1 end
end
local missing, seen = {}, {}
for i, j in ipairs(jobs) do
  if not found[i] then
    for _, p in ipairs(j[14]) do
      if not seen[p] and redis.call('EXISTS', jkey(p)) == 0 then missing[#missing + 1] = p end
      seen[p] = true
    end
  end
end
if #missing > 0 then
  table.sort(missing)
  return {'parents', unpack(missing)}
end
for queue, count in pairs(created) do
  local limit = limits[queue]
  if limit then
    local depth = 0
    for state, _ in pairs(WAITING) do
      depth = depth + tonumber(redis.call('HGET', P .. ':stats', queue .. '\n' .. state) or 0)
    end
    if depth + count > limit then return {'full', queue, depth, limit} end
  end
end

local out = {'ok', num(NOW)}
local ids = {}
-- Every new job's id at once, in batch order.
local fresh = 0
for _, count in pairs(created) do fresh = fresh + count end
local next_id = redis.call('INCRBY', P .. ':seq', fresh) - fresh + 1
-- A plain job (no key, rate limit or workflow) is written with one HSET; its index entries,
-- those of the whole batch, go in a few variadic commands (flushed before anything reads them).
local all, ready, by_queue, due = {}, {}, {}, {}
local function flush()
  variadic('ZADD', P .. ':jobs', all, 2)
  variadic('ZADD', P .. ':ready', ready, 2)
  for queue, ranks in pairs(by_queue) do
    variadic('ZADD', P .. ':ready:' .. queue, ranks, 2)
    redis.call('SADD', P .. ':queues', queue)
  end
  variadic('ZADD', P .. ':due', due, 2)
  all, ready, by_queue, due = {}, {}, {}, {}
end
for i, j in ipairs(jobs) do
  local f = found[i]
  if f then
    if f.batch then
      out[#out + 1] = ids[f.batch][1]
      out[#out + 1] = ids[f.batch][2]
    else
      out[#out + 1] = tonumber(f.id)
      out[#out + 1] = f.state
    end
    out[#out + 1] = 0
    ids[i] = {out[#out - 2], out[#out - 1], false, #out - 1}
  else
    local run_at = j[6]
    if run_at == null then run_at = NOW + j[7] end
    local h = {
      task = j[1], queue = j[2], args = j[3], kwargs = j[4], priority = tostring(j[5]),
      run_at = num(run_at), max_attempts = tostring(j[8]), created_at = num(NOW),
      state = run_at > NOW and 'scheduled' or 'queued',
    }
    if j[9] ~= null then h.timeout = num(j[9]) end
    if j[10] ~= null then h.idempotency_key = j[10] end
    if j[12] ~= null then
      h.rate_key = j[12]
      if j[17] ~= null then
        local b = j[1] .. '\n' .. j[12]
        redis.call('HSET', P .. ':bucket:' .. b, 'task', j[1], 'key', j[12],
          'rate_count', j[17][1], 'rate_per', num(j[17][2]))
        redis.call('SADD', P .. ':buckets', b)
      end
    end
    if j[13] ~= null then h.workflow_id = j[13] end
    if j[18] then h.trace_context = j[18] end
    local id = next_id
    next_id = next_id + 1
    if h.idempotency_key or h.rate_key or h.workflow_id then
      insert_job(h, id)
    else
      h.id = tostring(id)
      local state = h.state
      if state == 'queued' then
        h.rk = rank(tonumber(h.priority), tn(h.run_at), id)
        redis.call('HSET', jkey(id), 'id', h.id, 'task', h.task, 'queue', h.queue,
          'args', h.args, 'kwargs', h.kwargs, 'priority', h.priority, 'run_at', h.run_at,
          'max_attempts', h.max_attempts, 'created_at', h.created_at, 'state', state,
          'rk', h.rk)
        ready[#ready + 1] = 0
        ready[#ready + 1] = h.rk
        by_queue[h.queue] = by_queue[h.queue] or {}
        table.insert(by_queue[h.queue], 0)
        table.insert(by_queue[h.queue], h.rk)
        wake(h.queue)
      else
        redis.call('HSET', jkey(id), 'id', h.id, 'task', h.task, 'queue', h.queue,
          'args', h.args, 'kwargs', h.kwargs, 'priority', h.priority, 'run_at', h.run_at,
          'max_attempts', h.max_attempts, 'created_at', h.created_at, 'state', state)
        due[#due + 1] = h.run_at
        due[#due + 1] = id
      end
      if h.timeout then redis.call('HSET', jkey(id), 'timeout', h.timeout) end
      if h.trace_context then redis.call('HSET', jkey(id), 'trace_context', h.trace_context) end
      all[#all + 1] = id
      all[#all + 1] = id
      stat(h, 1)
    end
    if h.idempotency_key then
      redis.call('HSET', P .. ':idem', h.idempotency_key, id)
      -- Every job that holds the key, live or not, for list_jobs.
      redis.call('ZADD', P .. ':keyed:' .. h.idempotency_key, id, id)
    end
    if h.workflow_id then redis.call('ZADD', P .. ':workflow:' .. h.workflow_id, id, id) end
    out[#out + 1] = id
    out[#out + 1] = h.state
    out[#out + 1] = 1
    ids[i] = {id, h.state, true, #out - 1}
  end
end

flush()

-- Dependencies (conveyor/workflows/rules.py settle_new_job), parents before children.
local states = {}
for _, i in ipairs(cjson.decode(ARGV[6])) do
  local j, r = jobs[i], ids[i]
  local parents, unique = {}, {}
  for _, p in ipairs(j[14]) do parents[#parents + 1] = tonumber(p) end
  for _, pos in ipairs(j[15]) do parents[#parents + 1] = tonumber(ids[pos + 1][1]) end
  if r[3] and #parents > 0 then
    local policy = j[16]
    if policy == null then policy = nil end
    local runs_anyway = policy == 'run' or policy == 'run_only'
    local stop, stop_parent, failed, pending = nil, nil, nil, 0
    for _, p in ipairs(parents) do
      if not unique[p] then
        unique[p] = true
        local state = states[p] or redis.call('HGET', jkey(p), 'state')
        redis.call('HSET', jkey(p), 'has_children', '1')
        redis.call('SADD', P .. ':children:' .. p, r[1])
        redis.call('SADD', P .. ':parents:' .. r[1], p)
        local failure = state == 'dead' or state == 'cancelled'
        if failure and not runs_anyway and not stop then
          stop, stop_parent = state, p
        elseif failure and not failed then
          failed = p
        end
        if LIVE[state] then pending = pending + 1 end
      end
    end
    local id = r[1]
    local h = load(id)
    local c = {pending_parents = tostring(pending)}
    if policy then c.on_parent_failure = policy end
    if stop then
      c.state = (policy == 'dead') and 'dead' or 'cancelled'
      c.pending_parents = '0'
      c.dead_reason = string.format('parent job %d ended %s', stop_parent, stop)
      c.stopped_by = tostring(stop_parent)
      c.finished_at = num(NOW)
    else
      if pending > 0 then c.state = 'blocked' end
      if policy == 'run_only' then
        if pending == 0 and not failed then
          c.state = 'cancelled'
          c.dead_reason = NOT_NEEDED
          c.finished_at = num(NOW)
        elseif failed then
          c.stopped_by = tostring(failed)
        end
      end
    end
    update(id, h, c)
    out[r[4]] = h.state
  end
  states[r[1]] = out[r[4]]
end

if schedule ~= '' then
  redis.call('HSET', P .. ':schedule:' .. schedule, 'last_tick', num(tick),
    'last_job_id', out[3], 'last_enqueued_at', num(NOW))
end
publish()
return out
