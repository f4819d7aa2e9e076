-- queue_usage.lua: per queue, how many jobs wait and what its jobs hold.
-- ARGV: prefix. Returns { names, pending counts, the held hash as a flat array }: the
-- default queue then the others by name.
local queues = rcall('SMEMBERS', K_QUEUES)
table.sort(queues)
table.insert(queues, 1, DEFAULT_QUEUE)
local pending = {}
for i, q in ipairs(queues) do pending[i] = rcall('ZCARD', k_queue(q)) end
return { queues, pending, rcall('HGETALL', K_QUEUES_HELD) }
