-- submit.lua: stores a new pending job and wakes schedulers.
-- ARGV: prefix, job id, the hash's spec, cpu and mem; the GPU count (left out, or '0', for
-- none: the hash then has no ngpu); then, left out for a job that has none of them (a job
-- with no key, view, priority, queue, dependency or other field): '1' when the fields hold a placement view (`place`, else ''), idempotency key ('' for
-- none), its TTL (ms), priority, queue ('' for the default), dependency type and the ids it
-- depends on (jobs or arrays), comma-separated ('' for none), then field/value pairs of the
-- job hash but its id, state and times. See store_job: the job enters its queue, or, while
-- dependencies have not ended, K_BLOCKED; one whose ended dependencies say it can never run
-- is stored failed. The creation time is Redis TIME, whatever the caller's clock said; the
-- reply carries it, then what store_job said of the dependencies. Under a key that names a
-- job already, nothing is stored and the reply is { 'existing', id }; a dependency that does
-- not exist stores nothing: { 'unknown_dependency', id }.
local id, key = ARGV[2], ARGV[8] or ''
local existing = idempotent(key)
if existing then return { 'existing', existing } end
local deps, unknown = dependencies(ARGV[13] or '')
if not deps then return { 'unknown_dependency', unknown } end
if rcall('EXISTS', k_job(id)) == 1 then return { 'job_exists' } end
if key ~= '' then rcall('SET', k_idem(key), id, 'PX', ARGV[9]) end
local now = now_ms()
local fields = { 'spec', ARGV[3], 'cpu', ARGV[4], 'mem', ARGV[5] }
local ngpu = ARGV[6]
if ngpu and ngpu ~= '0' then
  fields[7], fields[8] = 'ngpu', ngpu
end
for i = 14, #ARGV do fields[#fields + 1] = ARGV[i] end
local said, a, b = store_job(id, ARGV[10] or DEFAULT_PRIORITY, ARGV[11] or '',
  ARGV[12] or 'afterok', deps, fields, 1, ARGV[7] == '1', now)
if said == 'blocked' then return { 'ok', now_s(), said, tostring(a), tostring(b) } end
if said then return { 'ok', now_s(), said, a } end
return { 'ok', now_s() }
