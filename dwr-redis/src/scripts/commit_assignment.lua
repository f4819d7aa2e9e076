-- commit_assignment.lua: checks and records one assignment, allocates, queues the event.
-- ARGV: prefix, job id, executor id, now (ms), ttl (ms), gpu_ids as JSON, then the GPU UUIDs.
local id, ex = ARGV[2], ARGV[3]
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local jk, xk = k_job(id), k_exec(ex)

local j = redis.call('HMGET', jk, 'state', 'cpu', 'mem', 'ngpu', 'seq')
local state = j[1]
if not state then return { 'job_not_found' } end
if state ~= 'pending' then return { 'not_pending', state } end

-- The executor's hash exists exactly while it is registered (both change in one script).
local x = redis.call('HMGET', xk, 'last_heartbeat', 'cpu_total', 'mem_total', 'gpu_total',
  'cpu_alloc', 'mem_alloc', 'gpu_alloc', 'ip')
if not x[1] then return { 'executor_gone' } end
if now - tonumber(x[1]) > ttl then return { 'executor_not_alive' } end

local cpu, mem, ngpu = tonumber(j[2]), tonumber(j[3]), tonumber(j[4])
local given = #ARGV - 6
if given ~= ngpu then return { 'gpu_count_mismatch', tostring(given), tostring(ngpu) } end

if cpu > tonumber(x[2]) - tonumber(x[5]) then return { 'no_room', 'cpu' } end
if mem > tonumber(x[3]) - tonumber(x[6]) then return { 'no_room', 'memory' } end
if ngpu > tonumber(x[4]) - tonumber(x[7]) then return { 'no_room', 'gpu' } end

local gk = k_exec_gpus(ex)
local seen = {}
for i = 7, #ARGV do
  local uuid = ARGV[i]
  if seen[uuid] or redis.call('HEXISTS', xk, 'dev:' .. uuid) == 0
      or redis.call('HEXISTS', gk, uuid) == 1 then
    return { 'gpu_unavailable', uuid }
  end
  seen[uuid] = true
end

-- Every check passed: record, allocate, hand the job to the executor.
redis.call('HINCRBY', xk, 'cpu_alloc', cpu)
redis.call('HINCRBY', xk, 'mem_alloc', mem)
if ngpu > 0 then redis.call('HINCRBY', xk, 'gpu_alloc', ngpu) end
for i = 7, #ARGV do
  redis.call('HSET', gk, ARGV[i], id)
end
redis.call('SADD', k_exec_jobs(ex), id)
redis.call('HSET', jk, 'state', 'assigned', 'executor', ex, 'executor_ip', x[8] or '',
  'gpu_ids', ARGV[6], 'assigned_at', ARGV[4], 'updated_at', ARGV[4])
move_state(id, 'pending', 'assigned', j[5])
-- The event carries the job hash (the HGETALL array as JSON), so that the executor need
-- not read the job back: 'assigned <id> <json>'.
local hash = redis.call('HGETALL', jk)
redis.call('RPUSH', k_events(ex), 'assigned ' .. id .. ' ' .. cjson.encode(hash))
return { 'ok', hash }
