-- Circuit breakers (conveyor/limits/breakers.py, whose rules these functions repeat): a
-- breaker is the hash P:breaker:<name>, listed in P:breakers; P:unsettled lists those not
-- closed, which claims skip the tasks of. scripts.py puts this file in front of every script.
-- A declared breaker arrives from Python as {name, failures, window, cooldown, cap, ratio
-- (or null), min_calls, tasks}.

local BUCKETS = 10

local function json_list(t)
  if #t == 0 then return '[]' end
  return cjson.encode(t)
end

local function breaker_load(name)
  local flat = redis.call('HGETALL', P .. ':breaker:' .. name)
  if #flat == 0 then return nil end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return {
    name = name, state = h.state, tasks = cjson.decode(h.tasks), recent = cjson.decode(h.recent),
    window = tonumber(h.window), opened_at = tn(h.opened_at), probe_at = tn(h.probe_at),
    cooldown = tn(h.cooldown), probe_job = h.probe_job, probe_token = h.probe_token,
  }
end

local function breaker_save(row)
  local key = P .. ':breaker:' .. row.name
  redis.call('DEL', key)
  local flat = {'name', row.name, 'state', row.state, 'tasks', json_list(row.tasks),
    'recent', json_list(row.recent), 'window', num(row.window), 'updated_at', num(NOW)}
  for _, f in ipairs({'opened_at', 'probe_at', 'cooldown'}) do
    if row[f] then flat[#flat + 1] = f; flat[#flat + 1] = num(row[f]) end
  end
  for _, f in ipairs({'probe_job', 'probe_token'}) do
    if row[f] then flat[#flat + 1] = f; flat[#flat + 1] = tostring(row[f]) end
  end
  redis.call('HSET', key, unpack(flat))
  redis.call('SADD', P .. ':breakers', row.name)
  if row.state == 'closed' then
    redis.call('SREM', P .. ':unsettled', row.name)
  else
    redis.call('SADD', P .. ':unsettled', row.name)
  end
end

local function new_breaker_row(name)
  return {name = name, state = 'closed', tasks = {}, recent = {}, window = 60.0}
end

local function breaker_opened(row, b, cooldown)
  row.state, row.opened_at, row.cooldown = 'open', NOW, cooldown
  row.probe_at = NOW + cooldown
  row.probe_job, row.probe_token = nil, nil
  row.tasks, row.window = b.tasks, b.window
  return row
end

local function breaker_closed(row, b)
  row.state, row.recent = 'closed', {}
  row.opened_at, row.probe_at, row.cooldown = nil, nil, nil
  row.probe_job, row.probe_token = nil, nil
  row.tasks, row.window = b.tasks, b.window
  return row
end

-- The breaker after the runs ``events`` ({token, failed} in order) ended, or nil when there is
-- nothing to write.
local function breaker_record(row, b, events)
  local any_failed = false
  for _, e in ipairs(events) do if e[2] then any_failed = true end end
  if row == nil then
    if b.ratio == cjson.null and not any_failed then return nil end
    row = new_breaker_row(b.name)
  end
  if row.state == 'open' then return nil end
  if row.state == 'half_open' then
    for _, e in ipairs(events) do
      if e[1] == row.probe_token then
        if e[2] then
          return breaker_opened(row, b, math.min((row.cooldown or b.cooldown) * 2, b.cap))
        end
        return breaker_closed(row, b)
      end
    end
    return nil
  end
  row.tasks, row.window = b.tasks, b.window
  if b.ratio == cjson.null then
    if not any_failed then return nil end
    local times = {}
    for _, t in ipairs(row.recent) do
      if type(t) == 'number' and t > NOW - b.window then times[#times + 1] = t end
    end
    for _, e in ipairs(events) do
      if e[2] then times[#times + 1] = NOW end
    end
    local recent = {}
    for i = math.max(1, #times - b.failures + 1), #times do recent[#recent + 1] = times[i] end
    row.recent = recent
    if #recent >= b.failures then return breaker_opened(row, b, b.cooldown) end
    return row
  end
  local width = b.window / BUCKETS
  local start = math.floor(NOW / width) * width
  local buckets = {}
  for _, x in ipairs(row.recent) do
    if type(x) == 'table' and #x == 3 and x[1] > NOW - b.window - width
        and x[1] + width > NOW - b.window then
      buckets[#buckets + 1] = x
    end
  end
  if #buckets == 0 or buckets[#buckets][1] ~= start then buckets[#buckets + 1] = {start, 0, 0} end
  local last = buckets[#buckets]
  last[2] = last[2] + #events
  for _, e in ipairs(events) do if e[2] then last[3] = last[3] + 1 end end
  row.recent = buckets
  local runs, failures = 0, 0
  for _, x in ipairs(buckets) do runs = runs + x[2]; failures = failures + x[3] end
  if runs >= b.min_calls and failures >= b.ratio * runs then
    return breaker_opened(row, b, b.cooldown)
  end
  return row
end

-- Open (until closed by hand: no probe meanwhile) or close breaker ``b`` by hand.
local function breaker_by_hand(b, opened)
  local row = breaker_load(b.name) or new_breaker_row(b.name)
  if opened then
    row = breaker_opened(row, b, b.cooldown)
    row.probe_at = nil
  else
    row = breaker_closed(row, b)
  end
  breaker_save(row)
  return row
end
