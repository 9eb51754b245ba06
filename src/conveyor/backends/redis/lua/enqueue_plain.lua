-- enqueue_many of plain jobs only: no idempotency key, rate limit, workflow, dependency or
-- schedule tick, and no queue of the batch with a limit (backend.py picks this script then;
-- enqueue.lua does the rest). The same writes as enqueue.lua's plain path, with the jobs as
-- flat text arguments instead of JSON: no encoding on the client, no decoding here, and none
-- of the checks a plain job cannot need.
-- ARGV[2...]: nine per job: task, queue, args, kwargs, priority, run_at ("" for none),
-- delay, max_attempts, timeout ("" for none).
-- Returns [now, first id, state ...]: the new jobs' ids follow one another, in batch order.
local FIELDS = 9
local count = (#ARGV - 1) / FIELDS
for i = 0, count - 1 do
  local at = 2 + i * FIELDS
  local priority, attempts = tonumber(ARGV[at + 4]), tonumber(ARGV[at + 7])
  if attempts < 1 or priority ~= math.floor(priority) then
    return redis.error_reply('invalid job at position ' .. (i + 1) ..
      ': max_attempts must be >= 1')
  end
end

local first = redis.call('INCRBY', P .. ':seq', count) - count + 1
local created = num(NOW)
local out = {created, first}
local all, ready, by_queue, due = {}, {}, {}, {}
-- The jobs of a batch mostly share their priority and times: their text, and the head of
-- their rank (rank() without the id), are worked out once per distinct value.
local texts = {}
local function text(value)
  local found = texts[value]
  if not found then
    found = num(tonumber(value))
    texts[value] = found
  end
  return found
end
local heads = {}
for i = 0, count - 1 do
  local at = 2 + i * FIELDS
  local id = first + i
  local queue = ARGV[at + 1]
  local run_at = ARGV[at + 5]
  if run_at == '' then run_at = NOW + tonumber(ARGV[at + 6]) else run_at = tonumber(run_at) end
  local priority, when = text(ARGV[at + 4]), text(run_at)
  local key, state = jkey(id), 'scheduled'
  if run_at > NOW then
    redis.call('HSET', key, 'id', id, 'task', ARGV[at], 'queue', queue, 'args', ARGV[at + 2],
      'kwargs', ARGV[at + 3], 'priority', priority, 'run_at', when,
      'max_attempts', text(ARGV[at + 7]), 'created_at', created, 'state', state)
    due[#due + 1] = when
    due[#due + 1] = id
  else
    state = 'queued'
    local head_key = priority .. ' ' .. when
    local head = heads[head_key]
    if not head then
      head = string.sub(rank(tonumber(priority), run_at, 0), 1, -13)
      heads[head_key] = head
    end
    local rk = head .. string.format('%012d', id)
    redis.call('HSET', key, 'id', id, 'task', ARGV[at], 'queue', queue, 'args', ARGV[at + 2],
      'kwargs', ARGV[at + 3], 'priority', priority, 'run_at', when,
      'max_attempts', text(ARGV[at + 7]), 'created_at', created, 'state', state, 'rk', rk)
    ready[#ready + 1] = 0
    ready[#ready + 1] = rk
    local ranks = by_queue[queue]
    if not ranks then
      ranks = {}
      by_queue[queue] = ranks
    end
    ranks[#ranks + 1] = 0
    ranks[#ranks + 1] = rk
    wake(queue)
  end
  if ARGV[at + 8] ~= '' then redis.call('HSET', key, 'timeout', text(ARGV[at + 8])) end
  all[#all + 1] = id
  all[#all + 1] = id
  local name = queue .. '\n' .. state
  stat_changes[name] = (stat_changes[name] or 0) + 1
  out[#out + 1] = state
end

variadic('ZADD', P .. ':jobs', all, 2)
variadic('ZADD', P .. ':ready', ready, 2)
for queue, ranks in pairs(by_queue) do
  variadic('ZADD', P .. ':ready:' .. queue, ranks, 2)
  redis.call('SADD', P .. ':queues', queue)
end
variadic('ZADD', P .. ':due', due, 2)
publish()
return out
