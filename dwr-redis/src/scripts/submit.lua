-- submit.lua: stores a new pending job and wakes schedulers.
-- ARGV: prefix, job id, state, then field/value pairs of the job hash.
local id = ARGV[2]
local jk = k_job(id)
if redis.call('EXISTS', jk) == 1 then
  return { 'job_exists' }
end
local seq = redis.call('INCR', K_SEQ)
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', jk, 'seq', seq, unpack(fields))
redis.call('ZADD', k_state(ARGV[3]), seq, id)
wake()
return { 'ok' }
