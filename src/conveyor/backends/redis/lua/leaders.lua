-- Leadership leases: ARGV[2] "acquire" or "release", ARGV[3] the name, ARGV[4] the holder,
-- ARGV[5] the ttl. acquire takes the lease when free, lapsed or already the holder's (a
-- renewal) and returns 1 when the holder holds it now; release frees it if the holder holds it.
local key = P .. ':leader:' .. ARGV[3]
local holder = ARGV[4]
local current = redis.call('HMGET', key, 'holder', 'expires_at')
if ARGV[2] == 'release' then
  if current[1] == holder then
    redis.call('DEL', key)
    redis.call('SREM', P .. ':leaders', ARGV[3])
  end
  return 1
end
if current[1] and current[1] ~= holder and tonumber(current[2]) >= NOW then return 0 end
redis.call('HSET', key, 'holder', holder, 'expires_at', num(NOW + tonumber(ARGV[5])))
redis.call('SADD', P .. ':leaders', ARGV[3])
return 1
