-- prune: delete up to ARGV[3] succeeded or cancelled jobs that finished more than ARGV[2]
-- seconds ago, except parents with a live child (it may read their result). Returns how many.
--
-- P:ended lists the jobs in the order they ended (common.lua, ended_entry). An entry is a
-- hint: it holds while its job is still succeeded or cancelled with that finished_at; one
-- whose job was deleted, run again or ended again (a newer entry) is dropped when reached.
-- The walk stops at the first entry not old enough, so a call costs what it deletes, whatever
-- the store holds. (An entry behind a younger one, as a restore of jobs that ended out of id
-- order leaves, waits for it: pruned late, never early.) Parents kept for a live child wait in
-- P:ended_held, by finished_at, and are looked at again first.
local cutoff, batch = NOW - tonumber(ARGV[2]), tonumber(ARGV[3])
local ENDED, HELD = P .. ':ended', P .. ':ended_held'
-- Entries dropped or held count too: one call looks at no more than this many.
local budget = 4 * batch
local pruned = 0

local function current(entry)
  local id, finished_at = string.match(entry, '^(%d+) (.*)$')
  local h = load(id)
  if h == nil or (h.state ~= 'succeeded' and h.state ~= 'cancelled')
      or h.finished_at ~= finished_at then
    return nil
  end
  return id, h
end

local function live_child(id, h)
  if h.has_children ~= '1' then return false end
  for _, c in ipairs(redis.call('SMEMBERS', P .. ':children:' .. id)) do
    if LIVE[redis.call('HGET', jkey(c), 'state')] then return true end
  end
  return false
end

for _, entry in ipairs(redis.call('ZRANGEBYSCORE', HELD, '-inf', '(' .. num(cutoff), 'LIMIT', 0,
    batch)) do
  if pruned >= batch or budget <= 0 then break end
  budget = budget - 1
  local id, h = current(entry)
  if id == nil then
    redis.call('ZREM', HELD, entry)
  elseif not live_child(id, h) then
    redis.call('ZREM', HELD, entry)
    forget_job(id, h)
    pruned = pruned + 1
  end
end

while pruned < batch and budget > 0 do
  local entry = redis.call('LINDEX', ENDED, 0)
  if not entry or tonumber(string.match(entry, ' (.*)$')) >= cutoff then break end
  budget = budget - 1
  redis.call('LPOP', ENDED)
  local id, h = current(entry)
  if id ~= nil then
    if live_child(id, h) then
      redis.call('ZADD', HELD, tn(h.finished_at), entry)
    else
      forget_job(id, h)
      pruned = pruned + 1
    end
  end
end
if pruned > 0 then publish() end
return pruned
