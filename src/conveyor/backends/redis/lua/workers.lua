-- The worker registry: ARGV[2] is the action.
--   register id fields(JSON): record a starting worker as running, beating now (a known one,
--     even one declared dead, registers again and keeps a stop already requested);
--   beat id state: returns its stop_requested ("0"/"1"), or nil for no live worker of that id;
--   deregister id: forget it and free its leaderships;
--   stop ids(JSON): ask those workers to stop; returns the ids unknown (then nothing changed);
--   stop_all: ask every worker not dead; returns their ids.
local action = ARGV[2]
local function wkey(id) return P .. ':worker:' .. id end

if action == 'register' then
  local id, f = ARGV[3], cjson.decode(ARGV[4])
  local key = wkey(id)
  if redis.call('EXISTS', key) == 0 then
    local flat = {'id', id, 'started_at', num(NOW), 'stop_requested', '0'}
    for _, name in ipairs({'host', 'pid', 'machine', 'queues', 'concurrency'}) do
      if f[name] ~= cjson.null then
        flat[#flat + 1] = name
        flat[#flat + 1] = f[name]
      end
    end
    redis.call('HSET', key, unpack(flat))
    redis.call('ZADD', P .. ':workers', NOW, id)
  end
  redis.call('HSET', key, 'state', 'running', 'last_beat_at', num(NOW),
    'beat_interval', f.beat_interval, 'dead_after', f.dead_after)
  publish()
  return 1
elseif action == 'beat' then
  local key = wkey(ARGV[3])
  local state = redis.call('HGET', key, 'state')
  if not state or state == 'dead' then return false end
  redis.call('HSET', key, 'last_beat_at', num(NOW), 'state', ARGV[4])
  return redis.call('HGET', key, 'stop_requested')
elseif action == 'deregister' then
  redis.call('DEL', wkey(ARGV[3]), P .. ':cancels:' .. ARGV[3])
  redis.call('ZREM', P .. ':workers', ARGV[3])
  release_leaderships(ARGV[3])
  publish()
  return 1
elseif action == 'stop' then
  local ids, missing = cjson.decode(ARGV[3]), {}
  for _, id in ipairs(ids) do
    if redis.call('EXISTS', wkey(id)) == 0 then return id end
  end
  for _, id in ipairs(ids) do redis.call('HSET', wkey(id), 'stop_requested', '1') end
  publish()
  return false
elseif action == 'stop_all' then
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', P .. ':workers', 0, -1)) do
    if redis.call('HGET', wkey(id), 'state') ~= 'dead' then
      redis.call('HSET', wkey(id), 'stop_requested', '1')
      out[#out + 1] = id
    end
  end
  publish()
  return out
end
return redis.error_reply('unknown action ' .. action)
