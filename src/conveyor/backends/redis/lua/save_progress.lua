-- save_progress: fenced write of job ARGV[2]'s progress (ARGV[4]) and/or checkpoint (ARGV[5]),
-- each "" to leave it, while its run holds token ARGV[3]. Returns 1 when written.
local id, token = ARGV[2], ARGV[3]
local h = redis.call('HMGET', jkey(id), 'state', 'lease_token')
if h[1] ~= 'running' or h[2] ~= token then return 0 end
if ARGV[4] ~= '' then redis.call('HSET', jkey(id), 'progress', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', jkey(id), 'checkpoint', ARGV[5]) end
return 1
