-- executors.lua: a consistent snapshot of one executor (ARGV[2]) or of all (ARGV[2] = ''),
-- ordered by id. ARGV: prefix, executor id or '', and 'placement' for what a scheduling
-- pass reads: no job set and no usage (with 10,000 executors, the job sets were a third of
-- the commands and most of the reply of every pass).
local ids
if ARGV[2] ~= '' then
  ids = { ARGV[2] }
else
  ids = redis.call('SMEMBERS', K_EXECUTORS)
  table.sort(ids)
end
local placement = ARGV[3] == 'placement'
local fields = { 'reg', 'cpu_alloc', 'mem_alloc', 'gpu_alloc', 'registered_at', 'last_heartbeat' }
local none = {}
local out = {}
for _, ex in ipairs(ids) do
  local xk = k_exec(ex)
  if placement then
    local values = redis.call('HMGET', xk, unpack(fields))
    if values[1] then
      local hash = {}
      for i, name in ipairs(fields) do
        hash[#hash + 1] = name
        hash[#hash + 1] = values[i]
      end
      out[#out + 1] = { hash, redis.call('HGETALL', k_exec_gpus(ex)), none }
    end
  elseif redis.call('EXISTS', xk) == 1 then
    out[#out + 1] = executor_reply(ex)
  end
end
return out
