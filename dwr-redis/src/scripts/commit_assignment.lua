-- commit_assignment.lua: checks and records one assignment, allocates, queues the event.
-- ARGV: prefix, job id, executor id, the job as the scheduler read it (the JSON array of its
-- hash's fields and values, without the closing bracket), '-' when that copy is a placement
-- view, or ''; then, left out when there is no quota and no GPU: the quota of the job's
-- queue ('' for none, else its limits on CPU, memory and GPUs separated by spaces, '-' for
-- none on a dimension); then, only with GPUs, their UUIDs as a JSON array and each UUID.
-- The executor must be alive by its own lease and Redis TIME, and the queue stay within
-- the quota.
local id, ex = ARGV[2], ARGV[3]
local quota, gpu_ids = ARGV[5] or '', ARGV[6] or '[]'
local now = now_ms()
local jk, xk = k_job(id), k_exec(ex)

local j = rcall('HMGET', jk, 'state', 'cpu', 'mem', 'ngpu', 'seq', 'attempt', 'retry_at',
  'queue', 'deps_left', 'array')
local state = j[1]
if not state then return { 'job_not_found' } end
if not can_become(state, S_ASSIGNED) then return { 'not_pending', state } end
if num(j[9] or '0') > 0 then return { 'blocked' } end
local ak = j[10] and k_array(j[10])
if ak then
  local a = rcall('HMGET', ak, 'active', 'parallelism')
  if a[2] and tonumber(a[1] or '0') >= tonumber(a[2]) then return { 'array_full', j[10] } end
end

-- The executor's hash exists exactly while it is registered (both change in one script).
-- Read once per call and executor, its numbers with it: x.alive (whether its lease holds),
-- x.total (CPU, memory, GPUs), x.alloc (the allocations as read). Nothing else of it
-- changes within the call, and counted() adds the allocations of its earlier commits.
local x = EXECUTORS_READ[ex]
if not x then
  x = rcall('HMGET', xk, 'last_heartbeat', 'cpu_total', 'mem_total', 'gpu_total',
    'ip', 'lease_ms', 'cpu_alloc', 'mem_alloc', 'gpu_alloc')
  if x[1] then
    x.alive = now - tonumber(x[1]) <= tonumber(x[6] or DEFAULT_LEASE_MS)
    x.total = { tonumber(x[2]), tonumber(x[3]), tonumber(x[4]) }
    x.alloc = { tonumber(x[7] or '0'), tonumber(x[8] or '0'), tonumber(x[9] or '0') }
  end
  EXECUTORS_READ[ex] = x
end
if not x[1] then return { 'executor_gone' } end
if not x.alive then return { 'executor_not_alive' } end

local cpu, mem, ngpu = num(j[2]), num(j[3]), num(j[4] or '0')
local given = #ARGV > 6 and #ARGV - 6 or 0
if given ~= ngpu then return { 'gpu_count_mismatch', tostring(given), tostring(ngpu) } end

-- What the executor has allocated, with this call's earlier commits and releases.
local alloc, total = counted(xk, ALLOC_FIELDS, x.alloc), x.total
if cpu > total[1] - alloc[1] then return { 'no_room', 'cpu' } end
if mem > total[2] - alloc[2] then return { 'no_room', 'memory' } end
if ngpu > total[3] - alloc[3] then return { 'no_room', 'gpu' } end

if quota ~= '' then
  local limits = { string.match(quota, '^(%S+) (%S+) (%S+)$') }
  if not limits[3] then error('commit_assignment: quota ' .. quota) end
  local q = j[8] or DEFAULT_QUEUE
  local fields = held_fields(q)
  local read = rcall('HMGET', K_QUEUES_HELD, unpack(fields))
  local held = counted(K_QUEUES_HELD, fields,
    { tonumber(read[1] or '0'), tonumber(read[2] or '0'), tonumber(read[3] or '0') })
  for i, part in ipairs({ { 'cpu', cpu }, { 'memory', mem }, { 'gpu', ngpu } }) do
    local limit = limits[i]
    if limit ~= '-' and held[i] + part[2] > tonumber(limit) then
      return { 'quota', q, part[1] }
    end
  end
end

local gk = k_exec_gpus(ex)
local seen = {}
for i = 7, #ARGV do
  local uuid = ARGV[i]
  if seen[uuid] or rcall('HEXISTS', xk, 'dev:' .. uuid) == 0
      or rcall('HEXISTS', gk, uuid) == 1 then
    return { 'gpu_unavailable', uuid }
  end
  seen[uuid] = true
end

-- Every check passed: record, allocate, hand the job to the executor.
count(xk, 'cpu_alloc', cpu)
count(xk, 'mem_alloc', mem)
count(xk, 'gpu_alloc', ngpu)
exec_changed(ex)
for i = 7, #ARGV do
  rcall('HSET', gk, ARGV[i], id)
end
hold(j[8], 1, cpu, mem, ngpu)
if ak then rcall('HINCRBY', ak, 'active', 1) end
append_at_end('SADD', k_exec_jobs(ex), id)
local ip = x[5] or ''
-- Each commit is the job's next attempt: what every later write of its executor names.
local attempt = int(num(j[6] or '0') + 1)
-- No GPUs, no `gpu_ids` (read as none): a job holds none until a commit gives it some, and
-- every end of an attempt that goes back to pending writes it empty.
local gpus = gpu_ids ~= '[]'
if gpus then
  rcall('HSET', jk, 'state', S_ASSIGNED, 'executor', ex, 'executor_ip', ip, 'gpu_ids',
    gpu_ids, 'assigned_at', now_s(), 'attempt', attempt)
else
  rcall('HSET', jk, 'state', S_ASSIGNED, 'executor', ex, 'executor_ip', ip, 'assigned_at',
    now_s(), 'attempt', attempt)
end
-- A retried job's backoff is over. (The scheduler's copy in the event may still carry it.)
if j[7] then rcall('HDEL', jk, 'retry_at') end
move_state(id, state, S_ASSIGNED, j[5], nil, j[8])
-- The event carries the job hash as a JSON array of fields and values, so that the
-- executor need not read the job back: 'assigned <id> <json>'. With the scheduler's copy
-- of the pending job, that is its array followed by the fields just written (a later
-- field wins), and the reply is the IP; without, the hash is read back and is the reply.
-- The event and the job's place in the executor's job set are written at the end of the
-- call (append_at_end), one RPUSH and one SADD per executor for a batch.
local snapshot = ARGV[4]
if snapshot == '-' then
  -- The scheduler's copy is a placement view: the event carries the hash read back, and
  -- the reply is the IP (the scheduler has what it needs of the job).
  local hash = cjson.encode(rcall('HGETALL', jk))
  append_at_end('RPUSH', k_events(ex), 'assigned ' .. id .. ' ' .. hash)
  return { 'ok', ip, now_s() }
end
if snapshot ~= '' then
  -- The fields just written, as the HSET above, spliced in one concatenation (one string
  -- made, not a table encoded and cut).
  append_at_end('RPUSH', k_events(ex), 'assigned ' .. id .. ' ' .. snapshot .. ',"state","'
    .. S_ASSIGNED .. '","executor",' .. json_string(ex) .. ',"executor_ip",' .. json_string(ip)
    .. (gpus and ',"gpu_ids",' .. json_string(gpu_ids) or '') .. ',"assigned_at","' .. now_s()
    .. '","attempt","' .. attempt .. '"]')
  return { 'ok', ip, now_s() }
end
local hash = rcall('HGETALL', jk)
append_at_end('RPUSH', k_events(ex), 'assigned ' .. id .. ' ' .. cjson.encode(hash))
return { 'ok', hash }
