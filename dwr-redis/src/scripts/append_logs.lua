-- append_logs.lua: appends a batch of lines to job_logs:{id}, caps the list, counts lines
-- ever written in the job hash's `log_total` (so follower offsets stay valid after
-- trimming), wakes followers.
-- ARGV: prefix, job id, attempt (an executor's output: refused unless it is the job's
-- current attempt and the job holds resources; '' for none), cap (lines, 0 = none), log TTL
-- (s), then the lines.
local id, cap, ttl = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
local jk = k_job(id)
local j = redis.call('HMGET', jk, 'state', 'log_total', 'attempt')
local state = j[1]
if not state then return { 'job_not_found' } end
local refused = stale(ARGV[3], state, j[3], true)
if refused then return refused end
local n = #ARGV - 5
if n == 0 then return { 'ok' } end
local lk = k_logs(id)
-- Lengths before the push: a list written by something else than this script is counted.
local total = tonumber(j[2] or '0')
local len = redis.call('LLEN', lk)
if total < len then total = len end
-- unpack() is bounded by the Lua stack: push in chunks.
local i = 6
while i <= #ARGV do
  local last = math.min(i + 999, #ARGV)
  redis.call('RPUSH', lk, unpack(ARGV, i, last))
  i = last + 1
end
redis.call('HSET', jk, 'log_total', total + n)
if cap > 0 then redis.call('LTRIM', lk, -cap, -1) end
if TERMINAL[state] and ttl > 0 then redis.call('EXPIRE', lk, ttl) end
redis.call('PUBLISH', ch_logs(id), 'lines')
return { 'ok' }
