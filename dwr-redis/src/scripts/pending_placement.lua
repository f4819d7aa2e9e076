-- pending_placement.lua: the heads of the queues as a scheduling pass reads them: the first
-- pending jobs of each queue (k_queue, by queue key), the default queue then the others by
-- name, each in its order. Only which jobs, not the jobs: for each, its id, its queue key
-- (as scored) and whether it has a placement view beside a large spec (`place`, and a
-- member of K_WITH_VIEW: '1' or '0'); the caller reads the hashes with plain commands
-- (jobs.rs), which costs the server a fraction of moving every field through Lua and back.
-- ARGV: prefix, limit per queue (> 0). Returns { requeued, id, qk, place, id, qk, place,
-- ... }: first how many times a job went back to a queue (K_JOB_COUNTS `requeued`, which
-- tells the caller whether the hashes it read of queued jobs still hold), then the heads.
local limit = tonumber(ARGV[2])
local queues = rcall('SMEMBERS', K_QUEUES)
table.sort(queues)
table.insert(queues, 1, DEFAULT_QUEUE)
-- Pending jobs stored before the queues existed join the default one at their sequence
-- and the default priority (once: afterwards the queues and the jobs waiting for their
-- dependencies hold exactly the pending jobs).
local queued = rcall('ZCARD', K_BLOCKED)
for _, q in ipairs(queues) do queued = queued + rcall('ZCARD', k_queue(q)) end
if queued < rcall('ZCARD', k_state(S_PENDING)) then
  local pending = rcall('ZRANGE', k_state(S_PENDING), 0, -1, 'WITHSCORES')
  for i = 1, #pending, 2 do
    local id = pending[i]
    if not rcall('ZSCORE', k_queue(rcall('HGET', k_job(id), 'queue')), id)
        and not rcall('ZSCORE', K_BLOCKED, id) then
      rcall('ZADD', K_QUEUE, queue_key(pending[i + 1], DEFAULT_PRIORITY), id)
    end
  end
end
-- Jobs under way indexed by an earlier version, in a sorted set each for assigned and
-- running, join K_UNDER_WAY, and the running jobs are counted again from the states of all
-- of them (once: one EXISTS a pass afterwards). A job of those sets or of K_UNDER_WAY no
-- longer under way leaves them.
local legacy = { k_state(S_ASSIGNED), k_state(S_RUNNING) }
if rcall('EXISTS', legacy[1], legacy[2]) > 0 then
  local seen, running = {}, 0
  for _, key in ipairs({ K_UNDER_WAY, legacy[1], legacy[2] }) do
    local members = rcall('ZRANGE', key, 0, -1, 'WITHSCORES')
    for i = 1, #members, 2 do
      local id = members[i]
      if not seen[id] then
        seen[id] = true
        local state = rcall('HGET', k_job(id), 'state')
        if not HOLDS_RESOURCES[state] then
          rcall('ZREM', K_UNDER_WAY, id)
        elseif key ~= K_UNDER_WAY then
          rcall('ZADD', K_UNDER_WAY, members[i + 1], id)
        end
        if state == S_RUNNING then running = running + 1 end
      end
    end
  end
  rcall('DEL', legacy[1], legacy[2])
  rcall('HSET', K_JOB_COUNTS, 'running', running)
end
-- Which heads have a placement view: asked of K_WITH_VIEW, and not at all while no job has
-- one (a spec over 1 KiB is rare). SISMEMBER, not SMISMEMBER: Redis 6.0 has no SMISMEMBER.
local views = rcall('SCARD', K_WITH_VIEW) > 0
local out = { rcall('HGET', K_JOB_COUNTS, 'requeued') or '0' }
for _, q in ipairs(queues) do
  local head = rcall('ZRANGE', k_queue(q), 0, limit - 1, 'WITHSCORES')
  for n = 1, #head, 2 do
    local id = head[n]
    out[#out + 1] = id
    out[#out + 1] = head[n + 1]
    out[#out + 1] = views and rcall('SISMEMBER', K_WITH_VIEW, id) == 1 and '1' or '0'
  end
end
return out
