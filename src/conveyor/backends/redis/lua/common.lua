-- Shared by every script of the Redis engine: scripts.py puts this file in front of each one,
-- so that each state transition is still one script, run atomically by the server.
--
-- KEYS[1] is the prefix of one application's keys, "{conveyor:<prefix>}": the braces are a
-- hash tag, so every key below sits in the prefix's slot (Redis Cluster runs the scripts on one
-- node). ARGV[1] is "now" when a clock is injected (tests), "" otherwise: then the server's
-- TIME is the clock, never the caller's.
--
-- A job is the hash P:job:<id>; a missing field is NULL. Its state decides which indexes hold
-- it (index/unindex below), and P:stats counts jobs per "queue\nstate".

local P = KEYS[1]

local function server_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local NOW
if ARGV[1] ~= nil and ARGV[1] ~= '' then NOW = tonumber(ARGV[1]) else NOW = server_time() end

-- Numbers are stored as text with every digit a double has; 'inf' (a pause until resumed).
local function num(x)
  if x == math.huge then return 'inf' end
  if x == math.floor(x) and math.abs(x) < 1e15 then return string.format('%d', x) end
  return string.format('%.17g', x)
end

local function tn(s)
  if s == nil or s == false then return nil end
  if s == 'inf' then return math.huge end
  return tonumber(s)
end

local function jkey(id) return P .. ':job:' .. id end

local LIVE = {blocked = true, scheduled = true, queued = true, running = true, retrying = true}
local WAITING = {blocked = true, scheduled = true, queued = true, retrying = true}

-- Ready jobs sit in sorted sets of equal scores, ordered by member: priority (highest first),
-- run_at (oldest first), id. Text compares as the numbers do because every part has a fixed
-- width (priorities are 32-bit, run_at is positive).
local function rank(priority, run_at, id)
  return string.format('%010d:%020.6f:%012d', 2147483647 - priority, run_at, id)
end

local function load(id)
  local flat = redis.call('HGETALL', jkey(id))
  if #flat == 0 then return nil end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

-- Counts per "queue\nstate" change in a table, written once at the end (publish).
local stat_changes = {}
local function stat(h, by)
  local name = h.queue .. '\n' .. h.state
  stat_changes[name] = (stat_changes[name] or 0) + by
end

-- The jobs that may be pruned (succeeded, cancelled) are listed in P:ended in the order
-- they ended, as "<id> <finished_at>": appending costs the same however many finished jobs
-- the store holds, where a sorted set's insert slows as it grows (prune.lua reads the list).
local function ended_entry(id, finished_at) return id .. ' ' .. finished_at end

local function unindex(id, h)
  local s = h.state
  if s == 'queued' then
    if h.rate_key then
      redis.call('ZREM', P .. ':bq:' .. h.task .. '\n' .. h.rate_key, h.rk)
      redis.call('ZREM', P .. ':rated:' .. h.queue, id)
    else
      redis.call('ZREM', P .. ':ready', h.rk)
      redis.call('ZREM', P .. ':ready:' .. h.queue, h.rk)
    end
  elseif s == 'scheduled' or s == 'retrying' then
    if h.suspect == '1' then
      redis.call('ZREM', P .. ':suspects', id)
    else
      redis.call('ZREM', P .. ':due', id)
    end
  elseif s == 'running' then
    redis.call('ZREM', P .. ':running', id)
    redis.call('SREM', P .. ':held:' .. h.worker_id, id)
    redis.call('SREM', P .. ':runq:' .. h.queue, id)
    redis.call('HDEL', P .. ':tokens', h.lease_token)
    redis.call('SREM', P .. ':cancels:' .. h.worker_id, h.lease_token)
  end
  -- A succeeded or cancelled job's entry in P:ended stays: prune.lua drops it when it finds
  -- the job changed.
  stat(h, -1)
end

-- Scores go as the text the job holds (a number given to redis.call is printed with %.17g on
-- its way, which costs more than the ZADD itself).
local function index(id, h)
  local s = h.state
  if s == 'queued' then
    local rk = rank(tonumber(h.priority), tn(h.run_at), tonumber(id))
    if h.rk ~= rk then
      h.rk = rk
      redis.call('HSET', jkey(id), 'rk', rk)
    end
    if h.rate_key then
      -- A job of a rate-limited task waits in its bucket's own index (claim.lua).
      redis.call('ZADD', P .. ':bq:' .. h.task .. '\n' .. h.rate_key, '0', h.rk)
      -- By run_at, for oldest_ready (the bucket's own index mixes queues).
      redis.call('ZADD', P .. ':rated:' .. h.queue, h.run_at, id)
      redis.call('SADD', P .. ':queues', h.queue)
    else
      redis.call('ZADD', P .. ':ready', '0', h.rk)
      redis.call('ZADD', P .. ':ready:' .. h.queue, '0', h.rk)
      redis.call('SADD', P .. ':queues', h.queue)
    end
  elseif s == 'scheduled' or s == 'retrying' then
    if h.suspect == '1' then
      redis.call('ZADD', P .. ':suspects', h.run_at, id)
    else
      redis.call('ZADD', P .. ':due', h.run_at, id)
    end
  elseif s == 'running' then
    redis.call('ZADD', P .. ':running', h.lease_expires_at, id)
    redis.call('SADD', P .. ':held:' .. h.worker_id, id)
    redis.call('SADD', P .. ':runq:' .. h.queue, id)
    redis.call('HSET', P .. ':tokens', h.lease_token, id)
    if h.cancel_requested == '1' then
      redis.call('SADD', P .. ':cancels:' .. h.worker_id, h.lease_token)
    end
  elseif s == 'succeeded' or s == 'cancelled' then
    redis.call('RPUSH', P .. ':ended', ended_entry(id, h.finished_at))
  end
  stat(h, 1)
end

-- Write ``changes`` (field -> text, or false for NULL) to job ``id`` and move it between
-- indexes when its state or an indexed field changes.
local function update(id, h, changes)
  unindex(id, h)
  local set, del = {}, {}
  for k, v in pairs(changes) do
    if v == false then
      h[k] = nil
      del[#del + 1] = k
    else
      h[k] = v
      set[#set + 1] = k
      set[#set + 1] = v
    end
  end
  if #set > 0 then redis.call('HSET', jkey(id), unpack(set)) end
  if #del > 0 then redis.call('HDEL', jkey(id), unpack(del)) end
  index(id, h)
end

-- Remove a job and everything that points at it.
local function forget_job(id, h)
  unindex(id, h)
  redis.call('DEL', jkey(id))
  redis.call('ZREM', P .. ':jobs', id)
  if h.idempotency_key then
    if redis.call('HGET', P .. ':idem', h.idempotency_key) == tostring(id) then
      redis.call('HDEL', P .. ':idem', h.idempotency_key)
    end
    redis.call('ZREM', P .. ':keyed:' .. h.idempotency_key, id)
  end
  if h.workflow_id then redis.call('ZREM', P .. ':workflow:' .. h.workflow_id, id) end
  for _, parent in ipairs(redis.call('SMEMBERS', P .. ':parents:' .. id)) do
    redis.call('SREM', P .. ':children:' .. parent, id)
  end
  redis.call('DEL', P .. ':parents:' .. id)
end

local function append_error(errors, err)
  if err == nil or err == false or err == cjson.null then return errors end
  if errors == nil or errors == '[]' then return '[' .. err .. ']' end
  return string.sub(errors, 1, -2) .. ',' .. err .. ']'
end

-- Something changed that other processes may want to look at: the counts are written, and
-- idle workers of the queues given to wake() are woken by pub/sub (the change marker of the
-- other processes is their count of these messages, listener.py: no key of its own).
local woken = {}
local function wake(queue) woken[queue] = true end
local function publish()
  for name, by in pairs(stat_changes) do
    if by ~= 0 then redis.call('HINCRBY', P .. ':stats', name, by) end
  end
  stat_changes = {}
  for queue, _ in pairs(woken) do redis.call('PUBLISH', P .. ':wake', queue) end
end
local function finished()
  redis.call('PUBLISH', P .. ':finished', '')
end

-- The gates of a queue (conveyor/limits/gates.py): how many jobs a claim may start now, nil
-- for no bound. ``quiet`` holds the queues in their quiet hours now (judged by the caller).
local function gate_room(queue, quiet)
  local g = redis.call('HMGET', P .. ':gate:' .. queue, 'max_running', 'paused_until',
    'rate_count', 'rate_next')
  local paused = tn(g[2])
  if paused and NOW < paused then return 0 end
  if quiet[queue] then return 0 end
  local room = nil
  if g[1] then
    room = math.max(tonumber(g[1]) - redis.call('SCARD', P .. ':runq:' .. queue), 0)
  end
  if g[3] then
    local next_start = tn(g[4])
    local allows = (next_start == nil or next_start <= NOW) and 1 or 0
    room = math.min(room or 1, allows)
  end
  return room
end

-- A claim started ``count`` jobs of ``queue``: its rate limit's next start moves on.
local function take_rate(queue, count)
  local g = redis.call('HMGET', P .. ':gate:' .. queue, 'rate_count', 'rate_per', 'rate_next')
  if not g[1] or count == 0 then return end
  local interval = tonumber(g[2]) / tonumber(g[1])
  local value = math.max(tn(g[3]) or NOW, NOW) + count * interval
  redis.call('HSET', P .. ':gate:' .. queue, 'rate_next', num(math.ceil(value * 1e6) / 1e6))
end

-- queued -> running under a fresh token.
local function start_run(id, h, worker, lease, token)
  update(id, h, {
    state = 'running',
    attempts = tostring((tonumber(h.attempts) or 0) + 1),
    lease_token = token,
    lease_expires_at = num(NOW + lease),
    worker_id = worker,
    started_at = num(NOW),
    cancel_requested = '0',
  })
  return {id, h.task, h.queue, h.args, h.kwargs, h.priority, h.attempts, h.max_attempts, token,
    h.timeout or false, h.checkpoint or false, h.run_at}
end

-- scheduled/retrying jobs whose time has come -> queued (suspects stay, see claim_suspect).
local function promote_due()
  local due = redis.call('ZRANGEBYSCORE', P .. ':due', '-inf', num(NOW))
  for _, id in ipairs(due) do
    local h = load(id)
    update(id, h, {state = 'queued'})
    wake(h.queue)
  end
  return #due
end

-- A run lost with its lease or its worker (rescue.lua, reap.lua): the job waits again as a
-- suspect (see Backend.claim_suspect). Only a run that was ``alone`` in its worker is charged:
-- it keeps its attempt and, with none left, ends dead (``why`` says how it was lost); any other
-- gets its attempt back. A cancel requested meanwhile ends it cancelled.
local function lose_run(id, h, alone, why)
  local attempts, lost = tonumber(h.attempts), (tonumber(h.lost_runs) or 0) + 1
  local c = {lost_runs = tostring(lost), run_at = num(NOW), lease_token = false,
    lease_expires_at = false}
  if h.cancel_requested == '1' then
    c.state, c.finished_at, c.suspect = 'cancelled', num(NOW), '0'
  elseif alone and attempts >= tonumber(h.max_attempts) then
    c.state, c.finished_at, c.suspect = 'dead', num(NOW), '0'
    c.dead_reason = string.format('lost: %s %d while the job ran alone in its worker, %d '
      .. 'run(s) lost in all; the job may be killing or hanging its worker', why, attempts, lost)
  else
    c.state, c.suspect = 'retrying', '1'
    if not alone then c.attempts = tostring(attempts - 1) end
  end
  update(id, h, c)
  return c.state
end

-- Every leadership ``holder`` holds is free at once.
local function release_leaderships(holder)
  for _, name in ipairs(redis.call('SMEMBERS', P .. ':leaders')) do
    if redis.call('HGET', P .. ':leader:' .. name, 'holder') == holder then
      redis.call('DEL', P .. ':leader:' .. name)
      redis.call('SREM', P .. ':leaders', name)
    end
  end
end

-- A new job of the fields ``h`` (text values; id and rk are set here; the fields left out
-- hold their defaults: no attempt, no error, not a suspect ...). Returns its id.
local function insert_job(h, id)
  id = id or redis.call('INCR', P .. ':seq')
  h.id = tostring(id)
  if h.state == 'queued' then h.rk = rank(tonumber(h.priority), tn(h.run_at), id) end
  local flat = {}
  for k, v in pairs(h) do flat[#flat + 1] = k; flat[#flat + 1] = v end
  redis.call('HSET', jkey(id), unpack(flat))
  redis.call('ZADD', P .. ':jobs', id, id)
  index(id, h)
  if h.state == 'queued' then wake(h.queue) end
  return id
end

-- Rate limits of tasks, per key (conveyor/limits/buckets.py): a bucket is the hash
-- P:bucket:<task>\n<key>, listed in P:buckets; its queued jobs are in P:bq:<task>\n<key>.
-- The best queued job of bucket ``b`` whose queue is one of ``wanted`` (nil: any), or nil.
local function bucket_first(b, wanted)
  local offset = 0
  while true do
    local ranks = redis.call('ZRANGE', P .. ':bq:' .. b, offset, offset + 99)
    if #ranks == 0 then return nil end
    for _, r in ipairs(ranks) do
      local id = tonumber(string.sub(r, -12))
      if wanted == nil or wanted[redis.call('HGET', jkey(id), 'queue')] then return id end
    end
    offset = offset + 100
  end
end

-- A job of bucket ``b`` started: its next start moves on by one interval (Rate.next_after).
local function take_bucket(b)
  local key = P .. ':bucket:' .. b
  local g = redis.call('HMGET', key, 'rate_count', 'rate_per', 'rate_next')
  if not g[1] then return end
  local value = math.max(tn(g[3]) or NOW, NOW) + tonumber(g[2]) / tonumber(g[1])
  redis.call('HSET', key, 'rate_next', num(math.ceil(value * 1e6) / 1e6))
end

-- ``cmd`` on ``key`` with the arguments ``args`` (a flat list), in calls of at most 1000 of
-- them (``step`` divides 1000: pairs stay together), for the batched paths below.
local function variadic(cmd, key, args, step)
  for i = 1, #args, 1000 do
    local last = math.min(i + 999, #args)
    redis.call(cmd, key, unpack(args, i, last - ((last - i + 1) % step)))
  end
end

-- start_run for a batch of ready jobs ({id, h, token}; none of a rate-limited task), with the
-- index writes of all of them in a few variadic commands: the hot path of a busy claim.
-- The claim row of the run that holds lease token ``token``, or nil. The client sends a claim
-- again, with the same tokens, when its reply was lost after the script ran (a broken
-- connection; a server killed between its AOF fsync and the reply): claim.lua answers such a
-- replay with the runs it started the first time instead of starting more that nobody would
-- know of, and that nobody would rescue while their worker lives (a sweeping worker excludes
-- its own runs from rescue_expired).
local function replayed_run(token)
  local id = redis.call('HGET', P .. ':tokens', token)
  if not id then return nil end
  local h = load(id)
  if h == nil or h.state ~= 'running' or h.lease_token ~= token then return nil end
  return {tonumber(id), h.task, h.queue, h.args, h.kwargs, h.priority, h.attempts,
    h.max_attempts, token, h.timeout or false, h.checkpoint or false, h.run_at}
end

local function start_runs(batch, worker, lease)
  local rows = {}
  if #batch == 0 then return rows end
  local expires, started = num(NOW + lease), num(NOW)
  local ready, by_queue, running, held, runq, tokens = {}, {}, {}, {}, {}, {}
  for _, b in ipairs(batch) do
    local id, h, token = b[1], b[2], b[3]
    stat(h, -1)
    ready[#ready + 1] = h.rk
    by_queue[h.queue] = by_queue[h.queue] or {}
    table.insert(by_queue[h.queue], h.rk)
    runq[h.queue] = runq[h.queue] or {}
    table.insert(runq[h.queue], id)
    local attempts = tostring((tonumber(h.attempts) or 0) + 1)
    redis.call('HSET', jkey(id), 'state', 'running', 'attempts', attempts, 'lease_token', token,
      'lease_expires_at', expires, 'worker_id', worker, 'started_at', started,
      'cancel_requested', '0')
    h.state = 'running'
    stat(h, 1)
    running[#running + 1] = expires
    running[#running + 1] = id
    held[#held + 1] = id
    tokens[#tokens + 1] = token
    tokens[#tokens + 1] = id
    rows[#rows + 1] = {id, h.task, h.queue, h.args, h.kwargs, h.priority, attempts,
      h.max_attempts, token, h.timeout or false, h.checkpoint or false, h.run_at}
  end
  variadic('ZREM', P .. ':ready', ready, 1)
  for queue, ranks in pairs(by_queue) do variadic('ZREM', P .. ':ready:' .. queue, ranks, 1) end
  for queue, ids in pairs(runq) do variadic('SADD', P .. ':runq:' .. queue, ids, 1) end
  variadic('ZADD', P .. ':running', running, 2)
  variadic('SADD', P .. ':held:' .. worker, held, 1)
  variadic('HSET', P .. ':tokens', tokens, 2)
  return rows
end
