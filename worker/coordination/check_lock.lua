-- Lock an account for a read-back ("lock") when no live update holds it, or let it go
-- ("unlock", if still ours). Touches neither the claim nor the applied number.
-- KEYS: the account's state hash. ARGV: op, owner, lock ttl ms.
local op, owner = ARGV[1], ARGV[2]
local holder, lapses = unpack(redis.call('HMGET', KEYS[1], 'o', 'x'))
if op == 'unlock' then
  if holder == owner then redis.call('HDEL', KEYS[1], 'o', 'x') end
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local free = (not holder) or tonumber(lapses or '0') <= now
if not free then
  local instance = string.match(holder, '^([^:]+):')
  free = instance ~= nil and redis.call('EXISTS', REAPED_PREFIX .. instance) == 1
end
if not free then return 0 end
redis.call('HSET', KEYS[1], 'o', owner, 'x', string.format('%d', now + tonumber(ARGV[3])))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) / 1000) + 60)
return 1
