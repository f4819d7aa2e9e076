-- purge.lua: deletes up to a batch of terminal jobs, with their logs: those finished before
-- a time, or those beyond the newest `keep` by finish order. An array goes with the last of
-- its tasks: its record counts the tasks deleted (`purged`), and once that reaches its
-- count the record, its task list and its dependents set are deleted too.
-- ARGV: prefix, age (ms: jobs that finished longer ago than this by Redis TIME; '' for
-- none), batch size, keep (-1 for no count). Returns { deleted, more }: how many jobs were
-- deleted, and 1 when the batch ran out before the due jobs did.
local age, batch, keep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- With no age, nothing is due by age: -1 is before every finish time.
local before = age and (now_ms() - age) or -1
local deleted, taken = 0, 0

-- The keys of the jobs deleted, in one DEL at the end (their state sets' ZREMs go at the
-- end of the call too, one per set: flush_deferred); each job once.
local doomed, gone, ids = {}, {}, {}
-- The tasks deleted of each array (`array`: the job's array, nil for none).
local purged, arrays = {}, {}
local function delete(id, state, array)
  if gone[id] then return end
  gone[id] = true
  ids[#ids + 1] = id
  index_remove(k_index(state), id)
  doomed[#doomed + 1] = k_job(id)
  doomed[#doomed + 1] = k_logs(id)
  publish_log(id, 'purged')
  deleted = deleted + 1
  if array then
    if not purged[array] then
      purged[array] = 0
      arrays[#arrays + 1] = array
    end
    purged[array] = purged[array] + 1
  end
end

-- Earlier versions also kept an index of all jobs, which nothing reads any more.
rcall('UNLINK', K_ALL_LEGACY)

-- Jobs finished under an earlier version, indexed in a sorted set by finish time.
for _, id in ipairs(rcall('ZRANGEBYSCORE', K_FINISHED_LEGACY, '-inf', before,
  'LIMIT', 0, batch)) do
  rcall('ZREM', K_FINISHED_LEGACY, id)
  taken = taken + 1
  local j = rcall('HMGET', k_job(id), 'state', 'array')
  if j[1] then delete(id, j[1], j[2]) end
end

-- The finish order list, from its head while the head is due. Finish times come from
-- Redis TIME, so the order agrees with them (but across a step of the server's clock, or
-- jobs finished by an earlier version with its callers' clocks: then a job stamped later
-- than one behind it holds that one back until it is due itself).
-- The head is read once and what was taken of it trimmed once.
local excess = 0
if keep >= 0 then excess = rcall('LLEN', K_FINISH_ORDER) - keep end
local popped = 0
if taken < batch then
  for _, id in ipairs(rcall('LRANGE', K_FINISH_ORDER, 0, batch - taken - 1)) do
    local j = rcall('HMGET', k_job(id), 'state', 'finished_at', 'array')
    if excess <= 0 and j[1] and tonumber(j[2] or '0') > before then break end
    excess = excess - 1
    popped = popped + 1
    taken = taken + 1
    -- An entry without its hash (deleted by hand) just goes.
    if j[1] then delete(id, j[1], j[3]) end
  end
end
if popped > 0 then rcall('LTRIM', K_FINISH_ORDER, popped, -1) end
-- Each array once per call. An array whose record is gone (deleted by hand) is not made
-- again by the count.
for _, array in ipairs(arrays) do
  local ak = k_array(array)
  local count = rcall('HGET', ak, 'count')
  if count and rcall('HINCRBY', ak, 'purged', purged[array]) >= tonumber(count) then
    doomed[#doomed + 1] = ak
    doomed[#doomed + 1] = k_array_tasks(array)
    doomed[#doomed + 1] = k_dependents(array)
  end
end
call_with_all('DEL', nil, doomed)
-- A job stored with a placement view leaves K_WITH_VIEW (asked only while it has members).
if ids[1] and rcall('SCARD', K_WITH_VIEW) > 0 then
  call_with_all('SREM', K_WITH_VIEW, ids)
end
return { deleted, taken == batch and 1 or 0 }
