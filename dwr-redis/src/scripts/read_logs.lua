-- read_logs.lua: the lines of a job from absolute line number `from` on, with its state.
-- Line numbers count every line ever appended, so they stay valid when the cap trims the
-- oldest lines. ARGV: prefix, job id, from. Returns { state or '', { lines } }.
local id, from = ARGV[2], tonumber(ARGV[3])
local j = rcall('HMGET', k_job(id), 'state', 'log_total')
local state = j[1] or ''
local lk = k_logs(id)
local len = rcall('LLEN', lk)
local total = tonumber(j[2] or '0')
if total < len then total = len end
local first = total - len
if from < first then from = first end
if from >= total then return { state, {} } end
return { state, rcall('LRANGE', lk, from - first, -1) }
