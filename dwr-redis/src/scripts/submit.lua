-- submit.lua: stores a new pending job and wakes schedulers.
-- ARGV: prefix, job id, state, idempotency key ('' for none), its TTL (ms), priority, queue
-- ('' for the default), dependency type and the ids it depends on, comma-separated ('' for
-- none), then field/value pairs of the job hash but its times. The job enters its queue
-- (k_queue) at its queue key, which the hash keeps (`qk`) for a retry to re-enter with; a
-- queue besides the default is named in K_QUEUES. A job with dependencies that have not
-- all ended waits in K_BLOCKED instead, named in each open dependency's dependents; one
-- whose ended dependencies say it can never run is stored failed. The creation time is
-- Redis TIME, whatever the caller's clock said; the reply carries it, then, for a job with
-- dependencies, 'ready', 'blocked' with the counts left and not ok, or 'failed' with the
-- reason. Under a key that
-- names a job already, nothing is stored and the reply is { 'existing', id }; a dependency
-- that does not exist stores nothing: { 'unknown_dependency', id }.
local id, key = ARGV[2], ARGV[4]
if key ~= '' then
  local existing = redis.call('GET', k_idem(key))
  if existing then return { 'existing', existing } end
end
local deps = {}
for dep in string.gmatch(ARGV[9], '[^,]+') do
  if redis.call('EXISTS', k_job(dep)) == 0 then return { 'unknown_dependency', dep } end
  deps[#deps + 1] = dep
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
  unpack(ARGV, 10))
if key ~= '' then redis.call('SET', k_idem(key), id, 'PX', ARGV[5]) end
redis.call('ZADD', k_state(ARGV[3]), seq, id)
if ARGV[7] ~= '' then redis.call('SADD', K_QUEUES, ARGV[7]) end
wake()
if #deps == 0 then
  redis.call('ZADD', k_queue(ARGV[7]), qk, id)
  return { 'ok', tostring(now) }
end
-- Dependencies: those ended count at once, the job waits on the others.
local kind, left, not_ok, open, never = ARGV[8], #deps, 0, {}, nil
for _, dep in ipairs(deps) do
  local state = redis.call('HGET', k_job(dep), 'state')
  if TERMINAL[state] then
    local verdict, a, b = dep_verdict(kind, left, not_ok, dep, state == S_SUCCEEDED)
    if verdict == 'wait' then
      left, not_ok = a, b
    elseif verdict == 'ready' then
      left = 0
    else
      never = a
      break
    end
  else
    open[#open + 1] = dep
  end
end
redis.call('HSET', jk, 'dependency', kind)
if never then
  finish_job(id, job_for_finish(id), S_FAILED, '', never, '0', now, '0')
  return { 'ok', tostring(now), 'failed', never }
end
if left == 0 then
  redis.call('HSET', jk, 'ready_at', now)
  redis.call('ZADD', k_queue(ARGV[7]), qk, id)
  return { 'ok', tostring(now), 'ready' }
end
redis.call('HSET', jk, 'deps_left', left, 'deps_not_ok', not_ok)
redis.call('ZADD', K_BLOCKED, seq, id)
for _, dep in ipairs(open) do
  redis.call('SADD', k_dependents(dep), id)
  redis.call('HSET', k_job(dep), 'has_dependents', '1')
end
return { 'ok', tostring(now), 'blocked', tostring(left), tostring(not_ok) }
