-- uses: deps
-- cancel job ARGV[2]: a waiting job ends cancelled at once (its children follow), a running
-- one is asked to stop (its worker learns it from P:cancels:<worker>). Returns 1, or
-- ["missing", id] / ["invalid", id, state].
local id = ARGV[2]
local h = load(id)
if h == nil then return {'missing', id} end
if WAITING[h.state] then
  update(id, h, {state = 'cancelled', finished_at = num(NOW)})
  ended(id, h)
  settle_all()
  finished()
elseif h.state == 'running' then
  if h.cancel_requested ~= '1' then update(id, h, {cancel_requested = '1'}) end
elseif h.state ~= 'cancelled' then
  return {'invalid', id, h.state}
end
publish()
return 1
