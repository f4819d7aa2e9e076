-- expire_executor.lua: removes a lost executor, failing its jobs and releasing their room.
-- ARGV: prefix, executor id, stale_before (ms) or '' for any, reason, now (ms), log TTL (s).
local ex, stale_before, reason, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local xk = k_exec(ex)
local hb = redis.call('HGET', xk, 'last_heartbeat')
if not hb then
  redis.call('SREM', K_EXECUTORS, ex)
  return { 'ok' }
end
if stale_before ~= '' and tonumber(hb) >= tonumber(stale_before) then
  return { 'ok' }
end
local failed = { 'ok' }
for _, id in ipairs(redis.call('SMEMBERS', k_exec_jobs(ex))) do
  local j = job_for_finish(id)
  local state = j[1]
  if state and LEGAL[state] and LEGAL[state]['failed'] then
    finish_job(id, j, 'failed', '', reason, '0', now, ARGV[6])
    failed[#failed + 1] = id
  end
end
redis.call('DEL', xk, k_exec_jobs(ex), k_exec_gpus(ex), k_events(ex))
redis.call('SREM', K_EXECUTORS, ex)
wake()
return failed
