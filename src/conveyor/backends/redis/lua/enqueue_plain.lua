-- enqueue_many of plain jobs only: no idempotency key, rate limit, workflow, dependency or
-- schedule tick, and no queue of the batch with a limit (backend.py picks this script then;
-- enqueue.lua does the rest). The same writes as enqueue.lua's plain path, with the jobs as
-- flat text arguments instead of JSON: no encoding on the client, no decoding here, and none
-- of the checks a plain job cannot need.
-- ARGV[2...]: runs of jobs that share everything but their arguments (a batch is mostly one
-- run): task, queue, priority, run_at ("" for none), delay, max_attempts, timeout ("" for
-- none), the run's length n, which argument texts each job sends (1: args, 2: kwargs, 3:
-- both, 0: neither), then those of each job; a text not sent is the empty one ("[]", "{}").
-- Returns [now, first id, state of each run]: the new jobs' ids follow one another, in batch
-- order, and the jobs of a run share their state.
--
-- This is the bulk hot path: per job it writes the hash and three index entries, and does
-- as little else as it can (the id's text made once, the rank built from it by
-- concatenation, the tables filled by index rather than through #).
local HEAD, total = 9, 0
-- How many texts a job sends, by the run's ``sent``.
local WIDTH = {[0] = 0, 1, 1, 2}
local at = 2
while at <= #ARGV do
  local priority, attempts = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 5])
  if attempts < 1 then
    return redis.error_reply('invalid job at position ' .. (total + 1) ..
      ': max_attempts must be >= 1')
  end
  if priority ~= math.floor(priority) then
    return redis.error_reply('invalid job at position ' .. (total + 1) ..
      ': priority must be an integer')
  end
  local n = tonumber(ARGV[at + 7])
  total = total + n
  at = at + HEAD + WIDTH[tonumber(ARGV[at + 8])] * n
end

local first = redis.call('INCRBY', P .. ':seq', total) - total + 1
local created = num(NOW)
local out = {created, first}
local job_prefix = P .. ':job:'
-- '0' .. '000000000000' by length: the zeros that pad an id to the 12 digits of a rank.
local pads = {}
for width = 0, 11 do pads[12 - width] = string.rep('0', width) end

local ids, due = {}, {}
local n_ids, n_due = 0, 0
local id = first
at = 2
while at <= #ARGV do
  local task, queue, n = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 7])
  local sent = tonumber(ARGV[at + 8])
  local width, with_args, with_kwargs = WIDTH[sent], sent % 2 == 1, sent >= 2
  -- Where each job's kwargs text sits after its first.
  local kwargs_at = with_args and 1 or 0
  local args, kwargs = '[]', '{}'
  local run_at = ARGV[at + 3]
  if run_at == '' then run_at = NOW + tonumber(ARGV[at + 4]) else run_at = tonumber(run_at) end
  local priority, when = num(tonumber(ARGV[at + 2])), num(run_at)
  local attempts = num(tonumber(ARGV[at + 5]))
  local timeout = ARGV[at + 6]
  if timeout ~= '' then timeout = num(tonumber(timeout)) end
  local state = run_at > NOW and 'scheduled' or 'queued'
  local head = string.sub(rank(tonumber(priority), run_at, 0), 1, -13)
  local ranks, n_ranks = {}, 0
  local a = at + HEAD
  for _ = 1, n do
    if with_args then args = ARGV[a] end
    if with_kwargs then kwargs = ARGV[a + kwargs_at] end
    a = a + width
    local sid = tostring(id)
    local key = job_prefix .. sid
    if state == 'queued' then
      local rk = head .. pads[#sid] .. sid
      redis.call('HSET', key, 'id', sid, 'task', task, 'queue', queue, 'args', args,
        'kwargs', kwargs, 'priority', priority, 'run_at', when, 'max_attempts', attempts,
        'created_at', created, 'state', state, 'rk', rk)
      ranks[n_ranks + 1] = '0'
      ranks[n_ranks + 2] = rk
      n_ranks = n_ranks + 2
    else
      redis.call('HSET', key, 'id', sid, 'task', task, 'queue', queue, 'args', args,
        'kwargs', kwargs, 'priority', priority, 'run_at', when, 'max_attempts', attempts,
        'created_at', created, 'state', state)
      due[n_due + 1] = when
      due[n_due + 2] = sid
      n_due = n_due + 2
    end
    if timeout ~= '' then redis.call('HSET', key, 'timeout', timeout) end
    ids[n_ids + 1] = sid
    ids[n_ids + 2] = sid
    n_ids = n_ids + 2
    id = id + 1
  end
  if n_ranks > 0 then
    variadic('ZADD', P .. ':ready', ranks, 2)
    variadic('ZADD', P .. ':ready:' .. queue, ranks, 2)
    redis.call('SADD', P .. ':queues', queue)
    wake(queue)
  end
  local name = queue .. '\n' .. state
  stat_changes[name] = (stat_changes[name] or 0) + n
  out[#out + 1] = state
  at = a
end

variadic('ZADD', P .. ':jobs', ids, 2)
variadic('ZADD', P .. ':due', due, 2)
publish()
return out
