-- heartbeat.lua: refreshes liveness and observed usage; never touches allocations.
-- ARGV: prefix, executor id, usage JSON. Renews the lease: the last heartbeat is Redis TIME.
local xk = k_exec(ARGV[2])
if rcall('EXISTS', xk) == 0 then return { 'executor_not_found' } end
rcall('HSET', xk, 'last_heartbeat', now_s(), 'usage', ARGV[3])
exec_changed(ARGV[2])
return { 'ok' }
