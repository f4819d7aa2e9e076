-- mark_running.lua: assigned -> running, only by the executor the job is assigned to.
-- ARGV: prefix, job id, executor id, attempt. Refused when the attempt is not the job's.
local id, ex = ARGV[2], ARGV[3]
local jk = k_job(id)
local j = rcall('HMGET', jk, 'state', 'executor', 'attempt')
local state = j[1]
if not state then return { 'job_not_found' } end
local now = now_ms()
if TERMINAL[state] then return { 'terminal', state } end
if not can_become(state, S_RUNNING) or j[2] ~= ex then return { 'invalid', state } end
local refused = stale(ARGV[4], state, j[3], false)
if refused then return refused end
rcall('HSET', jk, 'state', S_RUNNING, 'started_at', now_s())
-- From assigned: the job stays in the index of the jobs under way (no sequence needed).
move_state(id, state, S_RUNNING)
return { 'ok' }
