-- The steps of an import (snapshot.py), ARGV[2] the action; each batch is one script:
--   check: whether the store holds a job or a queue setting, breaker, schedule or bucket,
--     and its id counter: {held, seq};
--   jobs JSON: write the jobs, an array of {field: text} (null fields left out), and index
--     them as their states want;
--   edges JSON: the dependency edges, an array of [parent, child];
--   hashes JSON: the other kinds, an array of [key, {field: text}, [index set, member] ...];
--   seq N: ids go on above N;
--   undo_jobs: forget up to 1000 jobs (a failed import); returns how many;
--   undo_rest SEQ BUDGETS: forget the settings and indexes of a failed import, put the id
--     counter back to SEQ ("0": none) and delete the retry budgets of the tasks BUDGETS (JSON).
local action = ARGV[2]

if action == 'check' then
  local held = redis.call('ZCARD', P .. ':jobs') > 0
  for _, set in ipairs({'gate_rows', 'breakers', 'schedules', 'buckets'}) do
    held = held or redis.call('SCARD', P .. ':' .. set) > 0
  end
  return {held and 1 or 0, redis.call('GET', P .. ':seq') or '0'}
end

if action == 'jobs' then
  for _, h in ipairs(cjson.decode(ARGV[3])) do
    local id = h.id
    local flat = {}
    for k, v in pairs(h) do flat[#flat + 1] = k; flat[#flat + 1] = v end
    redis.call('HSET', jkey(id), unpack(flat))
    redis.call('ZADD', P .. ':jobs', id, id)
    index(id, h)
    if h.state == 'queued' then wake(h.queue) end
    if h.idempotency_key then
      -- Ids come in order: the key ends with the newest job holding it, as enqueue leaves it.
      redis.call('HSET', P .. ':idem', h.idempotency_key, id)
      redis.call('ZADD', P .. ':keyed:' .. h.idempotency_key, id, id)
    end
    if h.workflow_id then redis.call('ZADD', P .. ':workflow:' .. h.workflow_id, id, id) end
  end
  publish()
  return 1
end

if action == 'edges' then
  for _, e in ipairs(cjson.decode(ARGV[3])) do
    redis.call('SADD', P .. ':children:' .. e[1], e[2])
    redis.call('SADD', P .. ':parents:' .. e[2], e[1])
  end
  return 1
end

if action == 'hashes' then
  for _, row in ipairs(cjson.decode(ARGV[3])) do
    local flat = {}
    for k, v in pairs(row[2]) do flat[#flat + 1] = k; flat[#flat + 1] = v end
    if #flat > 0 then redis.call('HSET', P .. ':' .. row[1], unpack(flat)) end
    for i = 3, #row do redis.call('SADD', P .. ':' .. row[i][1], row[i][2]) end
  end
  return 1
end

if action == 'seq' then
  local seq = tonumber(redis.call('GET', P .. ':seq') or '0')
  if tonumber(ARGV[3]) > seq then redis.call('SET', P .. ':seq', ARGV[3]) end
  return 1
end

if action == 'undo_jobs' then
  local ids = redis.call('ZRANGE', P .. ':jobs', 0, 999)
  for _, id in ipairs(ids) do
    local h = load(id)
    if h then forget_job(id, h) else redis.call('ZREM', P .. ':jobs', id) end
    redis.call('DEL', P .. ':children:' .. id)
  end
  publish()
  return #ids
end

if action == 'undo_rest' then
  local function drop(set, prefix, also)
    for _, name in ipairs(redis.call('SMEMBERS', P .. ':' .. set)) do
      redis.call('DEL', P .. ':' .. prefix .. ':' .. name)
      if also then redis.call('DEL', P .. ':' .. also .. ':' .. name) end
    end
    redis.call('DEL', P .. ':' .. set)
  end
  drop('gate_rows', 'gate')
  drop('breakers', 'breaker')
  drop('schedules', 'schedule')
  drop('buckets', 'bucket', 'bq')
  redis.call('DEL', P .. ':gated', P .. ':unsettled', P .. ':stats', P .. ':queues',
    P .. ':ended', P .. ':ended_held')
  for _, task in ipairs(cjson.decode(ARGV[4])) do redis.call('DEL', P .. ':budget:' .. task) end
  if ARGV[3] == '0' then
    redis.call('DEL', P .. ':seq')
  else
    redis.call('SET', P .. ':seq', ARGV[3])
  end
  publish()
  return 1
end

return redis.error_reply('unknown snapshot action ' .. action)
