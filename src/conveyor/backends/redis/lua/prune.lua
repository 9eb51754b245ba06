-- prune: delete up to ARGV[3] succeeded or cancelled jobs that finished more than ARGV[2]
-- seconds ago, except parents with a live child (it may read their result). Returns how many.
local cutoff, batch = NOW - tonumber(ARGV[2]), tonumber(ARGV[3])
local pruned, offset = 0, 0
while pruned < batch do
  local ids = redis.call('ZRANGEBYSCORE', P .. ':done', '-inf', '(' .. num(cutoff), 'LIMIT',
    offset, batch)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if pruned >= batch then break end
    local h = load(id)
    local keep = false
    if h.has_children == '1' then
      for _, c in ipairs(redis.call('SMEMBERS', P .. ':children:' .. id)) do
        if LIVE[redis.call('HGET', jkey(c), 'state')] then keep = true; break end
      end
    end
    if keep then
      offset = offset + 1
    else
      forget_job(id, h)
      pruned = pruned + 1
    end
  end
end
if pruned > 0 then publish() end
return pruned
