-- uses: deps, tally
-- rescue_expired: running jobs whose lease expired, except those of worker ARGV[2] ("" for
-- none), lose their run (lose_run). Returns [id, state, ...].
local exclude = ARGV[2]
local lost = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':running', '-inf', '(' .. num(NOW))) do
  local h = load(id)
  if h.worker_id ~= exclude then
    lost[#lost + 1] = {id, h, redis.call('SCARD', P .. ':held:' .. h.worker_id) == 1}
  end
end
local out = {}
for _, l in ipairs(lost) do
  local state = lose_run(l[1], l[2], l[3], 'the lease expired on run')
  tally_rescued(l[2], state)
  ended(l[1], l[2])
  out[#out + 1] = l[1]
  out[#out + 1] = state
  if state ~= 'retrying' then finished() end
end
settle_all()
tally_flush()
publish()
return out
