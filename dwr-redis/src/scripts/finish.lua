-- finish.lua: moves a job to a terminal state and releases what it held, once. Idempotent.
-- ARGV: prefix, job id, terminal state, exit code or '', reason or '', oom '0'/'1', attempt
-- (an executor's report; '' for none), log TTL (s, 0 = none).
local id, to = ARGV[2], ARGV[3]
local j = job_for_finish(id)
local state = j[1]
if not state then return { 'job_not_found' } end
if ARGV[7] ~= '' then
  local refused = stale(ARGV[7], state, redis.call('HGET', k_job(id), 'attempt'), false)
  if refused then return refused end
end
if TERMINAL[state] then return { 'unchanged', state } end
if not (LEGAL[state] and LEGAL[state][to]) then return { 'invalid', state } end
finish_job(id, j, to, ARGV[4], ARGV[5], ARGV[6], now_ms(), ARGV[8])
return { 'ok' }
