-- enqueue_one: a single plain job (task.enqueue, the call an application makes most), with
-- the writes of enqueue_plain.lua for a batch of one in straight lines: no batch tables, no
-- loops, each index written by one command. backend.py sends here only what enqueue_plain
-- may take (no idempotency key, rate limit, workflow or dependency, no queue with a limit).
-- ARGV[2...]: task, queue, args, kwargs, priority, run_at ("" for none), delay,
-- max_attempts, timeout ("" for none); priority and max_attempts as integers in decimal, so
-- their text is stored as it came (what num() would make of it).
-- Returns [now, id, state].
local queue = ARGV[3]
local priority, attempts = tonumber(ARGV[6]), tonumber(ARGV[9])
if attempts < 1 or priority ~= math.floor(priority) then
  return redis.error_reply('invalid job at position 1: max_attempts must be >= 1')
end
local run_at = ARGV[7]
if run_at == '' then run_at = NOW + tonumber(ARGV[8]) else run_at = tonumber(run_at) end

-- A number given to redis.call is printed with %.17g on its way, the dearest step of many a
-- command here: the id is printed once, and the constant arguments are text.
local id = redis.call('INCR', P .. ':seq')
local sid = num(id)
local key, created = jkey(sid), num(NOW)
local when = run_at == NOW and created or num(run_at)
local state
if run_at > NOW then
  state = 'scheduled'
  redis.call('HSET', key, 'id', sid, 'task', ARGV[2], 'queue', queue, 'args', ARGV[4],
    'kwargs', ARGV[5], 'priority', ARGV[6], 'run_at', when,
    'max_attempts', ARGV[9], 'created_at', created, 'state', state)
  redis.call('ZADD', P .. ':due', when, sid)
else
  state = 'queued'
  local rk = rank(priority, run_at, id)
  redis.call('HSET', key, 'id', sid, 'task', ARGV[2], 'queue', queue, 'args', ARGV[4],
    'kwargs', ARGV[5], 'priority', ARGV[6], 'run_at', when,
    'max_attempts', ARGV[9], 'created_at', created, 'state', state, 'rk', rk)
  redis.call('ZADD', P .. ':ready', '0', rk)
  redis.call('ZADD', P .. ':ready:' .. queue, '0', rk)
  redis.call('SADD', P .. ':queues', queue)
end
if ARGV[10] ~= '' then redis.call('HSET', key, 'timeout', num(tonumber(ARGV[10]))) end
redis.call('ZADD', P .. ':jobs', sid, sid)
-- What publish() does for the one count and the one queue this call changes.
redis.call('HINCRBY', P .. ':stats', queue .. '\n' .. state, '1')
if state == 'queued' then redis.call('PUBLISH', P .. ':wake', queue) end
return {created, id, state}
