-- pending_placement.lua: the first pending jobs of each queue (k_queue, by queue key) as a
-- scheduling pass reads them: a job with a large spec (stored with its placement view beside
-- it, `place`) as that view and without its `attempts`, so that a pass over a long queue of
-- jobs with large commands or environments reads little; any other job whole (its snapshot
-- then spares the commit a read). Each job's hash ends with its queue key (`qk`, as scored).
-- ARGV: prefix, limit per queue (> 0). Returns the hashes as flat arrays, the default queue
-- then the others by name, each in its order.
local limit = tonumber(ARGV[2])
local queues = redis.call('SMEMBERS', K_QUEUES)
table.sort(queues)
table.insert(queues, 1, DEFAULT_QUEUE)
-- Pending jobs stored before the queues existed join the default one at their sequence
-- and the default priority (once: afterwards the queues and the jobs waiting for their
-- dependencies hold exactly the pending jobs).
local queued = redis.call('ZCARD', K_BLOCKED)
for _, q in ipairs(queues) do queued = queued + redis.call('ZCARD', k_queue(q)) end
if queued < redis.call('ZCARD', k_state(S_PENDING)) then
  local pending = redis.call('ZRANGE', k_state(S_PENDING), 0, -1, 'WITHSCORES')
  for i = 1, #pending, 2 do
    local id = pending[i]
    if not redis.call('ZSCORE', k_queue(redis.call('HGET', k_job(id), 'queue')), id)
        and not redis.call('ZSCORE', K_BLOCKED, id) then
      redis.call('ZADD', K_QUEUE, queue_key(pending[i + 1], DEFAULT_PRIORITY), id)
    end
  end
end
local out = {}
for _, q in ipairs(queues) do
  local head = redis.call('ZRANGE', k_queue(q), 0, limit - 1, 'WITHSCORES')
  for n = 1, #head, 2 do
    local id = head[n]
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
      job[#job + 1] = 'qk'
      job[#job + 1] = head[n + 1]
      out[#out + 1] = job
    end
  end
end
return out
