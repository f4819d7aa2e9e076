-- append_logs.lua: appends a batch of lines to job_logs:{id}, caps the list, counts lines
-- ever written (so follower offsets stay valid after trimming), wakes followers.
-- ARGV: prefix, job id, cap (lines, 0 = none), log TTL (s), then the lines.
local id, cap, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HGET', k_job(id), 'state')
if not state then return { 'job_not_found' } end
local n = #ARGV - 4
if n == 0 then return { 'ok' } end
local lk, tk = k_logs(id), k_log_total(id)
-- Lengths before the push: a list written by something else than this script is counted.
local total = tonumber(redis.call('GET', tk) or '0')
local len = redis.call('LLEN', lk)
if total < len then total = len end
-- unpack() is bounded by the Lua stack: push in chunks.
local i = 5
while i <= #ARGV do
  local last = math.min(i + 999, #ARGV)
  redis.call('RPUSH', lk, unpack(ARGV, i, last))
  i = last + 1
end
redis.call('SET', tk, total + n)
if cap > 0 then redis.call('LTRIM', lk, -cap, -1) end
if TERMINAL[state] and ttl > 0 then
  redis.call('EXPIRE', lk, ttl)
  redis.call('EXPIRE', tk, ttl)
end
redis.call('PUBLISH', ch_logs(id), 'lines')
return { 'ok' }
