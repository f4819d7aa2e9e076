-- common.lua: helpers shared by every script (prepended after the generated key prelude).
-- Every script gets the key prefix as ARGV[1]; the key functions come from keys.rs.

-- The legal lifecycle transitions, a mirror of dwr_core::JobState::can_become.
local LEGAL = {
  pending = { assigned = true, failed = true, aborted = true },
  assigned = { running = true, failed = true, aborted = true },
  running = { succeeded = true, failed = true, aborted = true },
}
local TERMINAL = { succeeded = true, failed = true, aborted = true }

-- Sets (or, for an empty value, deletes) an optional field of a hash.
local function hset_opt(key, field, value)
  if value == nil or value == '' then
    redis.call('HDEL', key, field)
  else
    redis.call('HSET', key, field, value)
  end
end

-- Moves a job between the per-state sorted sets, keeping its arrival sequence as score.
local function move_state(id, from, to)
  local seq = redis.call('HGET', k_job(id), 'seq')
  redis.call('ZREM', k_state(from), id)
  redis.call('ZADD', k_state(to), seq, id)
end

-- Gives back what job `id` holds on its executor. Exactly once: the SREM from the
-- executor's job set is the token, whichever terminal transition gets there first.
local function release(id)
  local jk = k_job(id)
  local ex = redis.call('HGET', jk, 'executor')
  if not ex then return end
  if redis.call('SREM', k_exec_jobs(ex), id) == 0 then return end
  local j = redis.call('HMGET', jk, 'cpu', 'mem', 'ngpu', 'gpu_ids')
  local xk = k_exec(ex)
  -- "0 - n", not "-n": Lua formats -0 as "-0", which HINCRBY refuses.
  redis.call('HINCRBY', xk, 'cpu_alloc', 0 - tonumber(j[1]))
  redis.call('HINCRBY', xk, 'mem_alloc', 0 - tonumber(j[2]))
  redis.call('HINCRBY', xk, 'gpu_alloc', 0 - tonumber(j[3]))
  if j[4] then
    local gk = k_exec_gpus(ex)
    for _, uuid in ipairs(cjson.decode(j[4])) do
      if redis.call('HGET', gk, uuid) == id then
        redis.call('HDEL', gk, uuid)
      end
    end
  end
end

-- Moves job `id` from `from` to the terminal state `to`, releasing what it held, stamping
-- the time, starting the log TTL and waking schedulers and log followers.
local function finish_job(id, from, to, exit_code, reason, oom, now, log_ttl)
  local jk = k_job(id)
  release(id)
  redis.call('HSET', jk, 'state', to, 'updated_at', now, 'finished_at', now, 'oom', oom)
  hset_opt(jk, 'exit_code', exit_code)
  hset_opt(jk, 'reason', reason)
  redis.call('HDEL', jk, 'abort')
  move_state(id, from, to)
  redis.call('ZADD', K_FINISHED, now, id)
  local ttl = tonumber(log_ttl)
  if ttl > 0 then
    redis.call('EXPIRE', k_logs(id), ttl)
    redis.call('EXPIRE', k_log_total(id), ttl)
  end
  redis.call('PUBLISH', CH_WAKE, 'finish')
  redis.call('PUBLISH', ch_logs(id), 'end')
end

-- An executor as three parts: its hash, its GPU holders, its job ids.
local function executor_reply(ex)
  return {
    redis.call('HGETALL', k_exec(ex)),
    redis.call('HGETALL', k_exec_gpus(ex)),
    redis.call('SMEMBERS', k_exec_jobs(ex)),
  }
end
