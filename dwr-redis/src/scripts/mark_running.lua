-- mark_running.lua: assigned -> running, only by the executor the job is assigned to.
-- ARGV: prefix, job id, executor id, now (ms).
local id, ex, now = ARGV[2], ARGV[3], ARGV[4]
local jk = k_job(id)
local j = redis.call('HMGET', jk, 'state', 'executor', 'seq')
local state = j[1]
if not state then return { 'job_not_found' } end
if TERMINAL[state] then return { 'terminal', state } end
if state ~= 'assigned' or j[2] ~= ex then return { 'invalid', state } end
redis.call('HSET', jk, 'state', 'running', 'started_at', now, 'updated_at', now)
move_state(id, 'assigned', 'running', j[3])
return { 'ok' }
