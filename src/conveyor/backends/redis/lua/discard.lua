-- discard: delete the dead jobs ARGV[2] (JSON array) for good, all or none. Returns how many,
-- or ["missing", id] / ["invalid", id, state].
local ids = cjson.decode(ARGV[2])
local jobs = {}
for i, id in ipairs(ids) do
  local h = load(id)
  if h == nil then return {'missing', id} end
  if h.state ~= 'dead' then return {'invalid', id, h.state} end
  jobs[i] = h
end
local deleted = 0
for i, id in ipairs(ids) do
  if redis.call('EXISTS', jkey(id)) == 1 then
    forget_job(id, jobs[i])
    deleted = deleted + 1
  end
end
publish()
return deleted
