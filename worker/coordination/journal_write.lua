-- A batch of journal entries in one call (journal_redis.py): for each key, its members
-- with their scores, then, for an account's set, the entries past the retention dropped,
-- and the key's expiry set to the retention.
-- KEYS: the sets written. ARGV: ttl seconds, cutoff ms (older entries are dropped), and
-- the batch as lines: per key in KEYS' order, "<count> <prune 1|0>", then <count> lines
-- "<score> <member>". A member is compact JSON or a reference: never a newline in it.
-- One argument, since redis-py encodes each argument in Python.
local ttl, cutoff = ARGV[1], '(' .. ARGV[2]
local next_line = string.gmatch(ARGV[3], '[^\n]+')
for _, key in ipairs(KEYS) do
  local count, prune = string.match(next_line(), '^(%d+) (%d)$')
  local args = {}
  for i = 1, tonumber(count) do
    local line = next_line()
    local space = string.find(line, ' ', 1, true)
    args[#args + 1] = string.sub(line, 1, space - 1)
    args[#args + 1] = string.sub(line, space + 1)
    -- ZADD in slices: unpack() of a very long list would overflow Lua's C stack.
    if #args == 500 or i == tonumber(count) then
      redis.call('ZADD', key, unpack(args))
      args = {}
    end
  end
  if prune == '1' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  end
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
