-- list_jobs: ids of jobs newest first, up to ARGV[7], in the states ARGV[2] (JSON array, ""
-- for any), of queue ARGV[3] if ARGV[4] is "1", of task ARGV[5] if ARGV[6] is "1", with ids
-- below ARGV[8] ("" for no bound), holding the idempotency key ARGV[10] if ARGV[9] is "1".
-- A read: it writes nothing.
local states = nil
if ARGV[2] ~= '' then
  states = {}
  for _, s in ipairs(cjson.decode(ARGV[2])) do states[s] = true end
end
local queue, by_queue, task, by_task = ARGV[3], ARGV[4] == '1', ARGV[5], ARGV[6] == '1'
local limit = tonumber(ARGV[7])
local top = '+inf'
if ARGV[8] ~= '' then top = '(' .. ARGV[8] end
local index = P .. ':jobs'
if ARGV[9] == '1' then index = P .. ':keyed:' .. ARGV[10] end
local out, offset = {}, 0
local chunk = 500
while #out < limit do
  local ids = redis.call('ZREVRANGEBYSCORE', index, top, '-inf', 'LIMIT', offset, chunk)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', jkey(id), 'state', 'queue', 'task')
    if (states == nil or states[f[1]]) and (not by_queue or f[2] == queue)
        and (not by_task or f[3] == task) then
      out[#out + 1] = id
      if #out >= limit then break end
    end
  end
  offset = offset + chunk
end
return out
