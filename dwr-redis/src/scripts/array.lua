-- array.lua: an array's record, and with ARGV[3] = '1' its tasks with their states in index
-- order. ARGV: prefix, array id, '1' or ''. Replies { hash, tasks } where tasks is a flat
-- list of id, state (a task deleted by retention is left out); { } for no such array.
local aid = ARGV[2]
local hash = rcall('HGETALL', k_array(aid))
if #hash == 0 then return {} end
local tasks = {}
if ARGV[3] == '1' then
  for _, id in ipairs(rcall('LRANGE', k_array_tasks(aid), 0, -1)) do
    local state = rcall('HGET', k_job(id), 'state')
    if state then
      tasks[#tasks + 1] = id
      tasks[#tasks + 1] = state
    end
  end
end
return { hash, tasks }
