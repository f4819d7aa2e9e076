-- finish.lua: moves a job to a terminal state and releases what it held, once. Idempotent.
-- ARGV: prefix, job id, terminal state, exit code or '', attempt (an executor's report; ''
-- for none), then, each left out when it and those after it are their default: log TTL (s,
-- 0 = none; DEFAULT_LOG_TTL_S), reason ('' for none), oom ('0'/'1'), retry cause ('' for
-- none).
-- A failed attempt its retry policy covers sends the job back to pending: { 'retry' }.
local id, to = ARGV[2], ARGV[3]
local j = job_for_finish(id)
local state = j[1]
if not state then return { 'job_not_found' } end
-- An executor reports on its attempt only while it is under way (or, idempotently, once it
-- made the job terminal): not about an older one, nor one that ended in a retry.
if ARGV[5] ~= '' then
  local current = j[9] or '0'
  local refused = stale(ARGV[5], state, current, false)
  if refused then return refused end
  if state == S_PENDING then return { 'stale', state, current } end
end
-- Deliberately not can_become: a terminal job reports its state, so that a repeated report
-- (an agent retrying after a lost answer) succeeds.
if TERMINAL[state] then return { 'unchanged', state } end
-- Only to an end: `running` is a legal move from `assigned`, but not one a finish makes.
if not TERMINAL[to] or not can_become(state, to) then return { 'invalid', state } end
if end_attempt(id, j, to, ARGV[4], ARGV[7] or '', ARGV[8] or '0', now_ms(),
    ARGV[6] or DEFAULT_LOG_TTL_S, ARGV[9] or '') == 'retry' then
  return { 'retry' }
end
return { 'ok' }
