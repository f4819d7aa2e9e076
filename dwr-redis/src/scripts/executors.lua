-- executors.lua: a consistent snapshot of one executor (ARGV[2]) or of all (ARGV[2] = ''),
-- ordered by id. ARGV: prefix, executor id or '', then 'whole' or 'placement'.
--
-- 'placement' reads what a scheduling pass needs (no job set, no usage: with 10,000
-- executors the job sets were a third of the commands and most of the reply), and with
-- ARGV[4], the value of the change counter at the caller's last read, only the executors
-- changed since: { counter now, executors now, 'delta', snapshots... }. Without it, or when
-- the counter went back (a flushed or replaced Redis), all: { counter, count, 'full', ... }.
-- The caller keeps the rest from its last read; removed executors are not named (expiry
-- drops them from the changes), so it checks the count and reads all when it disagrees.
local whole = ARGV[3] ~= 'placement'
local fields = { 'reg', 'cpu_alloc', 'mem_alloc', 'gpu_alloc', 'registered_at', 'last_heartbeat' }
local none = {}

local function snapshot(ex)
  if whole then
    if rcall('EXISTS', k_exec(ex)) == 0 then return nil end
    return executor_reply(ex)
  end
  local values = rcall('HMGET', k_exec(ex), unpack(fields))
  if not values[1] then return nil end
  local hash = {}
  for i, name in ipairs(fields) do
    hash[#hash + 1] = name
    hash[#hash + 1] = values[i]
  end
  return { hash, rcall('HGETALL', k_exec_gpus(ex)), none }
end

local out, ids = {}, nil
if ARGV[2] ~= '' then
  ids = { ARGV[2] }
elseif not whole then
  local seq = tonumber(rcall('GET', K_EXECUTORS_SEQ) or '0')
  local since = tonumber(ARGV[4] or '')
  out = { seq, rcall('SCARD', K_EXECUTORS) }
  if since and since <= seq then
    out[3] = 'delta'
    ids = rcall('ZRANGEBYSCORE', K_EXECUTORS_CHANGED, '(' .. since, '+inf')
  else
    out[3] = 'full'
  end
end
if not ids then
  ids = rcall('SMEMBERS', K_EXECUTORS)
end
table.sort(ids)
for _, ex in ipairs(ids) do
  out[#out + 1] = snapshot(ex)
end
return out
