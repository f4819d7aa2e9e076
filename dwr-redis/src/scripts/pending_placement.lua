-- pending_placement.lua: the oldest pending jobs as a scheduling pass reads them: a job
-- with a large spec (stored with its placement view beside it, `place`) as that view and
-- without its `attempts`, so that a pass over a long queue of jobs with large commands or
-- environments reads little; any other job whole (its snapshot then spares the commit a
-- read).
-- ARGV: prefix, limit (> 0). Returns the hashes as flat arrays, oldest first.
local limit = tonumber(ARGV[2])
local out = {}
for _, id in ipairs(redis.call('ZRANGE', k_state(S_PENDING), 0, limit - 1)) do
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
