-- submit_array.lua: stores an array and its tasks, each a pending job (store_job), in one
-- call. ARGV: prefix, array id, parallelism ('' for none), idempotency key ('' for none),
-- its TTL (ms), priority, queue ('' for the default), dependency type, the ids the tasks
-- depend on (comma-separated, '' for none), the task ids (comma-separated, in index order),
-- then field/value pairs of a task's hash but its id, state, times, array and index. Replies
-- { 'ok', created_at } or { 'existing', array id } (the key names an array already),
-- { 'unknown_dependency', id } or { 'job_exists', id } (nothing stored).
local aid, key = ARGV[2], ARGV[4]
local existing = idempotent(key)
if existing then return { 'existing', existing } end
local deps, unknown = dependencies(ARGV[9])
if not deps then return { 'unknown_dependency', unknown } end
local tasks = {}
for task in string.gmatch(ARGV[10], '[^,]+') do tasks[#tasks + 1] = task end
local function taken(id)
  return rcall('EXISTS', k_job(id)) == 1 or rcall('EXISTS', k_array(id)) == 1
end
if taken(aid) then return { 'job_exists', aid } end
for _, id in ipairs(tasks) do
  if taken(id) then return { 'job_exists', id } end
end
local now = now_ms()
local record = { 'count', #tasks, 'active', 0, 'done', 0, 'not_ok', 0, 'created_at', now_s() }
if ARGV[3] ~= '' then
  record[#record + 1] = 'parallelism'
  record[#record + 1] = ARGV[3]
end
rcall('HSET', k_array(aid), unpack(record))
call_with_all('RPUSH', k_array_tasks(aid), tasks)
if key ~= '' then rcall('SET', k_idem(key), aid, 'PX', ARGV[5]) end
local template = { unpack(ARGV, 11) }
local n = #template
local view = false
for i = 1, n, 2 do
  if template[i] == 'place' then view = true end
end
for index, id in ipairs(tasks) do
  template[n + 1], template[n + 2] = 'array', aid
  template[n + 3], template[n + 4] = 'array_index', index - 1
  store_job(id, ARGV[6], ARGV[7], ARGV[8], deps, template, 1, view, now)
end
return { 'ok', now_s() }
