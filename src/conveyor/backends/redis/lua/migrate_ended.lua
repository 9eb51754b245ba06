-- migrate_ended: layout 1 kept the jobs prune may delete in the sorted set P:done, by
-- finished_at; layout 2 lists them in P:ended (common.lua, ended_entry). Moves up to ARGV[2]
-- of them, oldest first, and returns how many are left.
local old = P .. ':done'
local ids = redis.call('ZRANGE', old, 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  local finished_at = redis.call('HGET', jkey(id), 'finished_at')
  if finished_at then redis.call('RPUSH', P .. ':ended', ended_entry(id, finished_at)) end
end
if #ids > 0 then redis.call('ZREM', old, unpack(ids)) end
return redis.call('ZCARD', old)
