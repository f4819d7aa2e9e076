-- list_jobs.lua: one page of jobs, read with their hashes in one round trip.
-- ARGV: prefix, state or 'all', offset, limit (> 0), 'rev' (newest first) or 'fwd' (oldest
-- first).
local offset, limit, rev = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == 'rev'

-- There is no all-jobs index (it cost every submit and purge a write to the largest sorted
-- set): every job is in exactly one state index (k_index: one per state, one for both
-- states under way), scored by its arrival sequence, which is unique, so a page of all jobs
-- is the slice of ranks [offset, offset + limit) of the union of those sets. The sequence
-- numbers of the slice's first and last jobs are found by bisection on how many jobs come
-- up to a sequence number (one ZCOUNT per index, O(log n)), then each set gives its part of
-- the slice: O(log² n + limit) at any offset.
local function page_of_all()
  local keys, total, seen = {}, 0, {}
  local low, high
  for _, state in ipairs(STATES) do
    local key = k_index(state)
    if not seen[key] then
      seen[key] = true
      keys[#keys + 1] = key
    end
  end
  for _, key in ipairs(keys) do
    local n = rcall('ZCARD', key)
    if n > 0 then
      total = total + n
      local first = tonumber(rcall('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
      local last = tonumber(rcall('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
      if not low or first < low then low = first end
      if not high or last > high then high = last end
    end
  end
  if offset >= total then return {} end
  -- How many jobs come up to sequence number `seq`, in page order.
  local function reach(seq)
    local n = 0
    for _, key in ipairs(keys) do
      if rev then
        n = n + rcall('ZCOUNT', key, seq, '+inf')
      else
        n = n + rcall('ZCOUNT', key, '-inf', seq)
      end
    end
    return n
  end
  -- The sequence number of the job at 0-based rank `rank` in page order: the first
  -- number, going in page order, that `rank + 1` jobs reach.
  local function seq_at(rank)
    if rank == 0 then return rev and high or low end
    if rank == total - 1 then return rev and low or high end
    local lo, hi = low, high
    while lo < hi do
      if rev then
        local mid = math.floor((lo + hi + 1) / 2)
        if reach(mid) >= rank + 1 then lo = mid else hi = mid - 1 end
      else
        local mid = math.floor((lo + hi) / 2)
        if reach(mid) >= rank + 1 then hi = mid else lo = mid + 1 end
      end
    end
    return lo
  end
  local from = seq_at(offset)
  local to = seq_at(math.min(offset + limit, total) - 1)
  local found = {}
  for _, key in ipairs(keys) do
    local part
    if rev then
      part = rcall('ZREVRANGEBYSCORE', key, from, to, 'WITHSCORES')
    else
      part = rcall('ZRANGEBYSCORE', key, from, to, 'WITHSCORES')
    end
    for i = 1, #part, 2 do
      found[#found + 1] = { tonumber(part[i + 1]), part[i] }
    end
  end
  table.sort(found, function(a, b)
    if rev then return a[1] > b[1] end
    return a[1] < b[1]
  end)
  local ids = {}
  for i = 1, math.min(#found, limit) do ids[i] = found[i][2] end
  return ids
end

-- A page of the jobs in a state under way: those of K_UNDER_WAY whose hash says `state`, in
-- page order, read a slice at a time. O(offset + limit) and the jobs of the other state
-- passed over: the jobs under way are bounded by what the executors hold.
local function page_under_way(state)
  local ids, matched, from = {}, 0, 0
  local slice = math.max(limit, 128)
  while #ids < limit do
    local part
    if rev then
      part = rcall('ZREVRANGE', K_UNDER_WAY, from, from + slice - 1)
    else
      part = rcall('ZRANGE', K_UNDER_WAY, from, from + slice - 1)
    end
    for _, id in ipairs(part) do
      if rcall('HGET', k_job(id), 'state') == state then
        matched = matched + 1
        if matched > offset then
          ids[#ids + 1] = id
          if #ids == limit then break end
        end
      end
    end
    if #part < slice then break end
    from = from + slice
  end
  return ids
end

local ids
if ARGV[2] == 'all' then
  ids = page_of_all()
elseif HOLDS_RESOURCES[ARGV[2]] then
  ids = page_under_way(ARGV[2])
else
  local key = k_state(ARGV[2])
  if rev then
    ids = rcall('ZREVRANGE', key, offset, offset + limit - 1)
  else
    ids = rcall('ZRANGE', key, offset, offset + limit - 1)
  end
end
local out = {}
for _, id in ipairs(ids) do
  -- An index entry without its hash (deleted by hand) is skipped, not returned empty.
  local job = rcall('HGETALL', k_job(id))
  if #job > 0 then out[#out + 1] = job end
end
return out
