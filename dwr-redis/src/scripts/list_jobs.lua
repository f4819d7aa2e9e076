-- list_jobs.lua: one page of jobs from a per-state (or the all-jobs) sorted set, read with
-- their hashes in one round trip. ARGV: prefix, state or 'all', offset, limit (> 0),
-- 'rev' (newest first) or 'fwd' (oldest first).
local key = K_ALL
if ARGV[2] ~= 'all' then key = k_state(ARGV[2]) end
local start = tonumber(ARGV[3])
local stop = start + tonumber(ARGV[4]) - 1
local ids
if ARGV[5] == 'rev' then
  ids = redis.call('ZREVRANGE', key, start, stop)
else
  ids = redis.call('ZRANGE', key, start, stop)
end
local out = {}
for _, id in ipairs(ids) do
  -- An index entry without its hash (deleted by hand) is skipped, not returned empty.
  local job = redis.call('HGETALL', k_job(id))
  if #job > 0 then out[#out + 1] = job end
end
return out
