-- check_invariants.lua: verifies the allocation invariants of every executor, and that the
-- queue holds exactly the pending jobs, and returns one line per violation (empty when all
-- hold). Read-only; for tests and operators.
-- ARGV: prefix.
local bad = {}
local function fail(msg) bad[#bad + 1] = msg end
for _, ex in ipairs(redis.call('SMEMBERS', K_EXECUTORS)) do
  local xk = k_exec(ex)
  local x = redis.call('HMGET', xk, 'cpu_total', 'mem_total', 'gpu_total',
    'cpu_alloc', 'mem_alloc', 'gpu_alloc')
  local cpu, mem, ngpu = 0, 0, 0
  for _, id in ipairs(redis.call('SMEMBERS', k_exec_jobs(ex))) do
    local j = redis.call('HMGET', k_job(id), 'state', 'executor', 'cpu', 'mem', 'ngpu')
    if not HOLDS_RESOURCES[j[1]] then
      fail(ex .. ': holds job ' .. id .. ' in state ' .. tostring(j[1]))
    elseif j[2] ~= ex then
      fail(ex .. ': holds job ' .. id .. ' assigned to ' .. tostring(j[2]))
    else
      cpu = cpu + tonumber(j[3]); mem = mem + tonumber(j[4]); ngpu = ngpu + tonumber(j[5])
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
  local holders = redis.call('HGETALL', k_exec_gpus(ex))
  if #holders / 2 ~= tonumber(x[6]) then
    fail(ex .. ': ' .. (#holders / 2) .. ' GPUs held but gpu_alloc is ' .. x[6])
  end
  for i = 1, #holders, 2 do
    local uuid, id = holders[i], holders[i + 1]
    if redis.call('HEXISTS', xk, 'dev:' .. uuid) == 0 then
      fail(ex .. ': holds unknown GPU ' .. uuid)
    end
    if redis.call('SISMEMBER', k_exec_jobs(ex), id) == 0 then
      fail(ex .. ': GPU ' .. uuid .. ' held by job ' .. id .. ' not on it')
    end
  end
end
for _, state in ipairs({ S_ASSIGNED, S_RUNNING }) do
  for _, id in ipairs(redis.call('ZRANGE', k_state(state), 0, -1)) do
    local ex = redis.call('HGET', k_job(id), 'executor')
    if not ex or redis.call('SISMEMBER', k_exec_jobs(ex), id) == 0 then
      fail('job ' .. id .. ' is ' .. state .. ' but not held by executor ' .. tostring(ex))
    end
  end
end
local queued = redis.call('ZRANGE', K_QUEUE, 0, -1)
for _, id in ipairs(queued) do
  local state = redis.call('HGET', k_job(id), 'state')
  if state ~= S_PENDING then
    fail('job ' .. id .. ' is queued but ' .. tostring(state))
  end
end
if #queued ~= redis.call('ZCARD', k_state(S_PENDING)) then
  fail(#queued .. ' jobs queued but ' .. redis.call('ZCARD', k_state(S_PENDING)) .. ' pending')
end
return bad
