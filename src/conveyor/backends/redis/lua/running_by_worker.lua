-- running_by_worker: [worker, running jobs, ...] for every worker running some. A walk of the
-- running jobs (the concurrency of all workers at most). A read.
local counts, order = {}, {}
for _, id in ipairs(redis.call('ZRANGE', P .. ':running', 0, -1)) do
  local worker = redis.call('HGET', jkey(id), 'worker_id')
  if not counts[worker] then order[#order + 1] = worker end
  counts[worker] = (counts[worker] or 0) + 1
end
local out = {}
for _, worker in ipairs(order) do
  out[#out + 1] = worker
  out[#out + 1] = counts[worker]
end
return out
