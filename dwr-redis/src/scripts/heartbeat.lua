-- heartbeat.lua: refreshes liveness and observed usage; never touches allocations.
-- ARGV: prefix, executor id, now (ms), usage JSON.
local xk = k_exec(ARGV[2])
if redis.call('EXISTS', xk) == 0 then return { 'executor_not_found' } end
redis.call('HSET', xk, 'last_heartbeat', ARGV[3], 'usage', ARGV[4])
return { 'ok' }
