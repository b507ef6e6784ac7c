-- A batch of journal entries in one call (journal_redis.py): for each key, its members
-- with their scores, then, for an account's set, the entries past the retention dropped,
-- and the key's expiry set to the retention.
-- KEYS: the sets written. ARGV: ttl seconds, cutoff ms (older entries are dropped), and
-- a JSON array with, per key in KEYS' order, [prune (1 or 0), score, member, score,
-- member, ...]: one argument, as redis-py encodes each argument in Python.
local ttl, cutoff = ARGV[1], '(' .. ARGV[2]
local groups = cjson.decode(ARGV[3])
for i, key in ipairs(KEYS) do
  local group = groups[i]
  -- ZADD in slices: unpack() of a very long list would overflow Lua's C stack.
  for first = 2, #group, 500 do
    redis.call('ZADD', key, unpack(group, first, math.min(first + 499, #group)))
  end
  if group[1] == 1 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  end
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
