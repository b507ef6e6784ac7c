-- An attempt of an update ended ambiguously: read the account back AFTER ms from now
-- (Redis's clock). A later ambiguity pushes the read later (GT), never earlier.
-- KEYS: the read-back zset. ARGV: after ms, ttl s, then per account: account, ref.
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  local account = ARGV[i]
  redis.call('ZADD', KEYS[1], 'GT', due, account)
  local intent = INTENT_PREFIX .. '{' .. account .. '}'
  redis.call('HSET', intent, 'a', ARGV[i + 1])
  redis.call('EXPIRE', intent, tonumber(ARGV[2]))
end
return #ARGV / 2 - 1
