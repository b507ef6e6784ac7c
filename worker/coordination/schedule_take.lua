-- Take up to LIMIT entries of the schedule that are due by Redis's clock, each leased for
-- LEASE ms (moved to now + LEASE): a taker that dies before it drops an entry leaves it
-- to the next tick of any worker. Returns the entries taken.
-- KEYS: the schedule zset. ARGV: limit, lease ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, entry in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), entry)
end
return due
