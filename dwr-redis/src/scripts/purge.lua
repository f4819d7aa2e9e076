-- purge.lua: deletes up to a batch of terminal jobs finished before a time, with their logs.
-- ARGV: prefix, before (ms, exclusive), batch size. Returns how many were deleted.
local ids = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', '(' .. ARGV[2], 'LIMIT', 0,
  tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local state = redis.call('HGET', k_job(id), 'state')
  if state then redis.call('ZREM', k_state(state), id) end
  redis.call('ZREM', K_FINISHED, id)
  redis.call('DEL', k_job(id), k_logs(id))
  redis.call('PUBLISH', ch_logs(id), 'purged')
end
return #ids
