-- register_executor.lua: registers an executor, or refreshes a known one keeping its
-- allocations, GPU holders and jobs. ARGV: prefix, executor id, registration JSON, ip,
-- cpu total, memory total, gpu total, lease (ms), then the GPU UUIDs. The lease starts
-- now, by Redis TIME.
local ex, now = ARGV[2], now_ms()
local xk = k_exec(ex)
if rcall('EXISTS', xk) == 1 then
  for _, field in ipairs(rcall('HKEYS', xk)) do
    if string.sub(field, 1, 4) == 'dev:' then rcall('HDEL', xk, field) end
  end
else
  rcall('HSET', xk, 'cpu_alloc', 0, 'mem_alloc', 0, 'gpu_alloc', 0, 'registered_at', now_s())
end
rcall('HSET', xk, 'reg', ARGV[3], 'ip', ARGV[4], 'cpu_total', ARGV[5],
  'mem_total', ARGV[6], 'gpu_total', ARGV[7], 'lease_ms', ARGV[8], 'last_heartbeat', now_s())
for i = 9, #ARGV do
  rcall('HSET', xk, 'dev:' .. ARGV[i], '1')
end
rcall('SADD', K_EXECUTORS, ex)
exec_changed(ex)
changed('x+', ex)
wake()
return { 'ok', executor_reply(ex) }
