-- extend_leases: every run of the tokens ARGV[3..] still owned gets its lease pushed to now +
-- ARGV[2]. Returns [token, cancel_requested] pairs of the runs extended.
local lease = tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local token = ARGV[i]
  local id = redis.call('HGET', P .. ':tokens', token)
  if id then
    local h = redis.call('HMGET', jkey(id), 'state', 'lease_token', 'cancel_requested')
    if h[1] == 'running' and h[2] == token then
      local expires = num(NOW + lease)
      redis.call('HSET', jkey(id), 'lease_expires_at', expires)
      redis.call('ZADD', P .. ':running', expires, id)
      out[#out + 1] = token
      out[#out + 1] = h[3]
    end
  end
end
return out
