-- Extend the locks this owner still holds.
-- KEYS: state hashes. ARGV: owner, ttl ms. Returns how many were renewed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local renewed = 0
for i = 1, #KEYS do
  if redis.call('HGET', KEYS[i], 'o') == ARGV[1] then
    redis.call('HSET', KEYS[i], 'x', string.format('%d', now + tonumber(ARGV[2])))
    renewed = renewed + 1
  end
end
return renewed
