-- The reads of an export (snapshot.py) from the copy snapshot_freeze.lua made under
-- P:snap:<ARGV[3]>, a chunk of the ids of its index at a time (ARGV[4]: the first, from 0;
-- ARGV[5]: how many), one script a chunk rather than a command a job. ARGV[2] is the action:
--   count: {ids read, edges, task ...} (the header's counts, and the tasks whose retry
--     budgets to carry);
--   jobs: the HGETALL of each job;
--   edges: {parent, {child ...}} of each job with children;
--   drop: delete the first chunk of the copy (ARGV[4] is ignored) and return how many jobs it
--     held; the copy is gone, from P:snaps too, once that is 0.
local S = P .. ':snap:' .. ARGV[3]
local action, first, n = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])

if action == 'drop' then
  local ids = redis.call('ZRANGE', S .. ':jobs', 0, n - 1)
  for _, id in ipairs(ids) do
    redis.call('UNLINK', S .. ':job:' .. id, S .. ':children:' .. id)
  end
  if #ids > 0 then redis.call('ZREMRANGEBYRANK', S .. ':jobs', 0, #ids - 1) end
  if #ids == 0 then redis.call('ZREM', P .. ':snaps', ARGV[3]) end
  return #ids
end

local ids = redis.call('ZRANGE', S .. ':jobs', first, first + n - 1)
local out = {}
if action == 'count' then
  local edges, tasks = 0, {}
  for _, id in ipairs(ids) do
    edges = edges + redis.call('SCARD', S .. ':children:' .. id)
    tasks[redis.call('HGET', S .. ':job:' .. id, 'task')] = true
  end
  out = {#ids, edges}
  for task, _ in pairs(tasks) do out[#out + 1] = task end
elseif action == 'jobs' then
  for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', S .. ':job:' .. id) end
elseif action == 'edges' then
  for _, id in ipairs(ids) do
    local children = redis.call('SMEMBERS', S .. ':children:' .. id)
    if #children > 0 then out[#out + 1] = {id, children} end
  end
end
return out
