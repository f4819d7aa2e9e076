-- append_logs.lua: appends a batch of lines to job_logs:{id}, caps the list, counts lines
-- ever written in the job hash's `log_total` (so follower offsets stay valid after
-- trimming), wakes followers.
-- The byte cap: `log_bytes` counts the bytes kept; the first line that would pass the cap
-- and every line after it are dropped, counted in `log_cut_bytes` / `log_cut_lines`, and
-- the log ends with one marker line saying so (rewritten in place as more is dropped; the
-- text is dwr_core::log_cap_marker's).
-- ARGV: prefix, job id, attempt (an executor's output: refused unless it is the job's
-- current attempt and the job holds resources; '' for none), cap (lines, 0 = none), log TTL
-- (s), byte cap (0 = none), then the lines.
local id, cap, ttl, max_bytes = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6])
local FIRST = 7
local jk = k_job(id)
local j = rcall('HMGET', jk, 'state', 'log_total', 'attempt', 'log_bytes',
  'log_cut_bytes', 'log_cut_lines')
local state = j[1]
if not state then return { 'job_not_found' } end
local refused = stale(ARGV[3], state, j[3], true)
if refused then return refused end
if #ARGV < FIRST then return { 'ok' } end
local lk = k_logs(id)
local bytes = tonumber(j[4] or '0')
local cut_bytes, cut_lines = tonumber(j[5] or '0'), tonumber(j[6] or '0')
-- The lines kept: up to the byte cap, and none once it was reached.
local last = #ARGV
if cut_lines > 0 then
  last = FIRST - 1
elseif max_bytes > 0 then
  for i = FIRST, #ARGV do
    local len = #ARGV[i]
    if bytes + len > max_bytes then
      last = i - 1
      break
    end
    bytes = bytes + len
  end
end
local n = last - FIRST + 1
-- Lengths before the push: a list written by something else than this script is counted.
local total = tonumber(j[2] or '0')
local len = rcall('LLEN', lk)
if total < len then total = len end
-- unpack() is bounded by the Lua stack: push in chunks.
local i = FIRST
while i <= last do
  local upto = math.min(i + 999, last)
  rcall('RPUSH', lk, unpack(ARGV, i, upto))
  i = upto + 1
end
if last < #ARGV then
  local first_cut = cut_lines == 0
  for k = last + 1, #ARGV do
    cut_bytes = cut_bytes + #ARGV[k]
  end
  cut_lines = cut_lines + (#ARGV - last)
  local marker = string.format(
    '[dwr] log cap of %d bytes reached: %d more bytes in %d lines were dropped',
    max_bytes, cut_bytes, cut_lines)
  if first_cut or rcall('LLEN', lk) == 0 then
    rcall('RPUSH', lk, marker)
    n = n + 1
  else
    rcall('LSET', lk, -1, marker)
  end
  rcall('HSET', jk, 'log_cut_bytes', cut_bytes, 'log_cut_lines', cut_lines)
end
rcall('HSET', jk, 'log_total', total + n, 'log_bytes', bytes)
if cap > 0 then rcall('LTRIM', lk, -cap, -1) end
if TERMINAL[state] and ttl > 0 then rcall('EXPIRE', lk, ttl) end
if n > 0 or last < #ARGV then publish_log(id, 'lines') end
return { 'ok' }
