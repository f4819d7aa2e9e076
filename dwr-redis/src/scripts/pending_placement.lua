-- pending_placement.lua: the first pending jobs of the queue (K_QUEUE, by queue key) as a
-- scheduling pass reads them: a job
-- with a large spec (stored with its placement view beside it, `place`) as that view and
-- without its `attempts`, so that a pass over a long queue of jobs with large commands or
-- environments reads little; any other job whole (its snapshot then spares the commit a
-- read).
-- ARGV: prefix, limit (> 0). Returns the hashes as flat arrays, in queue order.
local limit = tonumber(ARGV[2])
-- Pending jobs stored before the queue existed join it at their sequence and the default
-- priority (once: afterwards both sets hold the same jobs).
if redis.call('ZCARD', K_QUEUE) < redis.call('ZCARD', k_state(S_PENDING)) then
  local pending = redis.call('ZRANGE', k_state(S_PENDING), 0, -1, 'WITHSCORES')
  for i = 1, #pending, 2 do
    if not redis.call('ZSCORE', K_QUEUE, pending[i]) then
      redis.call('ZADD', K_QUEUE, queue_key(pending[i + 1], DEFAULT_PRIORITY), pending[i])
    end
  end
end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', K_QUEUE, 0, limit - 1)) do
  local hash = redis.call('HGETALL', k_job(id))
  if #hash > 0 then
    local place
    for i = 1, #hash, 2 do
      if hash[i] == 'place' then place = hash[i + 1] end
    end
    local job = place and {} or hash
    for i = 1, place and #hash or 0, 2 do
      local field = hash[i]
      if field == 'spec' and place then
        job[#job + 1] = 'spec'
        job[#job + 1] = place
      elseif field ~= 'attempts' and field ~= 'place' then
        job[#job + 1] = field
        job[#job + 1] = hash[i + 1]
      end
    end
    out[#out + 1] = job
  end
end
return out
