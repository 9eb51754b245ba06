-- uses: deps, tally
-- reap_dead_workers: declare dead the running or stopping workers silent for their dead_after
-- seconds (counted from ARGV[3] at the earliest, "" for no bound) or named in ARGV[5] (JSON
-- array), except ARGV[2]; their runs are lost (lose_run) and their leaderships free. Dead
-- workers silent for ARGV[4] seconds are forgotten. Returns [[worker ...], [id, state, ...]].
local exclude, since, forget_after = ARGV[2], tn(ARGV[3]), tonumber(ARGV[4])
local known = {}
for _, w in ipairs(cjson.decode(ARGV[5])) do known[w] = true end
local dead, out = {}, {}
for _, w in ipairs(redis.call('ZRANGE', P .. ':workers', 0, -1)) do
  local key = P .. ':worker:' .. w
  local f = redis.call('HMGET', key, 'state', 'last_beat_at', 'dead_after')
  if (f[1] == 'running' or f[1] == 'stopping') and w ~= exclude then
    local beat = tonumber(f[2])
    if since and since > beat then beat = since end
    if beat + tonumber(f[3]) < NOW or known[w] then
      redis.call('HSET', key, 'state', 'dead')
      dead[#dead + 1] = w
    end
  end
end
for _, w in ipairs(dead) do
  local held = redis.call('SMEMBERS', P .. ':held:' .. w)
  local alone = #held == 1
  for _, id in ipairs(held) do
    local h = load(id)
    local state = lose_run(id, h, alone, 'its worker died during run')
    tally_rescued(h, state)
    ended(id, h)
    out[#out + 1] = id
    out[#out + 1] = state
    if state ~= 'retrying' then finished() end
  end
  release_leaderships(w)
end
settle_all()
tally_flush()
for _, w in ipairs(redis.call('ZRANGE', P .. ':workers', 0, -1)) do
  local key = P .. ':worker:' .. w
  local f = redis.call('HMGET', key, 'state', 'last_beat_at')
  if f[1] == 'dead' and tonumber(f[2]) < NOW - forget_after then
    redis.call('DEL', key, P .. ':cancels:' .. w)
    redis.call('ZREM', P .. ':workers', w)
  end
end
publish()
return {dead, out}
