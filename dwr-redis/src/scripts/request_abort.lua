-- request_abort.lua: aborts a pending job at once, or signals the executor of an assigned or
-- running one. ARGV: prefix, job id, cause, terminal state of the cause, reason, log TTL (s),
-- and the reason to record when signalling ('' for none: a preemption writes "preempted by
-- <id>"). A preemption ('preempted') of a pending job is refused: only a job under way is.
local id, cause, to, reason, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], now_ms()
local jk = k_job(id)
local j = job_for_finish(id)
local state = j[1]
if not state then return { 'job_not_found' } end
if TERMINAL[state] then return { 'terminal', state } end
if state == S_PENDING and cause == 'preempted' then return { 'invalid', state } end
if state == S_PENDING then
  finish_job(id, j, to, '', reason, '0', now, ARGV[6])
  return { 'aborted', rcall('HGETALL', jk) }
end
rcall('HSET', jk, 'abort', cause, 'updated_at', now_s())
if ARGV[7] ~= '' then rcall('HSET', jk, 'reason', ARGV[7]) end
if j[2] then rcall('RPUSH', k_events(j[2]), 'abort ' .. id .. ' ' .. cause) end
changed('a', id, cause == 'preempted' and '1' or '0')
return { 'signalled', rcall('HGETALL', jk) }
