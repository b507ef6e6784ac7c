-- A batch of journal entries in one call (journal_redis.py): for each key, its members
-- with their scores, then, for an account's set, the entries past the retention dropped,
-- and the key's expiry set to the retention.
-- KEYS: the sets written. ARGV: ttl seconds, cutoff ms (older entries are dropped), then
-- per key: its member count n, "1" to prune it, and n pairs score, member.
local ttl, cutoff = ARGV[1], '(' .. ARGV[2]
local at = 3
for _, key in ipairs(KEYS) do
  local count, prune = tonumber(ARGV[at]), ARGV[at + 1]
  at = at + 2
  -- ZADD in slices: unpack() of a very long list would overflow Lua's C stack.
  for first = at, at + 2 * count - 1, 500 do
    local last = math.min(first + 499, at + 2 * count - 1)
    redis.call('ZADD', key, unpack(ARGV, first, last))
  end
  at = at + 2 * count
  if prune == '1' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  end
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
