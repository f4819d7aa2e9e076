-- submit.lua: stores a new pending job and wakes schedulers.
-- ARGV: prefix, job id, state, idempotency key ('' for none), its TTL (ms), priority, queue
-- ('' for the default), then field/value pairs of the job hash but its times. The job
-- enters its queue (k_queue) at its queue key, which the hash keeps (`qk`) for a retry to
-- re-enter with; a queue besides the default is named in K_QUEUES. The creation time is Redis TIME, whatever the caller's clock said;
-- the reply carries it. Under a key that names a job already, nothing is stored and the
-- reply is { 'existing', id }.
local id, key = ARGV[2], ARGV[4]
if key ~= '' then
  local existing = redis.call('GET', k_idem(key))
  if existing then return { 'existing', existing } end
end
local jk = k_job(id)
-- HSETNX checks that the id is free and creates the hash in one key look-up (every job
-- hash has its `id`).
if redis.call('HSETNX', jk, 'id', id) == 0 then
  return { 'job_exists' }
end
local seq = redis.call('INCR', K_SEQ)
local now = now_ms()
local qk = queue_key(seq, ARGV[6])
redis.call('HSET', jk, 'seq', seq, 'qk', qk, 'created_at', now, 'updated_at', now,
  unpack(ARGV, 8))
if key ~= '' then redis.call('SET', k_idem(key), id, 'PX', ARGV[5]) end
redis.call('ZADD', k_state(ARGV[3]), seq, id)
redis.call('ZADD', k_queue(ARGV[7]), qk, id)
if ARGV[7] ~= '' then redis.call('SADD', K_QUEUES, ARGV[7]) end
wake()
return { 'ok', tostring(now) }
