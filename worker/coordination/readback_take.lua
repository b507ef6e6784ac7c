-- Take up to LIMIT read-backs that are due, each leased for LEASE ms (moved to now +
-- LEASE: a reader that dies leaves them to the next). Returns the new score, then the
-- accounts, each followed by its intent hash as a flat list.
-- KEYS: the read-back zset. ARGV: limit, lease ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local leased = now + tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {string.format('%d', leased)}
for _, account in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', leased, account)
  out[#out + 1] = account
  out[#out + 1] = redis.call('HGETALL', INTENT_PREFIX .. '{' .. account .. '}')
end
return out
