-- Track a job this app publishes, stamped with Redis's clock (seconds), never a host's.
-- KEYS: pending zset, published-at zset, records hash. ARGV: job id, its record (JSON).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
