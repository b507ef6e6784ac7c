-- A read-back finished (op "done": forget it, and the intent, unless an ambiguity came
-- since and pushed it later) or must come again (op "later": in AFTER ms).
-- KEYS: the read-back zset. ARGV: op, account, the score it was taken with, after ms.
local op, account, taken = ARGV[1], ARGV[2], ARGV[3]
local score = redis.call('ZSCORE', KEYS[1], account)
if not score or string.format('%d', tonumber(score)) ~= taken then return 0 end
if op == 'done' then
  redis.call('ZREM', KEYS[1], account)
  redis.call('DEL', INTENT_PREFIX .. '{' .. account .. '}')
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), account)
end
return 1
