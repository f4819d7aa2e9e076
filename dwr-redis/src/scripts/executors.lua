-- executors.lua: a consistent snapshot of one executor (ARGV[2]) or of all (ARGV[2] = ''),
-- ordered by id. ARGV: prefix, executor id or ''.
local ids
if ARGV[2] ~= '' then
  ids = { ARGV[2] }
else
  ids = redis.call('SMEMBERS', K_EXECUTORS)
  table.sort(ids)
end
local out = {}
for _, ex in ipairs(ids) do
  if redis.call('EXISTS', k_exec(ex)) == 1 then
    out[#out + 1] = executor_reply(ex)
  end
end
return out
