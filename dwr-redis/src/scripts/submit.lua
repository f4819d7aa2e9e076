-- submit.lua: stores a new pending job and wakes schedulers.
-- ARGV: prefix, job id, state, then field/value pairs of the job hash. The creation time is
-- Redis TIME, whatever the caller's clock said; the reply carries it.
local id = ARGV[2]
local jk = k_job(id)
-- HSETNX checks that the id is free and creates the hash in one key look-up (every job
-- hash has its `id`).
if redis.call('HSETNX', jk, 'id', id) == 0 then
  return { 'job_exists' }
end
local seq = redis.call('INCR', K_SEQ)
redis.call('HSET', jk, 'seq', seq, unpack(ARGV, 4))
local now = now_ms()
redis.call('HSET', jk, 'created_at', now, 'updated_at', now)
redis.call('ZADD', k_state(ARGV[3]), seq, id)
wake()
return { 'ok', tostring(now) }
