-- common.lua: helpers shared by every script (prepended after the generated preludes).
-- Every script gets the key prefix as ARGV[1] (begin_call, at the end, takes it); the key
-- functions come from keys.rs, the lifecycle (S_PENDING ... S_ABORTED, STATES, TERMINAL,
-- HOLDS_RESOURCES, CAN_BECOME) is generated from dwr_core::JobState by scripts.rs: no
-- script spells a state by hand.

-- The globals the scripts use most, as locals taken once per call (begin_call): every use
-- of a global goes through the protected globals' __index (two table look-ups), and a job's
-- steps make a dozen calls and more. Not at load: a function library's code runs then
-- without redis.call (and the other globals). runtime_globals() is defined before the
-- locals, so that its names are the globals.
local function runtime_globals()
  return redis.call, tonumber, ipairs, unpack, pcall, type, tostring, string.format
end
local rcall, tonumber, ipairs, unpack, pcall, type, tostring, str_format

-- The message of an error pcall caught: a string (Redis 7.0), or a table with `err`.
local function error_message(r)
  if type(r) == 'table' and r.err then return r.err end
  return tostring(r)
end

-- Whether an error caught says the server cannot take writes now (a replica, a primary
-- cut off from its replicas): the call is then answered with that error, code kept, so
-- that its callers hear the store is unavailable and try again (batch.rs).
local UNAVAILABLE_CODES = { 'READONLY', 'MASTERDOWN', 'NOREPLICAS' }
local function unavailable(message)
  for _, code in ipairs(UNAVAILABLE_CODES) do
    if string.sub(message, 1, #code) == code or string.sub(message, 2, #code + 1) == code then
      return true
    end
  end
  return false
end

-- rcall(command, key, items...) for a list of any length (`key` nil: the items
-- alone): unpack() is bounded by the Lua stack, so in slices of 1,000 (even, so that
-- score and member pairs stay whole).
local function call_with_all(command, key, items)
  for from = 1, #items, 1000 do
    local to = math.min(from + 999, #items)
    if key then
      rcall(command, key, unpack(items, from, to))
    else
      rcall(command, unpack(items, from, to))
    end
  end
end

-- `f` with the results of the first 4,096 arguments kept (a library's tables live from one
-- call to the next; for EVALSHA this is per call): for what costs more than a table read
-- and takes few values. `f` runs at call time, so it may use the locals begin_call sets.
local function memoized(f)
  local kept, n = {}, 0
  return function(s)
    local v = kept[s]
    if v ~= nil then return v end
    v = f(s)
    if v ~= nil and n < 4096 then
      kept[s], n = v, n + 1
    end
    return v
  end
end

-- tonumber(s): a string's number. tonumber() of a string runs the C library's strtod, some
-- 3,000 instructions, more than a command; the numbers a job carries take few values
-- (sizes, counts, attempts, limits). Not for numbers unique to a job or an instant
-- (sequence numbers, times).
local num = memoized(function(s) return tonumber(s) end)

-- Whether the lifecycle lets a job in state `from` go to `to`
-- (dwr_core::JobState::can_become). An unknown state goes nowhere.
local function can_become(from, to)
  local moves = CAN_BECOME[from]
  return moves ~= nil and moves[to] == true
end

-- The store's clock: Redis TIME in ms. Every stamp a script writes and every lease it judges
-- is read from it, never from a caller, so the callers' clocks do not matter. Read once per
-- script call: the operations of a batch (batch.rs) happen at one instant. now_ms() is the
-- number, for arithmetic; now_s() the same instant as the string every write stores, built
-- from TIME's own digits (Lua's number formatting is a printf of a double, which is a
-- measurable share of a call's time).
local NOW, NOW_S = nil, nil
local function now_ms()
  if not NOW then
    local t = rcall('TIME')
    local ms = math.floor(tonumber(t[2]) / 1000)
    NOW = tonumber(t[1]) * 1000 + ms
    NOW_S = t[1] .. string.format('%03d', ms)
  end
  return NOW
end
local function now_s()
  now_ms()
  return NOW_S
end
-- A job's `updated_at` is written only by a change that stamps no other time (an abort
-- request, a retry, a dependency counted): one that stamps `created_at`, `ready_at`,
-- `assigned_at`, `started_at` or `finished_at` writes that alone, and the codec reads
-- `updated_at` as the latest of them all (one field less at every step of a job).

-- String `s` as a JSON string: quoted as it is when nothing in it needs escaping (ids, IPs,
-- an empty GPU list), through cjson otherwise. The strings quoted are few (executors,
-- their addresses, GPU lists) and the pattern test costs more than a command.
local json_string = memoized(function(s)
  if string.find(s, '[%c"\\\128-\255]') then return cjson.encode(s) end
  return '"' .. s .. '"'
end)

-- An integral number as the string Redis stores ('%d': no printf of a double).
local function int(n) return str_format('%d', n) end

-- The lease of an executor registered by a version that did not record one: 3 x 30 s.
local DEFAULT_LEASE_MS = 90000

-- Fencing: the refusal of a write naming `attempt` about a job in `state` whose current
-- attempt is `current` (nil when the write may go ahead). An empty `attempt` is a write that
-- is not an executor's, never refused; with `live`, the job must also still hold resources.
local function stale(attempt, state, current, live)
  if attempt == '' then return nil end
  current = current or '0'
  if (attempt ~= current and num(attempt) ~= num(current))
      or (live and not HOLDS_RESOURCES[state]) then
    return { 'stale', state, current }
  end
  return nil
end

-- Schedulers are woken once per script call, after every operation of it (see
-- batch.rs): wake() only notes that they should be.
local WOKEN = false
local function wake() WOKEN = true end

-- Whether a job waits in a queue, read once per call (K_BLOCKED's jobs wait for their
-- dependencies, not for room): nil until read.
local ANY_QUEUED = nil
-- Wakes schedulers for room a job's end gave back, when some job waits for room: with
-- every queue empty a pass would place nothing (at a light load that was a second pass
-- per job). The jobs this call puts in a queue (a retry, a dependent released) wake them
-- themselves; one it takes out of a queue is still counted (its ZREM is deferred), which
-- only wakes them in vain.
local function wake_for_room()
  if WOKEN then return end
  if ANY_QUEUED == nil then
    ANY_QUEUED = rcall('ZCARD', K_QUEUE) > 0
    if not ANY_QUEUED then
      for _, q in ipairs(rcall('SMEMBERS', K_QUEUES)) do
        if rcall('ZCARD', k_queue(q)) > 0 then
          ANY_QUEUED = true
          break
        end
      end
    end
  end
  if ANY_QUEUED then wake() end
end

-- Whether any client holds a pattern subscription, asked once per call. The log followers
-- of every dwr process share one pattern subscription (wait.rs: PSUBSCRIBE
-- {p}log_events:*), made before a follower first reads; without any, nobody hears a log
-- channel and publish_log() sends nothing (at the end of every job, a command saved).
local PATTERNS = nil
local function patterns_subscribed()
  if PATTERNS == nil then PATTERNS = rcall('PUBSUB', 'NUMPAT') > 0 end
  return PATTERNS
end
-- Tells the followers of job `id`'s log that `what` happened ('lines', 'end', 'purged').
local function publish_log(id, what)
  if patterns_subscribed() then rcall('PUBLISH', ch_logs(id), what) end
end

-- The changes this call made, for live views (GET /events): published once at the end of
-- the call on CH_CHANGES, one line each (job_store/changes.rs reads them): `s <id> <queue>`
-- (submitted), `j <id> <from> <to>`, `a <id> <1 if preempted, else 0>`, `x+ <executor>`,
-- `x- <executor>`.
-- With no subscriber to CH_CHANGES and no pattern subscription at all (asked once per
-- call), nothing is built or published: nobody would receive it.
local CHANGES, CHANGES_WANTED = {}, nil
local function changed(...)
  if CHANGES_WANTED == nil then
    CHANGES_WANTED = rcall('PUBSUB', 'NUMSUB', CH_CHANGES)[2] > 0
      or patterns_subscribed()
  end
  if CHANGES_WANTED then CHANGES[#CHANGES + 1] = table.concat({ ... }, ' ') end
end

-- Counters this call changed: the executors' allocations (`cpu_alloc`, `mem_alloc`,
-- `gpu_alloc`) and what the queues hold (K_QUEUES_HELD), summed here and written once per
-- field at the end of the call (flush_deferred, run by the script's wrapper in batch.rs): a
-- batch of 100 commits to eight executors writes eight hashes, not two or three HINCRBYs per
-- job and hash. Every read of such a field inside a call adds what is not written yet
-- (counted()).
local COUNTS, COUNTED_KEYS = {}, {}
-- The allocation fields of an executor's hash.
local ALLOC_FIELDS = { 'cpu_alloc', 'mem_alloc', 'gpu_alloc' }
local function count(key, field, n)
  if n == 0 then return end
  local c = COUNTS[key]
  if not c then
    c = {}
    COUNTS[key] = c
    COUNTED_KEYS[#COUNTED_KEYS + 1] = key
  end
  c[field] = (c[field] or 0) + n
end
-- `values` (the numbers read from `key`'s `fields`, by position) with what this call counted
-- added.
local function counted(key, fields, values)
  local c = COUNTS[key]
  local out = {}
  for i, field in ipairs(fields) do
    out[i] = values[i] + (c and c[field] or 0)
  end
  return out
end

-- Records a change of executor `ex` that placement reads (registration, lease, allocation):
-- a scheduler's next read of the executors reads it again (executors.lua). One count per
-- script call, as the clock: a call is atomic, so a reader sees all of its changes or none;
-- the executors changed are written at the end of the call, once each (flush_deferred).
local EXEC_CHANGED, EXEC_CHANGED_LIST = {}, {}
local function exec_changed(ex)
  if EXEC_CHANGED[ex] then return end
  EXEC_CHANGED[ex] = true
  EXEC_CHANGED_LIST[#EXEC_CHANGED_LIST + 1] = ex
end

-- Forgets what this call counted for executor `ex`, which it is removing (its hash is
-- deleted: a later HINCRBY would create it again).
local function exec_gone(ex)
  local xk = k_exec(ex)
  if COUNTS[xk] then COUNTS[xk] = {} end
  EXEC_CHANGED[ex] = nil
  for i, name in ipairs(EXEC_CHANGED_LIST) do
    if name == ex then
      table.remove(EXEC_CHANGED_LIST, i)
      break
    end
  end
end

-- What commit_assignment read of each executor in this call (its hash's fields).
local EXECUTORS_READ = {}

-- Items this call adds to sets (SADD) and lists (RPUSH) that no operation of the same call
-- reads back: the executors' job sets and events from commits, K_FINISH_ORDER from ends.
-- Kept until the end of the call and written in one command per key (flush_deferred), in
-- the order given: a batch of 100 commits to eight executors sends eight SADDs and eight
-- RPUSHes, not 200 commands.
local APPENDED, APPENDED_KEYS = {}, {}
-- `command` ('SADD' or 'RPUSH') `key` `item`, at the end of the call.
local function append_at_end(command, key, item)
  local k = APPENDED[key]
  if not k then
    k = { command = command }
    APPENDED[key] = k
    APPENDED_KEYS[#APPENDED_KEYS + 1] = key
  end
  k[#k + 1] = item
end

-- Writes to the sorted sets that index jobs (the state indexes, the queues, K_BLOCKED),
-- kept until the end of the call and sent as one ZREM and one ZADD per set (flush_deferred):
-- a batch of 100 commits costs the pending set one ZREM, not 100. For each set and job the
-- last write of the call wins, as it would have in Redis. No script reads these sets in a
-- call that writes them (pending_placement, queue_usage, list_jobs and purge read them and
-- write none through here), so none needs to see them before the end.
local INDEXED, INDEXED_KEYS = {}, {}
-- Sets job `id`'s score in sorted set `key` (a string, as Redis takes it), or removes it
-- (`score` false).
local function index_write(key, id, score)
  local k = INDEXED[key]
  if not k then
    k = { ids = {}, last = {} }
    INDEXED[key] = k
    INDEXED_KEYS[#INDEXED_KEYS + 1] = key
  end
  if k.last[id] == nil then k.ids[#k.ids + 1] = id end
  k.last[id] = score
end
-- ZADD `key` `score` `id`, at the end of the call. A missing score raises an error, as
-- the ZADD itself would have.
local function index_add(key, id, score)
  if not score then error('no score for ' .. id .. ' in ' .. key) end
  index_write(key, id, score)
end
-- ZREM `key` `id`, at the end of the call.
local function index_remove(key, id)
  index_write(key, id, false)
end

-- The job sequence: read once per call (the first submit), counted here, written back at
-- the end of the call (flush_deferred).
local SEQ_AT, SEQ_READ = nil, nil
local function next_seq()
  if not SEQ_AT then
    SEQ_AT = tonumber(rcall('GET', K_SEQ) or '0')
    SEQ_READ = SEQ_AT
  end
  SEQ_AT = SEQ_AT + 1
  return SEQ_AT
end

-- Writes what the call counted, the executors it changed (one INCR of the counter and one
-- ZADD for all of them), what it appended to sets and lists (one command per key), the
-- index writes (one ZREM and one ZADD per sorted set) and the sequence it used.
local function flush_deferred()
  for _, key in ipairs(COUNTED_KEYS) do
    for field, n in pairs(COUNTS[key]) do
      if n ~= 0 then rcall('HINCRBY', key, field, int(n)) end
    end
  end
  COUNTS, COUNTED_KEYS = {}, {}
  if EXEC_CHANGED_LIST[1] then
    local seq = int(rcall('INCR', K_EXECUTORS_SEQ))
    local args = {}
    for _, ex in ipairs(EXEC_CHANGED_LIST) do
      args[#args + 1] = seq
      args[#args + 1] = ex
    end
    rcall('ZADD', K_EXECUTORS_CHANGED, unpack(args))
    EXEC_CHANGED, EXEC_CHANGED_LIST = {}, {}
  end
  for _, key in ipairs(APPENDED_KEYS) do
    local k = APPENDED[key]
    call_with_all(k.command, key, k)
  end
  APPENDED, APPENDED_KEYS = {}, {}
  for _, key in ipairs(INDEXED_KEYS) do
    local k = INDEXED[key]
    local gone, scored = {}, {}
    for _, id in ipairs(k.ids) do
      local score = k.last[id]
      if score then
        scored[#scored + 1] = score
        scored[#scored + 1] = id
      else
        gone[#gone + 1] = id
      end
    end
    call_with_all('ZREM', key, gone)
    call_with_all('ZADD', key, scored)
  end
  INDEXED, INDEXED_KEYS = {}, {}
  if SEQ_AT and SEQ_AT ~= SEQ_READ then rcall('SET', K_SEQ, int(SEQ_AT)) end
  SEQ_AT, SEQ_READ = nil, nil
end

-- A pending job's place in the queue (dwr_core::JobSpec::queue_key): lower goes first.
local function queue_key(seq, priority)
  return tonumber(seq) - num(priority) * PRIORITY_AGING_JOBS
end

-- The sorted set that indexes the jobs in `state`, by arrival sequence: the jobs under way
-- (assigned or running) share one, K_UNDER_WAY, so that a start moves a job between no
-- sorted sets (K_JOB_COUNTS counts the running ones); every other state has its own.
local function k_index(state)
  if HOLDS_RESOURCES[state] then return K_UNDER_WAY end
  return k_state(state)
end

-- Moves a job between the state indexes (k_index), keeping its arrival sequence `seq` as
-- score, counts it in or out of the running jobs, and moves it into or out of the pending
-- jobs of its queue `queue` (k_queue: nil is the default queue), scored by queue key `qk`
-- (a job stored before priorities has none and queues at the default priority).
local function move_state(id, from, to, seq, qk, queue)
  local kf, kt = k_index(from), k_index(to)
  if kf ~= kt then
    index_remove(kf, id)
    index_add(kt, id, seq)
  end
  if to == S_RUNNING then
    count(K_JOB_COUNTS, 'running', 1)
  elseif from == S_RUNNING then
    count(K_JOB_COUNTS, 'running', -1)
  end
  changed('j', id, from, to)
  if from == S_PENDING then index_remove(k_queue(queue), id) end
  if to == S_PENDING then
    index_add(k_queue(queue), id, qk or int(queue_key(seq, DEFAULT_PRIORITY)))
    -- Back to its queue, changed (a retry, a preemption): the schedulers' copies of queued
    -- jobs (pending_placement) are read again.
    count(K_JOB_COUNTS, 'requeued', 1)
  end
end

-- The fields of K_QUEUES_HELD for queue `q` (not nil): { q:cpu, q:mem, q:gpu }, built once
-- per queue name (read-only: callers share the table).
local held_fields = memoized(function(q) return { q .. ':cpu', q .. ':mem', q .. ':gpu' } end)
-- Adds `sign` (1 or -1) times cpu, mem and ngpu to what queue `queue` (nil: the default)
-- holds (counted, written at the end of the call). Zero amounts are not written: a queue
-- that never held a GPU has no gpu field.
local function hold(queue, sign, cpu, mem, ngpu)
  local f = held_fields(queue or DEFAULT_QUEUE)
  count(K_QUEUES_HELD, f[1], sign * num(cpu))
  count(K_QUEUES_HELD, f[2], sign * num(mem))
  count(K_QUEUES_HELD, f[3], sign * num(ngpu))
end

-- What a terminal transition needs of a job, by position: state (1), executor (2), cpu (3),
-- mem (4), ngpu (5, nil for none), seq (6), abort (7), log_total (8: set once the job has log lines),
-- attempt (9), the queue (10, nil for the default), whether jobs wait on it (11) and the
-- array it is a task of (12), in one HMGET. Then what only some jobs carry: gpu_ids (13),
-- exit_code (14), reason (15), retry_at (16) and the dependencies not ended yet (17), read
-- (a second HMGET) only for a job that may have them: pending, asked to abort, past its
-- first attempt, or holding GPUs. A first attempt under way has none of them (a retry or a
-- preemption makes the next attempt the second; an abort request writes `abort` with its
-- `reason`), and every element of a reply costs the script about as much as a command's
-- own work. A nil state: no such job. What only an attempt that ends in a retry reads
-- (18-25) is not read here: with_retry_fields() adds it.
local FINISH_FIELDS = { 'state', 'executor', 'cpu', 'mem', 'ngpu', 'seq', 'abort', 'log_total',
  'attempt', 'queue', 'has_dependents', 'array' }
local function job_for_finish(id)
  local jk = k_job(id)
  local j = rcall('HMGET', jk, unpack(FINISH_FIELDS))
  if j[1] and (j[1] == S_PENDING or j[7] or j[9] ~= '1' or (j[5] and j[5] ~= '0')) then
    local r = rcall('HMGET', jk, 'gpu_ids', 'exit_code', 'reason', 'retry_at', 'deps_left')
    j[13], j[14], j[15], j[16], j[17] = r[1], r[2], r[3], r[4], r[5]
  end
  return j
end
-- Adds to `j` (from job_for_finish) what deciding on a retry and recording the attempt
-- read: max_retries (18), retry_ms (19), retry_on (20), attempts (21), executor_ip (22),
-- started_at (23), the queue key a retry re-enters the queue with (24), and how many
-- attempts ended in a preemption (25).
local function with_retry_fields(id, j)
  local r = rcall('HMGET', k_job(id), 'max_retries', 'retry_ms', 'retry_on', 'attempts',
    'executor_ip', 'started_at', 'qk', 'preemptions')
  j[18], j[19], j[20], j[21], j[22], j[23], j[24], j[25] =
    r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]
  return j
end

-- Whether job or array `dep` ended, and then whether it succeeded (an array: every task
-- did). Returns nil while it has not ended.
local function dependency_end(dep)
  local state = rcall('HGET', k_job(dep), 'state')
  if state then
    if TERMINAL[state] then return true, state == S_SUCCEEDED end
    return nil
  end
  local a = rcall('HMGET', k_array(dep), 'count', 'done', 'not_ok')
  if a[1] and tonumber(a[2] or '0') >= tonumber(a[1]) then
    return true, tonumber(a[3] or '0') == 0
  end
  return nil
end

-- Whether job or array `dep` exists.
local function dependency_exists(dep)
  return rcall('EXISTS', k_job(dep)) == 1 or rcall('EXISTS', k_array(dep)) == 1
end

-- The id an idempotency key ('' for none) names already, if any.
local function idempotent(key)
  if key == '' then return nil end
  return rcall('GET', k_idem(key))
end

-- The dependencies a comma-separated list names, or nil and the first that is neither a
-- job nor an array.
local NO_DEPS = {}
local function dependencies(csv)
  if csv == '' then return NO_DEPS end
  local deps = {}
  for dep in string.gmatch(csv, '[^,]+') do
    if not dependency_exists(dep) then return nil, dep end
    deps[#deps + 1] = dep
  end
  return deps
end

-- What the end of dependency `dep` (`ok`: it succeeded) means for a job waiting on `left`
-- of its dependencies of type `kind`, `not_ok` of those ended failed: a mirror of
-- dwr_core::Dependency::on_end (a conformance check compares the reasons). Returns 'wait'
-- with the new counts, 'ready', or 'never' with the reason.
local function dep_verdict(kind, left, not_ok, dep, ok)
  left = left - 1
  if not ok then not_ok = not_ok + 1 end
  if kind == 'afterok' and not ok then
    return 'never', 'dependency ' .. dep .. ' did not succeed (afterok can no longer be met)'
  end
  if left > 0 then return 'wait', left, not_ok end
  if kind == 'afternotok' and not_ok == 0 then
    return 'never', 'every dependency succeeded, the last ' .. dep
      .. ' (afternotok can no longer be met)'
  end
  return 'ready'
end

-- Gives back what job `id` holds on its executor and in its queue (`j` from
-- job_for_finish). Exactly once: the SREM from the executor's job set is the token,
-- whichever terminal transition gets there first.
local function release(id, j)
  local ex = j[2]
  if not ex then return end
  if rcall('SREM', k_exec_jobs(ex), id) == 0 then return end
  hold(j[10], -1, j[3], j[4], j[5] or '0')
  if j[12] then rcall('HINCRBY', k_array(j[12]), 'active', -1) end
  local xk = k_exec(ex)
  exec_changed(ex)
  count(xk, 'cpu_alloc', -num(j[3]))
  count(xk, 'mem_alloc', -num(j[4]))
  local ngpu = num(j[5] or '0')
  if ngpu > 0 then
    count(xk, 'gpu_alloc', -ngpu)
    local gk = k_exec_gpus(ex)
    for _, uuid in ipairs(cjson.decode(j[13])) do
      if rcall('HGET', gk, uuid) == id then
        rcall('HDEL', gk, uuid)
      end
    end
  end
end

-- Moves job `id` (`j` from job_for_finish) from its state to the terminal state `to`,
-- releasing what it held, stamping the time, starting the log TTL and waking schedulers
-- and log followers; not the jobs waiting on it (finish_job does).
local function end_without_dependents(id, j, to, exit_code, reason, oom, now, log_ttl)
  local jk = k_job(id)
  release(id, j)
  local set = { 'state', to, 'finished_at', now_s() }
  -- Only a job's end sets `oom`, so a job that was not killed has none (read as not).
  if oom == '1' then
    set[5], set[6] = 'oom', '1'
  end
  if num(j[17] or '0') > 0 then
    -- It ends while it waited for its dependencies.
    index_remove(K_BLOCKED, id)
    set[#set + 1] = 'deps_left'
    set[#set + 1] = '0'
  end
  -- Fields to clear, only those present (abort, retry_at, exit_code, reason): usually
  -- none, and no HDEL.
  local del = {}
  if j[7] then del[1] = 'abort' end
  if j[16] then del[#del + 1] = 'retry_at' end
  if exit_code == nil or exit_code == '' then
    if j[14] then del[#del + 1] = 'exit_code' end
  else
    set[#set + 1] = 'exit_code'
    set[#set + 1] = exit_code
  end
  if reason == nil or reason == '' then
    if j[15] then del[#del + 1] = 'reason' end
  else
    set[#set + 1] = 'reason'
    set[#set + 1] = reason
  end
  rcall('HSET', jk, unpack(set))
  if #del > 0 then rcall('HDEL', jk, unpack(del)) end
  move_state(id, j[1], to, j[6], nil, j[10])
  -- A list, not a sorted set by time: appending is O(1), and purge.lua takes jobs from
  -- its head while they are due. Appended at the end of the call (flush_deferred).
  append_at_end('RPUSH', K_FINISH_ORDER, id)
  -- A job without log_total has no log list (append_logs writes both), so nothing to
  -- expire; lines appended after this set the TTL themselves.
  local ttl = num(log_ttl)
  if ttl > 0 and j[8] then rcall('EXPIRE', k_logs(id), ttl) end
  wake_for_room()
  publish_log(id, 'end')
end

-- What ended with job `id` (`j` from job_for_finish), which just ended in state `to`, as
-- dependencies others may wait on: { id, ok } when jobs wait on it (`j[11]`), and its
-- array's { id, ok } when it was the array's last task to end and jobs wait on the array.
-- Counts the task's end in its array either way.
local function ended(id, j, to)
  local ok = to == S_SUCCEEDED
  local nodes = {}
  if j[11] then nodes[1] = { id, ok } end
  if j[12] then
    local ak = k_array(j[12])
    local done = rcall('HINCRBY', ak, 'done', 1)
    if not ok then rcall('HINCRBY', ak, 'not_ok', 1) end
    local a = rcall('HMGET', ak, 'count', 'not_ok', 'has_dependents')
    if a[3] and done >= tonumber(a[1]) then
      nodes[#nodes + 1] = { j[12], tonumber(a[2] or '0') == 0 }
    end
  end
  return nodes
end

-- Tells the jobs waiting on each of `work` ({ id, ok }: a job or an array that ended,
-- succeeded or not) that it ended: each waits for more, joins its queue, or fails when its
-- dependencies can no longer be met, which its own dependents then hear in turn (a work
-- list, not recursion).
local function release_dependents(work, now, log_ttl)
  while #work > 0 do
    local node, node_ok = unpack(table.remove(work))
    local dk = k_dependents(node)
    for _, d in ipairs(rcall('SMEMBERS', dk)) do
      local w = rcall('HMGET', k_job(d), 'state', 'deps_left', 'deps_not_ok', 'dependency',
        'seq', 'qk', 'queue')
      if w[1] == S_PENDING and tonumber(w[2] or '0') > 0 then
        local verdict, a, b = dep_verdict(w[4] or 'afterok', tonumber(w[2]),
          tonumber(w[3] or '0'), node, node_ok)
        if verdict == 'wait' then
          rcall('HSET', k_job(d), 'deps_left', a, 'deps_not_ok', b)
        elseif verdict == 'ready' then
          rcall('HSET', k_job(d), 'deps_left', 0, 'ready_at', now_s())
          index_remove(K_BLOCKED, d)
          index_add(k_queue(w[7]), d, w[6] or int(queue_key(w[5], DEFAULT_PRIORITY)))
          wake()
        else
          local jd = job_for_finish(d)
          end_without_dependents(d, jd, S_FAILED, '', a, '0', now, log_ttl)
          for _, n in ipairs(ended(d, jd, S_FAILED)) do work[#work + 1] = n end
        end
      end
    end
    rcall('DEL', dk)
  end
end

-- end_without_dependents, then the jobs waiting on it or on its array (nothing more for a
-- job that is neither waited on nor a task).
local function finish_job(id, j, to, exit_code, reason, oom, now, log_ttl)
  end_without_dependents(id, j, to, exit_code, reason, oom, now, log_ttl)
  if j[11] or j[12] then release_dependents(ended(id, j, to), now, log_ttl) end
end

-- Stores job `id` as submitted: its hash (`fields` from index `from`, a flat list of
-- field/value pairs, and its id, state, sequence, queue key and creation time), K_WITH_VIEW
-- when the fields hold a placement view (`view`), its state's index, and its queue, or, with
-- dependencies (`deps`, ids that exist, of type `kind`), K_BLOCKED and the dependents set
-- of each dependency not ended. The caller checked that the id is free. Returns nil, or
-- for a job with dependencies 'ready', 'blocked' with the counts left and not ok, or
-- 'failed' with the reason (it is stored failed: those that ended say it can never run).
local function store_job(id, priority, queue, kind, deps, fields, from, view, now)
  local jk = k_job(id)
  local n = next_seq()
  -- The number, not its string: tonumber() of a number costs nothing.
  local seq, qk = int(n), int(queue_key(n, priority))
  -- No updated_at: it is the creation time (see now_s()). No queue key at the default
  -- priority: every reader of `qk` takes its absence for the default's (move_state,
  -- release_dependents).
  if num(priority) == DEFAULT_PRIORITY then
    rcall('HSET', jk, 'id', id, 'state', S_PENDING, 'seq', seq, 'created_at', now_s(),
      unpack(fields, from))
  else
    rcall('HSET', jk, 'id', id, 'state', S_PENDING, 'seq', seq, 'qk', qk, 'created_at',
      now_s(), unpack(fields, from))
  end
  if view then rcall('SADD', K_WITH_VIEW, id) end
  index_add(k_state(S_PENDING), id, seq)
  changed('s', id, queue ~= '' and queue or DEFAULT_QUEUE)
  if queue ~= '' then rcall('SADD', K_QUEUES, queue) end
  wake()
  if #deps == 0 then
    index_add(k_queue(queue), id, qk)
    return nil
  end
  -- Dependencies: those ended count at once, the job waits on the others.
  local left, not_ok, open, never = #deps, 0, {}, nil
  for _, dep in ipairs(deps) do
    local done, ok = dependency_end(dep)
    if done then
      local verdict, a, b = dep_verdict(kind, left, not_ok, dep, ok)
      if verdict == 'wait' then
        left, not_ok = a, b
      elseif verdict == 'ready' then
        left = 0
      else
        never = a
        break
      end
    else
      open[#open + 1] = dep
    end
  end
  rcall('HSET', jk, 'dependency', kind)
  if never then
    finish_job(id, job_for_finish(id), S_FAILED, '', never, '0', now, '0')
    return 'failed', never
  end
  if left == 0 then
    rcall('HSET', jk, 'ready_at', now_s())
    index_add(k_queue(queue), id, qk)
    return 'ready'
  end
  rcall('HSET', jk, 'deps_left', left, 'deps_not_ok', not_ok)
  index_add(K_BLOCKED, id, seq)
  for _, dep in ipairs(open) do
    rcall('SADD', k_dependents(dep), id)
    local target = k_job(dep)
    if rcall('EXISTS', target) == 0 then target = k_array(dep) end
    rcall('HSET', target, 'has_dependents', '1')
  end
  return 'blocked', left, not_ok
end

-- The longest wait before a retry (dwr_core::retry::MAX_RETRY_BACKOFF), ms.
local MAX_RETRY_MS = 600000

-- Ends the current attempt of job `id` (`j` from job_for_finish), a mirror of
-- dwr_core::Job::end_attempt: when an attempt under way (assigned or running) failed for a
-- `cause` ('' for none) its retry policy names, with retries left and no abort requested,
-- the attempt is recorded in the job's `attempts` and the job goes back to pending until
-- its backoff has passed ('retry'); otherwise finish_job ends it ('final'). The final
-- attempt is not written to `attempts`: its record is the job's own fields, which the
-- store's codec reads it from (one JSON encode less on every job's end).
-- A preempted attempt (abort 'preempted') that did not succeed meanwhile goes back to
-- pending at once, keeping the reason its preemption wrote, and uses up no retry: the retry
-- count is the attempt number less the preemptions (25).
local function end_attempt(id, j, to, exit_code, reason, oom, now, log_ttl, cause)
  local state = j[1]
  if HOLDS_RESOURCES[state] and j[7] == 'preempted' and to ~= S_SUCCEEDED then
    with_retry_fields(id, j)
    local jk = k_job(id)
    local attempts = {}
    if j[21] and j[21] ~= '{}' then attempts = cjson.decode(j[21]) end
    local record = { attempt = tonumber(j[9] or '0'), executor = j[2], executor_ip = j[22],
      started_at = tonumber(j[23] or ''), ended_at = now, reason = j[15] or reason }
    if exit_code ~= nil and exit_code ~= '' then record.exit_code = tonumber(exit_code) end
    attempts[#attempts + 1] = record
    release(id, j)
    rcall('HSET', jk, 'state', S_PENDING, 'updated_at', now_s(), 'attempts',
      cjson.encode(attempts), 'gpu_ids', '[]', 'oom', '0')
    rcall('HINCRBY', jk, 'preemptions', 1)
    rcall('HDEL', jk, 'abort', 'retry_at', 'executor', 'executor_ip', 'assigned_at',
      'started_at', 'exit_code')
    move_state(id, state, S_PENDING, j[6], j[24], j[10])
    wake()
    return 'retry'
  end
  -- Whether the job has a retry policy (max_retries, 18) is read with the rest of what a
  -- retry needs, only once an attempt failed for a cause.
  if HOLDS_RESOURCES[state] and to == S_FAILED and cause ~= '' and not j[7]
      and with_retry_fields(id, j)[18] then
    local jk = k_job(id)
    local r = { j[9], j[18], j[19], j[20], j[21], j[22], j[23] }
    local attempt = tonumber(r[1] or '0')
    -- The retries used: the attempts that did not end in a preemption.
    local tries = attempt - tonumber(j[25] or '0')
    local retry = tries <= tonumber(r[2])
      and string.find(',' .. (r[4] or '') .. ',', ',' .. cause .. ',', 1, true)
    if retry then
      local attempts = {}
      if r[5] and r[5] ~= '{}' then attempts = cjson.decode(r[5]) end
      local record = { attempt = attempt, executor = j[2], executor_ip = r[6],
        started_at = tonumber(r[7] or ''), ended_at = now }
      if exit_code ~= nil and exit_code ~= '' then record.exit_code = tonumber(exit_code) end
      if reason ~= nil and reason ~= '' then record.reason = reason end
      attempts[#attempts + 1] = record
      local encoded = cjson.encode(attempts)
      release(id, j)
      local delay = tonumber(r[3] or '0') * 2 ^ math.min(tries - 1, 31)
      if delay > MAX_RETRY_MS then delay = MAX_RETRY_MS end
      -- Back to pending, a move can_become does not allow: like Job::end_attempt, a retry
      -- is not a transition of the lifecycle but a new attempt of the same job.
      local set = { 'state', S_PENDING, 'updated_at', now_s(), 'retry_at', int(now + math.floor(delay)),
        'attempts', encoded, 'gpu_ids', '[]', 'oom', '0' }
      if reason ~= nil and reason ~= '' then
        set[#set + 1] = 'reason'
        set[#set + 1] = reason
      end
      rcall('HSET', jk, unpack(set))
      rcall('HDEL', jk, 'executor', 'executor_ip', 'assigned_at', 'started_at', 'exit_code')
      move_state(id, state, S_PENDING, j[6], j[24], j[10])
      wake()
      return 'retry'
    end
  end
  finish_job(id, j, to, exit_code, reason, oom, now, log_ttl)
  return 'final'
end

-- An executor as three parts: its hash, its GPU holders, its job ids.
local function executor_reply(ex)
  return {
    rcall('HGETALL', k_exec(ex)),
    rcall('HGETALL', k_exec_gpus(ex)),
    rcall('SMEMBERS', k_exec_jobs(ex)),
  }
end

-- Starts a call with key prefix `prefix` (its ARGV[1]): forgets what an earlier call left.
-- A script sent with EVAL starts from nothing anyway; the functions of the store's library
-- (scripts.rs) share these variables from one call to the next, so every piece of state
-- above is named here.
local function begin_call(prefix)
  rcall, tonumber, ipairs, unpack, pcall, type, tostring, str_format = runtime_globals()
  set_prefix(prefix)
  NOW, NOW_S = nil, nil
  WOKEN, ANY_QUEUED = false, nil
  CHANGES, CHANGES_WANTED, PATTERNS = {}, nil, nil
  COUNTS, COUNTED_KEYS = {}, {}
  EXEC_CHANGED, EXEC_CHANGED_LIST = {}, {}
  EXECUTORS_READ = {}
  APPENDED, APPENDED_KEYS = {}, {}
  INDEXED, INDEXED_KEYS = {}, {}
  SEQ_AT, SEQ_READ = nil, nil
end
