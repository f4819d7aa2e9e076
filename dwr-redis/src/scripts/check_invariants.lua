-- check_invariants.lua: verifies the allocation invariants of every executor, that the
-- jobs under way are held and counted, that the queues hold exactly the pending jobs and
-- that what each queue holds is what its jobs hold, and returns one line per violation
-- (empty when all hold). Read-only; for tests and operators.
-- ARGV: prefix.
local bad = {}
local function fail(msg) bad[#bad + 1] = msg end
for _, ex in ipairs(rcall('SMEMBERS', K_EXECUTORS)) do
  local xk = k_exec(ex)
  local x = rcall('HMGET', xk, 'cpu_total', 'mem_total', 'gpu_total',
    'cpu_alloc', 'mem_alloc', 'gpu_alloc')
  local cpu, mem, ngpu = 0, 0, 0
  for _, id in ipairs(rcall('SMEMBERS', k_exec_jobs(ex))) do
    local j = rcall('HMGET', k_job(id), 'state', 'executor', 'cpu', 'mem', 'ngpu')
    if not HOLDS_RESOURCES[j[1]] then
      fail(ex .. ': holds job ' .. id .. ' in state ' .. tostring(j[1]))
    elseif j[2] ~= ex then
      fail(ex .. ': holds job ' .. id .. ' assigned to ' .. tostring(j[2]))
    else
      cpu = cpu + tonumber(j[3]); mem = mem + tonumber(j[4]); ngpu = ngpu + tonumber(j[5] or '0')
    end
  end
  if cpu ~= tonumber(x[4]) or mem ~= tonumber(x[5]) or ngpu ~= tonumber(x[6]) then
    fail(ex .. ': allocated ' .. x[4] .. '/' .. x[5] .. '/' .. x[6] .. ' but jobs hold '
      .. cpu .. '/' .. mem .. '/' .. ngpu)
  end
  if tonumber(x[4]) > tonumber(x[1]) or tonumber(x[5]) > tonumber(x[2])
      or tonumber(x[6]) > tonumber(x[3]) or tonumber(x[4]) < 0 or tonumber(x[5]) < 0
      or tonumber(x[6]) < 0 then
    fail(ex .. ': allocation out of bounds')
  end
  local holders = rcall('HGETALL', k_exec_gpus(ex))
  if #holders / 2 ~= tonumber(x[6]) then
    fail(ex .. ': ' .. (#holders / 2) .. ' GPUs held but gpu_alloc is ' .. x[6])
  end
  for i = 1, #holders, 2 do
    local uuid, id = holders[i], holders[i + 1]
    if rcall('HEXISTS', xk, 'dev:' .. uuid) == 0 then
      fail(ex .. ': holds unknown GPU ' .. uuid)
    end
    if rcall('SISMEMBER', k_exec_jobs(ex), id) == 0 then
      fail(ex .. ': GPU ' .. uuid .. ' held by job ' .. id .. ' not on it')
    end
  end
end
-- The jobs under way are held by their executors; K_JOB_COUNTS counts the running ones.
local under_way, running = rcall('ZRANGE', K_UNDER_WAY, 0, -1), 0
for _, id in ipairs(under_way) do
  local j = rcall('HMGET', k_job(id), 'state', 'executor')
  local state, ex = j[1], j[2]
  if not HOLDS_RESOURCES[state] then
    fail('job ' .. id .. ' is indexed as under way but is ' .. tostring(state))
  elseif not ex or rcall('SISMEMBER', k_exec_jobs(ex), id) == 0 then
    fail('job ' .. id .. ' is ' .. state .. ' but not held by executor ' .. tostring(ex))
  end
  if state == S_RUNNING then running = running + 1 end
end
local counted_running = tonumber(rcall('HGET', K_JOB_COUNTS, 'running') or '0')
if counted_running ~= running then
  fail(running .. ' jobs running but ' .. counted_running .. ' counted')
end
-- The queues hold exactly the pending jobs, each in its own queue; what each queue holds
-- is what its assigned and running jobs hold.
local queues = rcall('SMEMBERS', K_QUEUES)
table.insert(queues, DEFAULT_QUEUE)
local queued = 0
for _, q in ipairs(queues) do
  for _, id in ipairs(rcall('ZRANGE', k_queue(q), 0, -1)) do
    queued = queued + 1
    local j = rcall('HMGET', k_job(id), 'state', 'queue')
    if j[1] ~= S_PENDING then
      fail('job ' .. id .. ' is queued but ' .. tostring(j[1]))
    end
    if (j[2] or DEFAULT_QUEUE) ~= q then
      fail('job ' .. id .. ' of queue ' .. tostring(j[2]) .. ' is in queue ' .. q)
    end
  end
end
for _, id in ipairs(rcall('ZRANGE', K_BLOCKED, 0, -1)) do
  queued = queued + 1
  local j = rcall('HMGET', k_job(id), 'state', 'deps_left')
  if j[1] ~= S_PENDING or tonumber(j[2] or '0') < 1 then
    fail('job ' .. id .. ' waits for dependencies but is ' .. tostring(j[1]) .. ' with '
      .. tostring(j[2]) .. ' left')
  end
end
if queued ~= rcall('ZCARD', k_state(S_PENDING)) then
  fail(queued .. ' jobs queued or waiting for dependencies but '
    .. rcall('ZCARD', k_state(S_PENDING)) .. ' pending')
end
local held, active = {}, {}
for _, id in ipairs(under_way) do
  local j = rcall('HMGET', k_job(id), 'queue', 'cpu', 'mem', 'ngpu', 'array')
  if j[5] then active[j[5]] = (active[j[5]] or 0) + 1 end
  local q = j[1] or DEFAULT_QUEUE
  for i, dim in ipairs({ 'cpu', 'mem', 'gpu' }) do
    local field = q .. ':' .. dim
    held[field] = (held[field] or 0) + tonumber(j[i + 1] or '0')
  end
end
local recorded = rcall('HGETALL', K_QUEUES_HELD)
local seen = {}
for i = 1, #recorded, 2 do
  local field, n = recorded[i], tonumber(recorded[i + 1])
  seen[field] = true
  if n ~= (held[field] or 0) then
    fail('queues hold ' .. field .. ' = ' .. n .. ' but their jobs hold ' .. (held[field] or 0))
  end
end
for field, n in pairs(held) do
  if not seen[field] and n ~= 0 then
    fail('queues hold no ' .. field .. ' but their jobs hold ' .. n)
  end
end
-- The arrays with tasks under way count them (those without any, checked when they have).
for aid, n in pairs(active) do
  local recorded = tonumber(rcall('HGET', k_array(aid), 'active') or '0')
  if recorded ~= n then
    fail('array ' .. aid .. ' counts ' .. recorded .. ' tasks under way but has ' .. n)
  end
end
return bad
