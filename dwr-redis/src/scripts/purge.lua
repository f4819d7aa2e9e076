-- purge.lua: deletes up to a batch of terminal jobs finished before a time, with their logs.
-- ARGV: prefix, age (ms: jobs that finished longer ago than this by Redis TIME), batch
-- size. Returns { deleted, more }: how many jobs were deleted, and 1 when the batch ran out
-- before the due jobs did.
local before, batch = now_ms() - tonumber(ARGV[2]), tonumber(ARGV[3])
local deleted, taken = 0, 0

local function delete(id, state)
  redis.call('ZREM', k_state(state), id)
  redis.call('DEL', k_job(id), k_logs(id))
  redis.call('PUBLISH', ch_logs(id), 'purged')
  deleted = deleted + 1
end

-- Earlier versions also kept an index of all jobs, which nothing reads any more.
redis.call('UNLINK', K_ALL_LEGACY)

-- Jobs finished under an earlier version, indexed in a sorted set by finish time.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_FINISHED_LEGACY, '-inf', before,
  'LIMIT', 0, batch)) do
  redis.call('ZREM', K_FINISHED_LEGACY, id)
  taken = taken + 1
  local state = redis.call('HGET', k_job(id), 'state')
  if state then delete(id, state) end
end

-- The finish order list, from its head while the head is due. Finish times come from
-- Redis TIME, so the order agrees with them (but across a step of the server's clock, or
-- jobs finished by an earlier version with its callers' clocks: then a job stamped later
-- than one behind it holds that one back until it is due itself).
while taken < batch do
  local id = redis.call('LINDEX', K_FINISH_ORDER, 0)
  if not id then break end
  local j = redis.call('HMGET', k_job(id), 'state', 'finished_at')
  if j[1] and tonumber(j[2] or '0') > before then break end
  redis.call('LPOP', K_FINISH_ORDER)
  taken = taken + 1
  -- An entry without its hash (deleted by hand) just goes.
  if j[1] then delete(id, j[1]) end
end
return { deleted, taken == batch and 1 or 0 }
