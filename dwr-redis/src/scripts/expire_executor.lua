-- expire_executor.lua: removes a lost executor, failing its jobs and releasing their room.
-- ARGV: prefix, executor id, 'lease' (only when its lease ran out by Redis TIME) or 'now',
-- reason, log TTL (s).
local ex, mode, reason, now = ARGV[2], ARGV[3], ARGV[4], now_ms()
local xk = k_exec(ex)
local x = rcall('HMGET', xk, 'last_heartbeat', 'lease_ms')
local hb = x[1]
if not hb then
  rcall('SREM', K_EXECUTORS, ex)
  rcall('ZREM', K_EXECUTORS_CHANGED, ex)
  return { 'ok' }
end
if mode == 'lease' and now - tonumber(hb) <= tonumber(x[2] or DEFAULT_LEASE_MS) then
  return { 'ok' }
end
local failed = { 'ok' }
for _, id in ipairs(rcall('SMEMBERS', k_exec_jobs(ex))) do
  local j = job_for_finish(id)
  local state = j[1]
  if can_become(state, S_FAILED) then
    end_attempt(id, j, S_FAILED, '', reason, '0', now, ARGV[5], 'executor_lost')
    failed[#failed + 1] = id
  end
end
-- Its hash goes: what releasing its jobs counted on it must not create it again.
exec_gone(ex)
rcall('DEL', xk, k_exec_jobs(ex), k_exec_gpus(ex), k_events(ex))
rcall('SREM', K_EXECUTORS, ex)
-- Gone, not changed: a scheduler's cache learns it from the count of executors.
rcall('ZREM', K_EXECUTORS_CHANGED, ex)
changed('x-', ex)
wake()
return failed
