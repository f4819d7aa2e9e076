-- submit.lua: stores a new pending job and wakes schedulers.
-- ARGV: prefix, job id, '1' when the fields hold a placement view (`place`, else ''),
-- idempotency key ('' for none), its TTL (ms), priority, queue ('' for the default),
-- dependency type and the ids it depends on (jobs or arrays), comma-separated ('' for
-- none), then field/value pairs of the job hash but its id, state and times. See
-- store_job: the job enters its queue, or, while dependencies have not ended, K_BLOCKED;
-- one whose ended dependencies say it can never run is stored failed. The creation time
-- is Redis TIME, whatever the caller's clock said; the reply carries it, then what
-- store_job said of the dependencies. Under a key that names a job already, nothing is
-- stored and the reply is { 'existing', id }; a dependency that does not exist stores
-- nothing: { 'unknown_dependency', id }.
local id, key = ARGV[2], ARGV[4]
local existing = idempotent(key)
if existing then return { 'existing', existing } end
local deps, unknown = dependencies(ARGV[9])
if not deps then return { 'unknown_dependency', unknown } end
if rcall('EXISTS', k_job(id)) == 1 then return { 'job_exists' } end
if key ~= '' then rcall('SET', k_idem(key), id, 'PX', ARGV[5]) end
local now = now_ms()
local said, a, b = store_job(id, ARGV[6], ARGV[7], ARGV[8], deps, ARGV, 10, ARGV[3] == '1',
  now)
if said == 'blocked' then return { 'ok', now_s(), said, tostring(a), tostring(b) } end
if said then return { 'ok', now_s(), said, a } end
return { 'ok', now_s() }
